"""Pure-ASGI health endpoints: ``/livez``, ``/readyz``, ``/health`` (paths configurable).

::

    from opskit.health.asgi import HealthEndpoints

    app = HealthEndpoints(health, app=your_app)   # other paths go to your_app

Other paths go to ``app`` (404 problem+json when ``app`` is None). With
``app=None`` the endpoints complete the lifespan protocol themselves;
otherwise lifespan goes to ``app``, and its shutdown is observed: from
``lifespan.shutdown`` on, readiness answers 503 so a load balancer stops
routing before the process exits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from opskit._core.asgi import ASGIApp, Message, Receive, Scope, Send, send_problem
from opskit.health._endpoints import Answer, Endpoints
from opskit.health._registry import HealthRegistry
from opskit.health._report import HealthReport

__all__ = ["HealthEndpoints"]


class HealthEndpoints:
    """``show_details``: ``"never"`` (only ``status``), ``"always"``, or
    ``callable(scope) -> bool``. ``render(report) -> dict`` replaces the detail body."""

    def __init__(
        self,
        health: HealthRegistry,
        app: ASGIApp | None = None,
        *,
        live: str | None = "/livez",
        ready: str | None = "/readyz",
        detail: str | None = "/health",
        show_details: Literal["never", "always"] | Callable[[Any], bool] = "never",
        render: Callable[[HealthReport], Any] | None = None,
    ) -> None:
        self.health = health
        self.app = app
        self._ep = Endpoints(health, live=live, ready=ready, detail=detail,
                             show_details=show_details, render=render)  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind_of = scope["type"]
        if kind_of == "http":
            kind = self._ep.paths.get(scope["path"])
            if kind is not None:
                await self._answer(kind, scope, send)
                return
        elif kind_of == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if self.app is not None:
            await self.app(scope, receive, send)
        elif kind_of == "http":
            await send_problem(send, 404, detail="not a health endpoint")

    async def _answer(self, kind: Any, scope: Scope, send: Send) -> None:
        ep = self._ep
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            answer: Answer = ep.not_allowed()
        else:
            detail = ep.details(scope)
            if kind == "live":
                answer = ep.live(detail)
            elif kind == "ready" and self.health.draining:
                answer = ep.drained(detail)
            else:
                report = await self.health.run(ep.group(kind))
                answer = ep.report(kind, report, detail)
        status, headers, body = answer
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        })  # fmt: skip
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        health = self.health
        if self.app is None:
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    health.set_draining()
                    if health.refreshing:
                        await health.stop_refresh()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

        async def observed() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                health.set_draining()
            return message

        assert self.app is not None
        await self.app(scope, observed, send)
