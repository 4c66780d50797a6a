"""FastAPI: the opskit middleware added with ``app.add_middleware``."""

from __future__ import annotations

# --8<-- [start:imports]
import hashlib
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
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
from opskit.ratelimit.asgi import IPFilterMiddleware, RateLimitMiddleware
from opskit.tenancy import Tenant, get_tenant
from opskit.tenancy.asgi import TenantMiddleware
from opskit.webhooks.asgi import WebhookMiddleware

# --8<-- [end:imports]

HEADERS = {"X-Framework": "fastapi"}


# --8<-- [start:recipe]
def create_app(registry: CollectorRegistry | None = None) -> FastAPI:
    app = FastAPI()
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
    app.mount("/metrics", metrics_asgi_app(registry))  # serves /metrics/ (/metrics redirects)
    add_routes(app)
    return app


# --8<-- [end:recipe]


def add_routes(app: FastAPI) -> None:
    @app.get("/hello", response_class=PlainTextResponse)
    async def hello() -> PlainTextResponse:
        return PlainTextResponse("hello from fastapi", headers=HEADERS)

    @app.get("/admin/panel", response_class=PlainTextResponse)
    async def admin() -> PlainTextResponse:
        return PlainTextResponse("admin panel", headers=HEADERS)

    @app.get("/api/items", response_class=PlainTextResponse)
    async def items() -> PlainTextResponse:
        return PlainTextResponse("items", headers=HEADERS)

    @app.get("/api/orders", response_class=PlainTextResponse)
    async def orders() -> PlainTextResponse:
        return PlainTextResponse("orders", headers=HEADERS)

    @app.post("/login", response_class=PlainTextResponse)
    async def login(request: Request) -> PlainTextResponse:
        ok = await request.body() == b"correct horse"
        return PlainTextResponse("welcome" if ok else "wrong password", 200 if ok else 401, HEADERS)

    # --8<-- [start:webhook-view]
    @app.post("/webhooks/github")
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


# --8<-- [start:tenant-recipe]
def create_tenant_app(health: HealthRegistry) -> FastAPI:
    app = FastAPI()
    app.add_middleware(TenantMiddleware, resolver=TENANT)
    # Added last, so it runs first, outside the tenant middleware: probes carry no tenant.
    app.add_middleware(HealthEndpoints.around, health=health)

    @app.get("/whoami")
    def whoami(tenant: Annotated[Tenant, Depends(get_tenant)]) -> JSONResponse:  # in a thread
        return JSONResponse({**whoami_body(), "depends": tenant.id}, headers=HEADERS)

    return app


# --8<-- [end:tenant-recipe]
