"""Django, ASGI and WSGI: the handler from get_asgi_application()/get_wsgi_application()
wrapped by the opskit middleware. One settings module, one URLconf, both handlers.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings

if not settings.configured:  # a project's settings.py holds these
    settings.configure(
        DEBUG=False,
        SECRET_KEY="matrix-tests-only",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=[
            "django.middleware.security.SecurityMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
        ],
        USE_TZ=True,
    )

# --8<-- [start:imports]
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from prometheus_client import CollectorRegistry

from frameworks.apps.opskit_setup import (
    ADMIN_NETWORKS,
    DENIED_NETWORKS,
    RATE_LIMITS,
    TENANT,
    TRUSTED_PROXIES,
    webhook_routes,
    whoami_body,
)
from opskit.health import HealthRegistry
from opskit.health import asgi as health_asgi
from opskit.health import wsgi as health_wsgi
from opskit.observability import metrics_asgi_app, metrics_wsgi_app
from opskit.ratelimit import asgi as rl_asgi
from opskit.ratelimit import wsgi as rl_wsgi
from opskit.tenancy import asgi as tenancy_asgi
from opskit.tenancy import wsgi as tenancy_wsgi
from opskit.webhooks import asgi as wh_asgi
from opskit.webhooks import wsgi as wh_wsgi

# --8<-- [end:imports]

HEADERS = {"X-Framework": "django"}


def text(body: str, status: int = 200) -> HttpResponse:
    return HttpResponse(body, status=status, content_type="text/plain", headers=HEADERS)


@require_GET
def hello(request: HttpRequest) -> HttpResponse:
    return text("hello from django")


@require_GET
def admin(request: HttpRequest) -> HttpResponse:
    return text("admin panel")


@require_GET
def items(request: HttpRequest) -> HttpResponse:
    return text("items")


@require_GET
def orders(request: HttpRequest) -> HttpResponse:
    return text("orders")


@csrf_exempt
@require_POST
def login(request: HttpRequest) -> HttpResponse:
    ok = request.body == b"correct horse"
    return text("welcome" if ok else "wrong password", 200 if ok else 401)


# --8<-- [start:webhook-view]
@csrf_exempt  # the signature is the proof of origin, not a CSRF token
@require_POST
def github_webhook(request: HttpRequest) -> JsonResponse:
    # ASGI: in request.scope; WSGI: in request.META (the environ).
    event = getattr(request, "scope", request.META)["opskit.webhook"]  # the VerifiedWebhook
    body = request.body  # the very bytes GitHub signed
    # --8<-- [end:webhook-view]
    return JsonResponse(
        {
            "sha256": hashlib.sha256(body).hexdigest(),
            "same": event.body == body,
            "delivery": event.id,
            "scheme": event.scheme,
        },
        headers=HEADERS,
    )


@require_GET
def whoami(request: HttpRequest) -> JsonResponse:  # a sync view: under ASGI, in a thread
    return JsonResponse(whoami_body(), headers=HEADERS)


urlpatterns = [
    path("hello", hello),
    path("admin/panel", admin),
    path("api/items", items),
    path("api/orders", orders),
    path("login", login),
    path("webhooks/github", github_webhook),
    path("whoami", whoami),
]


# --8<-- [start:asgi-recipe]
def asgi_application(registry: CollectorRegistry | None = None) -> Any:  # asgi.py
    django_app = get_asgi_application()
    metrics_app = metrics_asgi_app(registry)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/metrics":
            await metrics_app(scope, receive, send)
        else:
            await django_app(scope, receive, send)

    # The outermost runs first: IP filter, then rate limits, then webhook verification.
    return rl_asgi.IPFilterMiddleware(
        rl_asgi.RateLimitMiddleware(
            wh_asgi.WebhookMiddleware(app, routes=webhook_routes(registry)),
            rules=RATE_LIMITS,
            trusted_proxies=TRUSTED_PROXIES,
            registry=registry,
        ),
        deny=DENIED_NETWORKS,
        rules=ADMIN_NETWORKS,
        trusted_proxies=TRUSTED_PROXIES,
    )


# --8<-- [end:asgi-recipe]


# --8<-- [start:wsgi-recipe]
def wsgi_application(registry: CollectorRegistry | None = None) -> Any:  # wsgi.py
    django_app = get_wsgi_application()
    metrics_app = metrics_wsgi_app(registry)

    def app(environ: Any, start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/metrics":
            return metrics_app(environ, start_response)
        return django_app(environ, start_response)

    # The outermost runs first: IP filter, then rate limits, then webhook verification.
    return rl_wsgi.IPFilterMiddleware(
        rl_wsgi.RateLimitMiddleware(
            wh_wsgi.WebhookMiddleware(app, routes=webhook_routes(registry)),
            rules=RATE_LIMITS,
            trusted_proxies=TRUSTED_PROXIES,
            registry=registry,
        ),
        deny=DENIED_NETWORKS,
        rules=ADMIN_NETWORKS,
        trusted_proxies=TRUSTED_PROXIES,
    )


# --8<-- [end:wsgi-recipe]


# --8<-- [start:tenant-asgi-recipe]
def tenant_asgi_application(health: HealthRegistry) -> Any:  # asgi.py
    django_app = tenancy_asgi.TenantMiddleware(get_asgi_application(), resolver=TENANT)
    return health_asgi.HealthEndpoints(health, app=django_app)  # probes need no tenant


# --8<-- [end:tenant-asgi-recipe]


# --8<-- [start:tenant-wsgi-recipe]
def tenant_wsgi_application(health: HealthRegistry) -> Any:  # wsgi.py
    django_app = tenancy_wsgi.TenantMiddleware(get_wsgi_application(), resolver=TENANT)
    return health_wsgi.HealthEndpoints(health, app=django_app)  # probes need no tenant


# --8<-- [end:tenant-wsgi-recipe]
