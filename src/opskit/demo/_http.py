"""The http part of the demo: calls to a flaky local upstream through opskit.http.

The upstream is this demo server itself, over real loopback HTTP:
``/http/upstream/{id}?fail=N`` answers 503 the first N times for each id, then
200. ``GET /http/call?fail=N`` makes a GET to a fresh id through an
``AsyncResilientTransport`` (total timeout, attempt timeout, retry with short
backoff, breaker per host) and reports the attempts the upstream saw;
``GET /http/post?fail=N[&key=K]`` makes a POST, retried only when it carries
an ``Idempotency-Key`` (``key``).
"""

from __future__ import annotations

import collections
import json
import random
import urllib.parse
import uuid
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from opskit._core.asgi import Receive, Scope, Send, send_problem, send_response
from opskit.breaker import CircuitBreaker
from opskit.demo._app import Part
from opskit.http import AsyncResilientTransport
from opskit.retry import Retry, backoff

PREFIX = "/http"
POLICY = (
    "AsyncResilientTransport(name='demo-upstream', total_timeout=5, attempt_timeout=2, "
    "retry=Retry(on=httpx.TransportError, attempts=4, backoff=exponential(0.02, 0.2)), "
    "breaker_for=lambda host: CircuitBreaker(host, minimum_calls=20))"
)


def demo_part(registry: CollectorRegistry | None = None) -> Part:
    seen: collections.Counter[str] = collections.Counter()
    clients: dict[str, httpx.AsyncClient] = {}

    def client() -> httpx.AsyncClient:
        # Built on first use, inside the server's event loop (the pool belongs to it).
        c = clients.get("c")
        if c is None:
            retry = Retry(
                "demo-upstream",
                on=httpx.TransportError,
                attempts=4,
                backoff=backoff.exponential(
                    initial=0.02, maximum=0.2, jitter="full", rng=random.Random()
                ),
                registry=registry,
            )
            t = AsyncResilientTransport(
                name="demo-upstream",
                total_timeout=5.0,
                attempt_timeout=2.0,
                retry=retry,
                breaker_for=lambda host: CircuitBreaker(
                    f"demo-{host}", minimum_calls=20, registry=registry
                ),
                registry=registry,
            )
            c = clients["c"] = httpx.AsyncClient(transport=t)
        return c

    async def upstream(path: str, query: dict[str, list[str]], send: Send) -> None:
        key = path.rsplit("/", 1)[-1]
        seen[key] += 1
        if seen[key] <= _int(query, "fail", 0):
            await send_problem(send, 503, detail=f"failing on purpose ({seen[key]})")
            return
        await send_response(send, 200, b"ok", content_type="text/plain")

    async def call(scope: Scope, method: str, query: dict[str, list[str]], send: Send) -> None:
        host, port = scope.get("server") or ("127.0.0.1", 80)
        key = uuid.uuid4().hex
        url = f"http://{host}:{port}{PREFIX}/upstream/{key}"
        headers = {}
        if query.get("key"):
            headers["Idempotency-Key"] = query["key"][0]
        try:
            r = await client().request(
                method,
                url,
                params={"fail": _int(query, "fail", 2)},
                headers=headers,
                content=b"{}" if method == "POST" else None,
            )
        except httpx.HTTPError as exc:
            await send_problem(send, 502, detail=f"upstream call failed: {type(exc).__name__}")
            return
        answer: dict[str, Any] = {
            "method": method,
            "idempotency_key": headers.get("Idempotency-Key"),
            "upstream_status": r.status_code,
            "attempts_seen_by_upstream": seen.pop(key, 0),
            "policy": POLICY,
        }
        status = 200 if r.status_code == 200 else 503
        await send_response(send, status, json.dumps(answer).encode(),
                            content_type="application/json")  # fmt: skip

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if path in (PREFIX, PREFIX + "/"):
            doc = {
                "what": "calls to a flaky local upstream through opskit.http",
                "try": [f"{PREFIX}/call?fail=2", f"{PREFIX}/call?fail=9",
                        f"{PREFIX}/post?fail=1", f"{PREFIX}/post?fail=1&key=order-1"],
                "transport": POLICY,
            }  # fmt: skip
            await send_response(send, 200, json.dumps(doc).encode(),
                                content_type="application/json")  # fmt: skip
        elif path.startswith(PREFIX + "/upstream/"):
            await upstream(path, query, send)
        elif path == PREFIX + "/call":
            await call(scope, "GET", query, send)
        elif path == PREFIX + "/post":
            await call(scope, "POST", query, send)
        else:
            await send_problem(send, 404, detail=f"nothing at {path}")

    return Part(
        PREFIX,
        "http: a flaky local upstream called through AsyncResilientTransport",
        app,
        [
            ("GET", PREFIX, 200),
            ("GET", f"{PREFIX}/call?fail=2", 200),
            ("GET", f"{PREFIX}/call?fail=9", 503),
            ("GET", f"{PREFIX}/post?fail=1", 503),
            ("GET", f"{PREFIX}/post?fail=1&key=order-1", 200),
        ],
    )


def _int(query: dict[str, list[str]], name: str, default: int) -> int:
    try:
        return max(0, min(int(query.get(name, [str(default)])[0]), 20))
    except ValueError:
        return default
