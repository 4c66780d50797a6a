"""PEP 3333 health endpoints: ``/livez``, ``/readyz``, ``/health`` (paths configurable).

::

    from opskit.health.wsgi import HealthEndpoints

    application = HealthEndpoints(health, app=flask_app.wsgi_app)

Checks run through ``health.run_sync()`` (async checks on a fresh event loop
per run; prefer sync clients here). WSGI has no lifespan: call
``health.set_draining()`` from your SIGTERM handler so readiness fails first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

from opskit._core.http import status_line
from opskit._core.wsgi import Environ, StartResponse, WSGIApp, problem_response
from opskit.health._endpoints import Answer, Endpoints
from opskit.health._registry import HealthRegistry
from opskit.health._report import HealthReport

__all__ = ["HealthEndpoints"]


class HealthEndpoints:
    """``show_details``: ``"never"`` (only ``status``), ``"always"``, or
    ``callable(environ) -> bool``. ``render(report) -> dict`` replaces the detail body.
    ``refresh=seconds`` starts ``health.start_refresh(seconds)`` (a daemon thread) now."""

    def __init__(
        self,
        health: HealthRegistry,
        app: WSGIApp | None = None,
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
        if self._ep.refresh is not None and not health.refreshing:
            # No lifespan in WSGI: the refresh starts now, on a daemon thread.
            health.start_refresh(self._ep.refresh)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        kind = self._ep.paths.get(environ.get("PATH_INFO") or "/")
        if kind is None:
            if self.app is not None:
                return self.app(environ, start_response)
            return problem_response(start_response, 404, detail="not a health endpoint")
        ep = self._ep
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            answer: Answer = ep.not_allowed()
        else:
            detail = ep.details(environ)
            if kind == "live":
                answer = ep.live(detail)
            elif kind == "ready" and self.health.draining:
                answer = ep.drained(detail)
            else:
                report = self.health.run_sync(ep.group(kind))
                answer = ep.report(kind, report, detail)
        status, headers, body = answer
        start_response(status_line(status), headers)
        return [b"" if method == "HEAD" else body]
