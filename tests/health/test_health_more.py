"""Redaction (hypothesis), the pinned API, waits on a running call, run_sync with async checks."""

from __future__ import annotations

import asyncio
import threading
import urllib.parse
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import opskit.health
from opskit.health import Status
from opskit.health._redact import redact, redact_url, safe_message
from opskit.health.asgi import HealthEndpoints

pytestmark = pytest.mark.timeout(30)

_secret = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=6, max_size=12).map(
    lambda s: "S3" + s
)
_host = st.sampled_from(["db.internal", "127.0.0.1", "api.example.com", "[::1]"])
_path = st.sampled_from(["", "/", "/v1/health", "/a/b.c"])


def test_public_api_is_pinned() -> None:
    assert opskit.health.__all__ == [
        "HealthRegistry", "Status", "CheckResult", "HealthReport", "Check", "checks",
        "CONTENT_TYPE",
    ]  # fmt: skip
    assert opskit.health.checks.__all__ == [
        "Check", "redis_ping", "sqlalchemy", "http", "tcp", "disk_free", "breaker", "call",
    ]  # fmt: skip


@given(
    scheme=st.sampled_from(["http", "https", "redis", "postgresql+psycopg", "amqp"]),
    user=_secret, password=_secret, host=_host, port=st.none() | st.integers(1, 65535),
    path=_path, query=_secret, fragment=_secret,
    before=st.sampled_from(["", "cannot reach ", "url '", "("]),
    after=st.sampled_from(["", " now", "'", ").", ", retrying"]),
)  # fmt: skip
def test_redaction_never_shows_userinfo_query_or_fragment(
    scheme: str, user: str, password: str, host: str, port: int | None, path: str,
    query: str, fragment: str, before: str, after: str,
) -> None:  # fmt: skip
    netloc = f"{host}:{port}" if port is not None else host
    url = f"{scheme}://{user}:{password}@{netloc}{path}?token={query}#{fragment}"
    text = redact(f"{before}{url}{after}")
    for secret in (user, password, query, fragment):
        assert secret not in text
    assert f"{scheme}://{netloc}{path}" in text
    assert text.startswith(before) and text.endswith(after)
    assert redact_url(url) == f"{scheme}://{netloc}{path}"


def test_safe_message_cuts_and_redacts() -> None:
    msg = safe_message(ValueError("x" * 600 + " https://u:p@h/x?k=v"))
    assert msg is not None and len(msg) == 500 and msg.endswith("...")
    assert safe_message(ValueError("see https://u:pw@h:8443/x?k=v#f")) == "see https://h:8443/x"
    assert safe_message(ValueError("")) is None
    assert redact_url("http://[broken") == "<url>"
    assert urllib.parse.urlsplit(redact_url("https://h/p")).path == "/p"


async def test_a_later_run_reports_the_result_of_the_running_call(make_health: Any) -> None:
    h = make_health(cache_ttl=0)
    release = threading.Event()
    calls = 0

    def slow() -> bool:
        nonlocal calls
        calls += 1
        release.wait(30)
        return True

    h.add("slow", slow, timeout=0.1)
    first = await h.run()
    assert first.checks["slow"].output == "timed out after 0.1 s"
    h._entries["slow"].timeout = 30.0  # the next run waits long enough to see the call end
    second = asyncio.ensure_future(h.run())
    flight = h._entries["slow"].flight
    assert flight is not None
    for _ in range(200):  # until the second run waits on the running call
        await asyncio.sleep(0)
        if len(flight._done_callbacks) >= 2:  # type: ignore[attr-defined]
            break
    assert not flight.done()
    release.set()
    report = await second
    assert report.checks["slow"].status is Status.PASS and calls == 1


def test_run_sync_runs_async_checks_and_their_timeouts(make_health: Any) -> None:
    h = make_health(cache_ttl=0)

    async def fine() -> bool:
        await asyncio.sleep(0)
        return True

    async def hangs() -> bool:
        await asyncio.Event().wait()
        return True  # pragma: no cover

    h.add("fine", fine)
    h.add("hangs", hangs, timeout=0.05, critical=False)
    for _ in range(2):
        report = h.run_sync()
        assert report.checks["fine"].status is Status.PASS
        assert report.checks["hangs"].output == "timed out after 0.05 s"
        assert report.status is Status.WARN


async def test_lifespan_shutdown_stops_the_refresh(make_health: Any) -> None:
    h = make_health()
    h.add("db", lambda: True)
    h.start_refresh(interval=3600)
    assert h.refreshing
    endpoints = HealthEndpoints(h)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for m in ("lifespan.startup", "lifespan.shutdown"):
        inbox.put_nowait({"type": m})
    sent: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    await endpoints({"type": "lifespan"}, inbox.get, send)
    assert sent[-1] == "lifespan.shutdown.complete"
    assert h.draining and not h.refreshing
