"""Litestar: the opskit middleware declared with ``DefineMiddleware``.

Litestar builds each middleware once per route handler (not once per app), so
the rate limit rules get ready limiters, which every copy then shares.
"""

from __future__ import annotations

# --8<-- [start:imports]
import hashlib
from typing import Any

from litestar import Litestar, MediaType, Request, Response, asgi, get, post
from litestar.middleware import DefineMiddleware
from litestar.types import Receive, Scope, Send
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
from opskit.health.asgi import HealthEndpoints
from opskit.observability import metrics_asgi_app
from opskit.ratelimit import RateLimiter, Rule, by_ip
from opskit.ratelimit.asgi import IPFilterMiddleware, RateLimitMiddleware
from opskit.tenancy.asgi import TenantMiddleware
from opskit.webhooks.asgi import WebhookMiddleware

# --8<-- [end:imports]

HEADERS = {"X-Framework": "litestar"}


@get("/hello", media_type=MediaType.TEXT)
async def hello() -> Response[str]:
    return Response("hello from litestar", headers=HEADERS)


@get("/admin/panel", media_type=MediaType.TEXT)
async def admin() -> Response[str]:
    return Response("admin panel", headers=HEADERS)


@get("/api/items", media_type=MediaType.TEXT)
async def items() -> Response[str]:
    return Response("items", headers=HEADERS)


@get("/api/orders", media_type=MediaType.TEXT)
async def orders() -> Response[str]:
    return Response("orders", headers=HEADERS)


@post("/login", media_type=MediaType.TEXT)
async def login(request: Request[Any, Any, Any]) -> Response[str]:
    ok = await request.body() == b"correct horse"
    return Response(
        "welcome" if ok else "wrong password", status_code=200 if ok else 401, headers=HEADERS
    )


# --8<-- [start:webhook-view]
@post("/webhooks/github", status_code=200)
async def github_webhook(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    event = request.scope["opskit.webhook"]  # type: ignore[typeddict-item]  # the VerifiedWebhook
    body = await request.body()  # the very bytes GitHub signed
    # --8<-- [end:webhook-view]
    return Response(
        {
            "sha256": hashlib.sha256(body).hexdigest(),
            "same": event.body == body,
            "delivery": event.id,
            "scheme": event.scheme,
        },
        headers=HEADERS,
    )


ROUTES = [hello, admin, items, orders, login, github_webhook]


# --8<-- [start:recipe]
def create_app(registry: CollectorRegistry | None = None) -> Litestar:
    metrics_app = metrics_asgi_app(registry)

    @asgi("/metrics", is_mount=True, copy_scope=True)
    async def metrics(scope: Scope, receive: Receive, send: Send) -> None:
        await metrics_app(scope, receive, send)

    # Litestar builds each middleware once per route handler: give the rules ready
    # limiters, which every copy shares (with rates=, each route would count apart).
    login = RateLimiter("login", "3/hour", registry=registry)
    api = RateLimiter("api", "3/hour", registry=registry)
    rules = [
        Rule("/login", methods=["POST"], limiter=login, key=by_ip, count="failures"),
        Rule("/api/*", limiter=api, key=by_ip),
    ]
    return Litestar(
        route_handlers=[*ROUTES, metrics],
        # The first listed runs first: IP filter, then rate limits, then webhook verification.
        middleware=[
            DefineMiddleware(
                IPFilterMiddleware,
                deny=DENIED_NETWORKS,
                rules=ADMIN_NETWORKS,
                trusted_proxies=TRUSTED_PROXIES,
            ),
            DefineMiddleware(RateLimitMiddleware, rules=rules, trusted_proxies=TRUSTED_PROXIES),
            DefineMiddleware(WebhookMiddleware, routes=webhook_routes(registry)),
        ],
    )


# --8<-- [end:recipe]


def create_naive_app(registry: CollectorRegistry | None = None) -> Litestar:
    """The rules as the other frameworks pass them (``rates=``): each route counts apart."""
    return Litestar(
        route_handlers=ROUTES,
        middleware=[
            DefineMiddleware(
                RateLimitMiddleware,
                rules=RATE_LIMITS,
                trusted_proxies=TRUSTED_PROXIES,
                registry=registry,
            )
        ],
    )


@get("/whoami")
async def whoami() -> Response[dict[str, Any]]:
    return Response(whoami_body(), headers=HEADERS)


# --8<-- [start:tenant-recipe]
def create_tenant_app(health: HealthRegistry) -> HealthEndpoints:
    app = Litestar(route_handlers=[whoami])
    # Both wrap the app, outside Litestar's routing: the health paths are no Litestar
    # routes (a middleware would never see them), and one TenantMiddleware serves all.
    return HealthEndpoints(health, app=TenantMiddleware(app, resolver=TENANT))


# --8<-- [end:tenant-recipe]


def create_naive_health_app(health: HealthRegistry) -> Litestar:
    """HealthEndpoints as a Litestar middleware: it only sees requests Litestar routed."""
    return Litestar(
        route_handlers=[whoami], middleware=[DefineMiddleware(HealthEndpoints, health=health)]
    )
