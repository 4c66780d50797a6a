"""The retry part of the demo: a flaky fake upstream called through a policy.

``GET /retry/flaky?fail=N`` calls an in-process upstream that fails ``N``
times with ``ConnectionError`` (then answers) through ``Retry(attempts=4)``
with short exponential backoff and full jitter; the response says how many
attempts were made and how long the waits were. With ``N >= 4`` the policy
gives up and the endpoint answers 503 problem+json.
"""

from __future__ import annotations

import contextvars
import json
import random
import urllib.parse

from prometheus_client import CollectorRegistry

from opskit._core.asgi import Receive, Scope, Send, send_problem, send_response
from opskit._core.clock import MONOTONIC
from opskit.demo._app import Part
from opskit.retry import Retry, backoff

PREFIX = "/retry"


_waits: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar(
    "opskit_demo_retry_waits", default=None
)


class _RecordingClock:
    """The real clock, remembering the waits the policy asked for in each request.

    One policy serves every request (so its ``opskit_retry_*`` metrics stay on
    ``/metrics``); each request reads its own waits from a context variable.
    """

    def __init__(self) -> None:
        self.monotonic = MONOTONIC.monotonic
        self.time = MONOTONIC.time

    def _note(self, seconds: float) -> None:
        waits = _waits.get()
        if waits is not None:
            waits.append(seconds)

    def sleep(self, seconds: float) -> None:  # pragma: no cover - the demo is async
        self._note(seconds)
        MONOTONIC.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        self._note(seconds)
        await MONOTONIC.asleep(seconds)


def demo_part(registry: CollectorRegistry | None = None) -> Part:
    policy = Retry(
        "demo-upstream",
        on=ConnectionError,
        attempts=4,
        backoff=backoff.exponential(initial=0.02, maximum=0.2, jitter="full", rng=random.Random()),
        clock=_RecordingClock(),
        registry=registry,
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path in (PREFIX, PREFIX + "/"):
            doc: dict[str, object] = {
                "what": "a flaky upstream called through opskit.retry",
                "try": [f"{PREFIX}/flaky?fail=2", f"{PREFIX}/flaky?fail=9"],
                "policy": "Retry('demo-upstream', on=ConnectionError, attempts=4, "
                "backoff=backoff.exponential(initial=0.02, maximum=0.2, jitter='full'))",
            }
            await send_response(send, 200, json.dumps(doc).encode(),
                                content_type="application/json")  # fmt: skip
            return
        if path != PREFIX + "/flaky":
            await send_problem(send, 404, detail=f"nothing at {path}")
            return
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            fail = max(0, min(int(query.get("fail", ["2"])[0]), 20))
        except ValueError:
            await send_problem(send, 400, detail="fail must be a whole number")
            return
        waits: list[float] = []
        _waits.set(waits)
        calls = 0

        async def upstream() -> str:
            nonlocal calls
            calls += 1
            if calls <= fail:
                raise ConnectionError("upstream refused the connection")
            return "charged"

        try:
            result = await policy.call_async(upstream)
        except ConnectionError:
            await send_problem(
                send, 503, detail=f"upstream still failing after {calls} attempts",
                attempts=calls, waits=[round(w, 4) for w in waits],
            )  # fmt: skip
            return
        answer: dict[str, object] = {
            "result": result,
            "attempts": calls,
            "waits": [round(w, 4) for w in waits],
        }
        await send_response(send, 200, json.dumps(answer).encode(), content_type="application/json")

    return Part(
        PREFIX,
        "retry: a flaky upstream behind Retry(attempts=4) with jittered backoff",
        app,
        [
            ("GET", PREFIX, 200),
            ("GET", f"{PREFIX}/flaky?fail=2", 200),
            ("GET", f"{PREFIX}/flaky?fail=9", 503),
        ],
    )
