"""Starlette: the opskit middleware added with ``app.add_middleware``."""

from __future__ import annotations

# --8<-- [start:imports]
import hashlib

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route

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
from opskit.health.asgi import HealthEndpoints
from opskit.observability import metrics_asgi_app
from opskit.ratelimit.asgi import IPFilterMiddleware, RateLimitMiddleware
from opskit.tenancy.asgi import TenantMiddleware
from opskit.webhooks.asgi import WebhookMiddleware

# --8<-- [end:imports]

HEADERS = {"X-Framework": "starlette"}


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello from starlette", headers=HEADERS)


async def admin(request: Request) -> PlainTextResponse:
    return PlainTextResponse("admin panel", headers=HEADERS)


async def items(request: Request) -> PlainTextResponse:
    return PlainTextResponse("items", headers=HEADERS)


async def orders(request: Request) -> PlainTextResponse:
    return PlainTextResponse("orders", headers=HEADERS)


async def login(request: Request) -> PlainTextResponse:
    ok = await request.body() == b"correct horse"
    return PlainTextResponse("welcome" if ok else "wrong password", 200 if ok else 401, HEADERS)


# --8<-- [start:webhook-view]
async def github_webhook(request: Request) -> JSONResponse:
    event = request.scope["opskit.webhook"]  # the VerifiedWebhook
    body = await request.body()  # the very bytes GitHub signed
    # --8<-- [end:webhook-view]
    return JSONResponse(
        {
            "sha256": hashlib.sha256(body).hexdigest(),
            "same": event.body == body,
            "delivery": event.id,
            "scheme": event.scheme,
        },
        headers=HEADERS,
    )


# --8<-- [start:recipe]
def create_app(registry: CollectorRegistry | None = None) -> Starlette:
    app = Starlette(
        routes=[
            Route("/hello", hello),
            Route("/admin/panel", admin),
            Route("/api/items", items),
            Route("/api/orders", orders),
            Route("/login", login, methods=["POST"]),
            Route("/webhooks/github", github_webhook, methods=["POST"]),
            Mount("/metrics", metrics_asgi_app(registry)),  # serves /metrics/ (/metrics redirects)
        ]
    )
    # The last added runs first: IP filter, then rate limits, then webhook verification.
    app.add_middleware(WebhookMiddleware, routes=webhook_routes(registry))
    app.add_middleware(
        RateLimitMiddleware, rules=RATE_LIMITS, trusted_proxies=TRUSTED_PROXIES, registry=registry
    )
    app.add_middleware(
        IPFilterMiddleware,
        deny=DENIED_NETWORKS,
        rules=ADMIN_NETWORKS,
        trusted_proxies=TRUSTED_PROXIES,
    )
    return app


# --8<-- [end:recipe]


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse(whoami_body(), headers=HEADERS)


# --8<-- [start:tenant-recipe]
def create_tenant_app(health: HealthRegistry) -> Starlette:
    app = Starlette(routes=[Route("/whoami", whoami)])
    app.add_middleware(TenantMiddleware, resolver=TENANT)
    # Added last, so it runs first, outside the tenant middleware: probes carry no tenant.
    app.add_middleware(HealthEndpoints.around, health=health)
    return app


# --8<-- [end:tenant-recipe]
