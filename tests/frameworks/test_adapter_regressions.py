"""Regressions for opskit bugs the framework matrix found, pinned in process."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from opskit.ratelimit import Rule, by_ip
from opskit.ratelimit.asgi import RateLimitMiddleware


def scope(path: str) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": path, "headers": [],
            "client": ("198.51.100.1", 5000)}  # fmt: skip


async def test_asgi_counts_by_status_when_the_response_starts() -> None:
    """Django's ASGI handler sends the response, then closes it in a thread before
    returning: counted only when the app returned, a failure was not yet counted
    when the client's next request came in (found under Django ASGI)."""
    after_response = asyncio.Event()
    calls: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(1)
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b"wrong password"})
        if len(calls) == 1:
            await after_response.wait()  # the framework's work after the response was sent

    rule = Rule("/login", rates="1/hour", key=by_ip, count="failures")
    mw = RateLimitMiddleware(app, [rule], registry=CollectorRegistry())
    sent: list[dict[str, Any]] = []
    responded = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            responded.set()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    first = asyncio.create_task(mw(scope("/login"), receive, send))
    await responded.wait()  # the first response has gone out; its app has not returned
    assert not first.done() and sent[0]["status"] == 401
    await mw(scope("/login"), receive, send)  # the client's next attempt
    assert sent[2]["status"] == 429  # the failure before it was already counted
    after_response.set()
    await first
