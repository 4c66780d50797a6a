"""Flask: the opskit WSGI middleware around ``app.wsgi_app``."""

from __future__ import annotations

# --8<-- [start:imports]
import hashlib

from flask import Flask, Response, jsonify, request
from prometheus_client import CollectorRegistry
from werkzeug.middleware.dispatcher import DispatcherMiddleware

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
from opskit.health.wsgi import HealthEndpoints
from opskit.observability import metrics_wsgi_app
from opskit.ratelimit.wsgi import IPFilterMiddleware, RateLimitMiddleware
from opskit.tenancy.wsgi import TenantMiddleware
from opskit.webhooks.wsgi import WebhookMiddleware

# --8<-- [end:imports]

HEADERS = {"X-Framework": "flask"}


def add_routes(app: Flask) -> None:
    @app.get("/hello")
    def hello() -> Response:
        return Response("hello from flask", headers=HEADERS, content_type="text/plain")

    @app.get("/admin/panel")
    def admin() -> Response:
        return Response("admin panel", headers=HEADERS, content_type="text/plain")

    @app.get("/api/items")
    def items() -> Response:
        return Response("items", headers=HEADERS, content_type="text/plain")

    @app.get("/api/orders")
    def orders() -> Response:
        return Response("orders", headers=HEADERS, content_type="text/plain")

    @app.post("/login")
    def login() -> Response:
        ok = request.get_data() == b"correct horse"
        return Response(
            "welcome" if ok else "wrong password",
            200 if ok else 401,
            HEADERS,
            content_type="text/plain",
        )

    # --8<-- [start:webhook-view]
    @app.post("/webhooks/github")
    def github_webhook() -> Response:
        event = request.environ["opskit.webhook"]  # the VerifiedWebhook
        body = request.get_data()  # the very bytes GitHub signed
        # --8<-- [end:webhook-view]
        resp = jsonify(
            sha256=hashlib.sha256(body).hexdigest(),
            same=event.body == body,
            delivery=event.id,
            scheme=event.scheme,
        )
        resp.headers.update(HEADERS)
        return resp


# --8<-- [start:recipe]
def create_app(registry: CollectorRegistry | None = None) -> Flask:
    app = Flask(__name__)
    add_routes(app)
    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {"/metrics": metrics_wsgi_app(registry)}
    )
    # The outermost runs first: IP filter, then rate limits, then webhook verification.
    app.wsgi_app = IPFilterMiddleware(  # type: ignore[method-assign]
        RateLimitMiddleware(
            WebhookMiddleware(app.wsgi_app, routes=webhook_routes(registry)),
            rules=RATE_LIMITS,
            trusted_proxies=TRUSTED_PROXIES,
            registry=registry,
        ),
        deny=DENIED_NETWORKS,
        rules=ADMIN_NETWORKS,
        trusted_proxies=TRUSTED_PROXIES,
    )
    return app


# --8<-- [end:recipe]


# --8<-- [start:tenant-recipe]
def create_tenant_app(health: HealthRegistry) -> Flask:
    app = Flask(__name__)

    @app.get("/whoami")
    def whoami() -> Response:
        resp = jsonify(whoami_body())
        resp.headers.update(HEADERS)
        return resp

    # The outermost runs first: probes are answered before any tenant is asked for.
    app.wsgi_app = HealthEndpoints(  # type: ignore[method-assign]
        health, app=TenantMiddleware(app.wsgi_app, resolver=TENANT)
    )
    return app


# --8<-- [end:tenant-recipe]
