"""The health part of the demo: ``/livez``, ``/readyz`` and ``/health`` over real checks.

Checks: ``db`` (critical, in the readiness group; ``GET /health/break`` makes it
fail and ``GET /health/mend`` mends it), ``disk`` (``disk_free`` of the working
directory) and ``queue-depth`` (non-critical, reports a backlog). Details are
shown to everyone here (``show_details="always"``); a service would keep the
default ``"never"`` or pass a callable that checks the caller.
"""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry

from opskit import __version__
from opskit._core.asgi import Receive, Scope, Send, send_response
from opskit.demo._app import Part
from opskit.health import CheckResult, HealthRegistry, Status, checks
from opskit.health.asgi import HealthEndpoints


def demo_parts(registry: CollectorRegistry | None = None) -> list[Part]:
    health = HealthRegistry(
        service="opskit-demo", version=__version__, cache_ttl=1.0, default_timeout=1.0,
        registry=registry,
    )  # fmt: skip
    broken = {"db": False}

    def db() -> CheckResult:
        if broken["db"]:
            raise ConnectionError("demo database is down (GET /health/mend)")
        return CheckResult(Status.PASS)

    health.add("db", checks.call(db), groups={"readiness"}, component_type="datastore")
    health.add("disk", checks.disk_free(".", warn_below=0.05, fail_below=0.01))

    @health.check("queue-depth", critical=False, measurement="depth")
    async def queue_depth() -> CheckResult:
        return CheckResult(Status.PASS, observed_value=3, observed_unit="jobs")

    endpoints = HealthEndpoints(health, show_details="always")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path in ("/health/break", "/health/mend"):
            broken["db"] = path.endswith("break")
            health.invalidate()
            doc = {"db": "failing" if broken["db"] else "passing", "see": ["/readyz", "/health"]}
            await send_response(send, 200, json.dumps(doc).encode(),
                                content_type="application/json")  # fmt: skip
            return
        await endpoints(scope, receive, send)

    title = "health: liveness, readiness (fails while db is broken) and health+json detail"
    return [
        Part("/livez", "health: liveness, from the process alone", app, [("GET", "/livez", 200)]),
        Part("/readyz", "health: readiness, the readiness group", app, [("GET", "/readyz", 200)]),
        Part(
            "/health",
            title,
            app,
            [
                ("GET", "/health", 200),
                ("GET", "/health/break", 200),
                ("GET", "/readyz", 503),
                ("GET", "/health", 503),
                ("GET", "/livez", 200),
                ("GET", "/health/mend", 200),
                ("GET", "/readyz", 200),
            ],
        ),
    ]
