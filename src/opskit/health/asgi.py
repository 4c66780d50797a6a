"""Pure-ASGI health endpoints: ``/livez``, ``/readyz``, ``/health`` (paths configurable).

::

    from opskit.health.asgi import HealthEndpoints

    app = HealthEndpoints(health, app=your_app)   # other paths go to your_app
    app.add_middleware(HealthEndpoints.around, health=health)   # Starlette, FastAPI

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

_Encoded = tuple[int, tuple[tuple[bytes, bytes], ...], bytes]


def _encode(answer: Answer) -> _Encoded:
    status, headers, body = answer
    raw = tuple((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers)
    return status, raw, body


class HealthEndpoints:
    """``show_details``: ``"never"`` (only ``status``), ``"always"``, or
    ``callable(scope) -> bool``. ``render(report) -> dict`` replaces the detail body.
    ``refresh=seconds`` starts ``health.start_refresh(seconds)`` on the server's loop at
    lifespan startup and stops it at shutdown."""

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
        refresh: float | None = None,
    ) -> None:
        self.health = health
        self.app = app
        self._ep = Endpoints(health, live=live, ready=ready, detail=detail,
                             show_details=show_details, render=render, refresh=refresh)  # fmt: skip
        self.refresh = self._ep.refresh
        self._memo: dict[tuple[str, bool], tuple[HealthReport, _Encoded]] = {}
        ep = self._ep
        self._live = {d: _encode(ep.live(d)) for d in (False, True)}
        self._drained = {d: _encode(ep.drained(d)) for d in (False, True)}
        self._not_allowed = _encode(ep.not_allowed())

    @classmethod
    def around(cls, app: ASGIApp, health: HealthRegistry, **options: Any) -> HealthEndpoints:
        """``HealthEndpoints(health, app=app, **options)``, the app first: the factory
        Starlette's and FastAPI's ``add_middleware(factory, **kwargs)`` take, since they
        call it as ``factory(app, **kwargs)``."""
        return cls(health, app, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind_of = scope["type"]
        if kind_of == "http":
            kind = self._ep.paths.get(scope["path"])
            if kind is not None:
                method = scope.get("method", "GET")
                if method == "GET" or method == "HEAD":
                    detail = self._ep.details(scope)
                    answer = self._answer_now(kind, detail)
                    if answer is None:
                        answer = await self._answer_run(kind, detail)
                else:
                    answer = self._not_allowed
                status, raw, body = answer
                await send({"type": "http.response.start", "status": status,
                            "headers": list(raw)})  # fmt: skip
                await send({"type": "http.response.body",
                            "body": b"" if method == "HEAD" else body})  # fmt: skip
                return
        elif kind_of == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if self.app is not None:
            await self.app(scope, receive, send)
        elif kind_of == "http":
            await send_problem(send, 404, detail="not a health endpoint")

    def _answer_now(self, kind: Any, detail: bool) -> _Encoded | None:
        """The answer that needs no check run (liveness, draining, a cached report), or None."""
        ep = self._ep
        if kind == "live":
            return self._live[detail]
        if kind == "ready" and self.health.draining:
            return self._drained[detail]
        report = self.health.cached(ep.group(kind))
        return None if report is None else self._encoded(kind, detail, report)

    async def _answer_run(self, kind: Any, detail: bool) -> _Encoded:
        report = await self.health.run(self._ep.group(kind))
        return self._encoded(kind, detail, report)

    def _encoded(self, kind: Any, detail: bool, report: HealthReport) -> _Encoded:
        # A cached report is answered from its encoded answer, made once.
        memo = self._memo.get((kind, detail))
        if memo is not None and memo[0] is report:
            return memo[1]
        encoded = _encode(self._ep.report(kind, report, detail))
        self._memo[(kind, detail)] = (report, encoded)
        return encoded

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self._started()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self._stopping()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

        async def observed() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._started()
            elif message["type"] == "lifespan.shutdown":
                await self._stopping()
            return message

        assert self.app is not None
        await self.app(scope, observed, send)

    def _started(self) -> None:
        if self.refresh is not None and not self.health.refreshing:
            self.health.start_refresh(self.refresh)

    async def _stopping(self) -> None:
        # Readiness fails first, so a load balancer stops routing before the exit.
        self.health.set_draining()
        if self.health.refreshing:
            await self.health.stop_refresh()
