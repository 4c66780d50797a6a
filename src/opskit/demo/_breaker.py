"""The breaker part of the demo: a flaky fake upstream behind a circuit breaker.

``GET /breaker/charge`` calls an in-process "payments API" through
``CircuitBreaker("demo-payments", minimum_calls=3, window=CountWindow(5))``;
``?fail=1`` makes the upstream fail. After enough failures the breaker opens
and answers 503 problem+json with ``Retry-After`` without calling the upstream;
after ``open_for`` one probe is let through. ``GET /breaker`` shows the
breaker's snapshot; ``POST /breaker/reset`` closes it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import urllib.parse

from prometheus_client import CollectorRegistry

from opskit._core.asgi import Receive, Scope, Send, send_problem, send_response
from opskit.breaker import CircuitBreaker, CircuitOpenError, CountWindow
from opskit.demo._app import Part

PREFIX = "/breaker"


class UpstreamError(Exception):
    pass


def demo_part(registry: CollectorRegistry | None = None) -> Part:
    breaker = CircuitBreaker(
        "demo-payments",
        failure_rate=0.5,
        minimum_calls=3,
        window=CountWindow(5),
        open_for=lambda n: min(5.0 * 2 ** (n - 1), 60.0),
        registry=registry,
    )
    upstream_calls = 0

    @breaker
    async def charge(fail: bool) -> dict[str, object]:
        nonlocal upstream_calls
        upstream_calls += 1
        if fail:
            raise UpstreamError("payments API answered 500")
        return {"charged": True}

    def snapshot() -> bytes:
        doc = {k: (str(v) if k == "state" else v)
               for k, v in dataclasses.asdict(breaker.snapshot()).items()}  # fmt: skip
        doc["upstream_calls"] = upstream_calls
        return json.dumps(doc).encode()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if path in (PREFIX, PREFIX + "/"):
            await send_response(send, 200, snapshot(), content_type="application/json")
        elif path == PREFIX + "/reset" and method == "POST":
            breaker.reset()
            await send_response(send, 200, snapshot(), content_type="application/json")
        elif path == PREFIX + "/charge":
            query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
            try:
                result = await charge(query.get("fail", ["0"])[0] == "1")
            except CircuitOpenError as exc:
                retry = math.ceil(exc.retry_after) if exc.retry_after is not None else 60
                await send_problem(
                    send, 503, detail="the payments breaker is open; the upstream was not called",
                    headers=[("Retry-After", str(retry))], retry_after=retry,
                )  # fmt: skip
            except UpstreamError:
                await send_problem(send, 502, detail="the payments upstream failed")
            else:
                await send_response(send, 200, json.dumps(result).encode(),
                                    content_type="application/json")  # fmt: skip
        else:
            await send_problem(send, 404, detail=f"nothing at {path}")

    return Part(
        PREFIX,
        "breaker: a flaky payments upstream behind CircuitBreaker (opens after 2 of 3 fail)",
        app,
        [
            ("GET", f"{PREFIX}/charge", 200),
            ("GET", f"{PREFIX}/charge?fail=1", 502),
            ("GET", f"{PREFIX}/charge?fail=1", 502),
            ("GET", f"{PREFIX}/charge", 503),
            ("GET", PREFIX, 200),
            ("POST", f"{PREFIX}/reset", 200),
            ("GET", f"{PREFIX}/charge", 200),
        ],
    )
