from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from opskit import __version__
from opskit._core.asgi import ASGIApp, Receive, Scope, Send, send_problem, send_response
from opskit.demo._dashboard import STATE_PATH, Dashboard
from opskit.observability import metrics_asgi_app


@dataclass(frozen=True)
class Part:
    """One mounted piece of the demo: ``prefix`` (``"/breaker"``), what it shows, its app."""

    prefix: str
    title: str
    app: ASGIApp
    #: Requests ``opskit demo --check`` makes, and the index page shows:
    #: ``(method, path, expected status)``.
    checks: Sequence[tuple[str, str, int]] = ()


def build_app(
    parts: Sequence[Part] | None = None, registry: CollectorRegistry | None = None
) -> ASGIApp:
    """The demo ASGI app. ``parts`` defaults to every module's demo part."""
    registry = CollectorRegistry(auto_describe=True) if registry is None else registry
    if parts is None:
        from opskit.demo._parts import default_parts

        parts = default_parts(registry)
    metrics = metrics_asgi_app(registry)
    # The front page is a live dashboard (opskit.demo._dashboard): it counts each part's
    # answers and refreshes from STATE_PATH.
    board = Dashboard(parts, registry)
    mounted = [
        (p, board.observe(p.prefix, p.app))
        for p in sorted(parts, key=lambda p: len(p.prefix), reverse=True)
    ]

    async def index(send: Send) -> None:
        await send_response(send, 200, board.page(__version__),
                            content_type="text/html; charset=utf-8")  # fmt: skip

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path == "/":
            await index(send)
            return
        if path == "/metrics":
            await metrics(scope, receive, send)
            return
        if path == STATE_PATH:
            await board.serve_state(scope, send)
            return
        for part, observed in mounted:
            if path == part.prefix or path.startswith(part.prefix.rstrip("/") + "/"):
                await observed(scope, receive, send)
                return
        await send_problem(send, 404, detail=f"nothing is mounted at {path}")

    return app
