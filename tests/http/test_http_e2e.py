"""opskit.http against real servers (uvicorn, and a raw TCP server that resets), sync
and async alike (the ``caller`` fixture runs each test in both modes)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from _servers import free_port
from opskit.breaker import CircuitBreaker, CircuitOpenError, State
from opskit.http import AttemptTimeout, Hedge, TotalTimeout
from opskit.ratelimit import RateLimiter
from opskit.retry import Retry, backoff, testing
from opskit.tenancy import tenant_scope
from opskit.testing import ManualClock


def policy(clock: ManualClock | None = None, **kw: Any) -> Retry:
    kw.setdefault("on", httpx.TransportError)
    kw.setdefault("attempts", 3)
    kw.setdefault("backoff", backoff.constant(0.5))
    return Retry("up", clock=clock, registry=CollectorRegistry(), **kw)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def retry_calls(p: Retry) -> dict[str, float]:
    return {
        m.labels["outcome"]: m.value for m in p._metrics() if m.name == "opskit_retry_calls_total"
    }


# -- retries and waits -----------------------------------------------------------------


def test_flaky_get_is_retried_with_the_policy_waits(
    caller: Any, upstream: Any, key: str, drained: Any
) -> None:
    clock = ManualClock()
    retry = policy(clock)
    t = caller.transport(name="up", retry=retry)
    r = caller.request(t, "GET", f"{upstream.url}/flaky/{key}?fail=2&status=503")
    assert r.status_code == 200 and r.text == "ok after 3"
    assert upstream.app.counts[key] == 3
    assert clock.sleeps == [0.5, 0.5]
    reg = caller.registry
    assert sample(reg, "opskit_http_requests_total", client="up", outcome="retried") == 1
    assert sample(reg, "opskit_http_attempts_total", client="up", outcome="status") == 2
    assert sample(reg, "opskit_http_attempts_total", client="up", outcome="ok") == 1
    # The call counts once in the policy's metrics.
    assert retry_calls(retry) == {**dict.fromkeys(retry_calls(retry), 0), "recovered": 1}
    drained(t)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_honoured(caller: Any, upstream: Any, key: str, status: int) -> None:
    clock = ManualClock()
    t = caller.transport(retry=policy(clock, backoff=backoff.constant(0.1)))
    r = caller.request(t, "GET", f"{upstream.url}/flaky/{key}?fail=1&status={status}&retry_after=3")
    assert r.status_code == 200
    assert clock.sleeps == [3.0]


def test_retry_after_http_date_is_measured_from_the_policy_clock(
    caller: Any, upstream: Any, key: str
) -> None:
    clock = ManualClock(wall_start=1_800_000_000.0)
    t = caller.transport(retry=policy(clock, backoff=backoff.constant(0.1)))
    when = int(clock.time()) + 7
    r = caller.request(t, "GET", f"{upstream.url}/flaky/{key}?fail=1&status=429&date={when}")
    assert r.status_code == 200
    assert clock.sleeps == [pytest.approx(7.0)]


def test_retry_after_is_capped_and_ignored_on_other_statuses(
    caller: Any, upstream: Any, key: str
) -> None:
    clock = ManualClock()
    t = caller.transport(retry=policy(clock, backoff=backoff.constant(0.1), max_retry_after=2))
    caller.request(t, "GET", f"{upstream.url}/flaky/{key}?fail=1&status=503&retry_after=50")
    caller.request(t, "GET", f"{upstream.url}/flaky/{key}-b?fail=1&status=500&retry_after=50")
    assert clock.sleeps == [2.0, 0.1]


def test_after_the_last_attempt_the_caller_gets_the_last_response(
    caller: Any, upstream: Any, key: str, drained: Any
) -> None:
    clock = ManualClock()
    retry = policy(clock, attempts=3)
    t = caller.transport(name="last", retry=retry)
    r = caller.request(t, "GET", f"{upstream.url}/flaky/{key}?fail=9&status=503")
    assert r.status_code == 503 and r.text == "failing"
    assert upstream.app.counts[key] == 3
    assert retry_calls(retry)["exhausted"] == 1
    reg = caller.registry
    assert sample(reg, "opskit_http_requests_total", client="last", outcome="retried") == 1
    drained(t)


def test_testing_mode_skips_the_waits(caller: Any, upstream: Any, key: str) -> None:
    clock = ManualClock()
    t = caller.transport(retry=policy(clock))
    with testing():
        r = caller.request(t, "GET", f"{upstream.url}/flaky/{key}?fail=2&status=503")
    assert r.status_code == 200 and clock.sleeps == []


def test_statuses_not_listed_are_not_retried(caller: Any, upstream: Any, key: str) -> None:
    t = caller.transport(retry=policy(ManualClock()))
    r = caller.request(t, "GET", f"{upstream.url}/flaky/{key}?fail=2&status=404")
    assert r.status_code == 404 and upstream.app.counts[key] == 1


# -- idempotency ---------------------------------------------------------------------------


def test_post_is_not_retried_without_an_idempotency_key(
    caller: Any, upstream: Any, key: str
) -> None:
    retry = policy(ManualClock())
    t = caller.transport(retry=retry)
    r = caller.request(t, "POST", f"{upstream.url}/flaky/{key}?fail=2&status=503", json={"a": 1})
    assert r.status_code == 503 and upstream.app.counts[key] == 1
    assert retry_calls(retry)["failed"] == 1


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_unsafe_method_with_an_idempotency_key_is_retried_with_its_body(
    caller: Any, upstream: Any, key: str, method: str
) -> None:
    t = caller.transport(retry=policy(ManualClock()))
    r = caller.request(t, method, f"{upstream.url}/flaky/{key}?fail=2&status=503",
                       content=b"amount=100", headers={"Idempotency-Key": "k-1"})  # fmt: skip
    assert r.status_code == 200 and upstream.app.counts[key] == 3
    assert upstream.app.methods[key] == [method] * 3
    assert all(h["content-length"] == "10" for h in upstream.app.headers[key])


def test_custom_retry_methods(caller: Any, upstream: Any, key: str) -> None:
    t = caller.transport(retry=policy(ManualClock()), retry_methods={"GET"})
    r = caller.request(t, "PUT", f"{upstream.url}/flaky/{key}?fail=2&status=503", content=b"x")
    assert r.status_code == 503 and upstream.app.counts[key] == 1


def test_connect_errors_are_retried_for_any_method(caller: Any) -> None:
    clock = ManualClock()
    t = caller.transport(name="refused", retry=policy(clock, attempts=3))
    with pytest.raises(httpx.ConnectError):
        caller.request(t, "POST", f"http://127.0.0.1:{free_port()}/x", content=b"x")
    assert clock.sleeps == [0.5, 0.5]
    reg = caller.registry
    assert sample(reg, "opskit_http_attempts_total", client="refused", outcome="error") == 3
    assert sample(reg, "opskit_http_requests_total", client="refused", outcome="error") == 1


def test_a_reset_after_the_request_was_read_is_retried_for_get_only(
    caller: Any, reset_server: Any, key: str
) -> None:
    t = caller.transport(retry=policy(ManualClock()))
    r = caller.request(t, "GET", f"{reset_server.url}/r/{key}?fail=1")
    assert r.status_code == 200 and reset_server.counts[key] == 2
    with pytest.raises(httpx.TransportError):
        caller.request(t, "POST", f"{reset_server.url}/r/{key}-post?fail=1", content=b"x")
    assert reset_server.counts[f"{key}-post"] == 1


def test_a_one_shot_streaming_body_is_not_retried(caller: Any, upstream: Any, key: str) -> None:
    t = caller.transport(retry=policy(ManualClock()))
    if caller.mode == "sync":
        body: Any = iter([b"a", b"b"])
    else:

        async def agen() -> Any:
            yield b"a"
            yield b"b"

        body = agen()
    r = caller.request(t, "PUT", f"{upstream.url}/flaky/{key}?fail=2&status=503", content=body,
                       headers={"Idempotency-Key": "k"})  # fmt: skip
    assert r.status_code == 503 and upstream.app.counts[key] == 1


# -- timeouts -----------------------------------------------------------------------------


def test_attempt_timeout_is_retried_whatever_on_says(
    caller: Any, upstream: Any, key: str, drained: Any
) -> None:
    retry = Retry("narrow", on=ValueError, attempts=3, backoff=backoff.constant(0.01),
                  registry=CollectorRegistry())  # fmt: skip
    t = caller.transport(name="hang", retry=retry, attempt_timeout=0.3)
    r = caller.request(t, "GET", f"{upstream.url}/hang/{key}?fail=1")
    assert r.status_code == 200 and upstream.app.counts[key] == 2
    reg = caller.registry
    assert sample(reg, "opskit_http_attempts_total", client="hang", outcome="timeout") == 1
    drained(t)


def test_attempt_timeout_without_retry_raises(caller: Any, upstream: Any, key: str) -> None:
    t = caller.transport(attempt_timeout=0.2)
    with pytest.raises(AttemptTimeout) as info:
        caller.request(t, "GET", f"{upstream.url}/hang/{key}?fail=1&token=secret")
    assert isinstance(info.value, httpx.TimeoutException)
    assert "secret" not in str(info.value) and "127.0.0.1" in str(info.value)


def test_total_timeout_holds_across_attempts(caller: Any, upstream: Any, key: str) -> None:
    retry = policy(attempts=50, backoff=backoff.constant(0.01))
    t = caller.transport(name="total", retry=retry, attempt_timeout=0.25, total_timeout=0.6)
    started = time.monotonic()
    with pytest.raises(TotalTimeout):
        caller.request(t, "GET", f"{upstream.url}/hang/{key}?fail=99")
    assert time.monotonic() - started < 5  # a generous bound: it does not hang
    assert 2 <= upstream.app.counts[key] <= 3
    reg = caller.registry
    assert sample(reg, "opskit_http_requests_total", client="total", outcome="timeout") == 1


def test_a_wait_past_the_total_deadline_is_not_slept(caller: Any, upstream: Any, key: str) -> None:
    clock = ManualClock()
    t = caller.transport(retry=policy(clock, max_retry_after=120), total_timeout=10)
    r = caller.request(t, "GET", f"{upstream.url}/flaky/{key}?fail=1&status=503&retry_after=30")
    assert r.status_code == 503 and clock.sleeps == [] and upstream.app.counts[key] == 1


def test_limiter_wait_counts_against_the_total_timeout(
    caller: Any, upstream: Any, key: str
) -> None:
    clock = ManualClock()
    limiter = RateLimiter("out", rates=["1/10seconds"], clock=clock, registry=CollectorRegistry())
    t = caller.transport(name="lim", limiter=limiter, total_timeout=5.0, clock=clock)
    assert caller.request(t, "GET", f"{upstream.url}/ok/{key}").status_code == 200
    with pytest.raises(TotalTimeout):
        caller.request(t, "GET", f"{upstream.url}/ok/{key}")
    assert upstream.app.counts[key] == 1 and clock.sleeps == []  # nothing sent, nothing slept
    clock.advance(7)  # 3 s left to wait: that fits
    assert caller.request(t, "GET", f"{upstream.url}/ok/{key}").status_code == 200
    assert clock.sleeps == [pytest.approx(3.0)] and upstream.app.counts[key] == 2
    reg = caller.registry
    assert sample(reg, "opskit_http_requests_total", client="lim", outcome="timeout") == 1


def test_limiter_key_default_is_the_host(caller: Any, upstream: Any, key: str) -> None:
    clock = ManualClock()
    limiter = RateLimiter("out2", rates=["1/minute"], clock=clock, registry=CollectorRegistry())
    t = caller.transport(limiter=limiter, total_timeout=1.0, clock=clock)
    caller.request(t, "GET", f"{upstream.url}/ok/{key}")
    assert not limiter.peek("127.0.0.1").allowed and limiter.peek("localhost").allowed
    keyed = caller.transport(limiter=limiter, limiter_key=lambda r: "shared", clock=clock)
    caller.request(keyed, "GET", f"{upstream.url}/ok/{key}")
    assert not limiter.peek("shared").allowed


def test_a_streamed_body_may_pause_longer_than_the_attempt_timeout(
    caller: Any, upstream: Any, key: str, drained: Any
) -> None:
    t = caller.transport(attempt_timeout=0.3, total_timeout=0.5)
    url = f"{upstream.url}/stream/{key}?chunks=3&pause=0.4"
    if caller.mode == "sync":
        with caller.client(t).stream("GET", url) as r:
            assert not r.is_stream_consumed
            body = b"".join(r.iter_bytes())
    else:

        async def go() -> bytes:
            async with caller.client(t).stream("GET", url) as r:
                assert not r.is_stream_consumed
                return b"".join([c async for c in r.aiter_bytes()])

        body = caller._run(go())
    assert body == b"chunk0;chunk1;chunk2;"
    drained(t)


# -- breaker -----------------------------------------------------------------------------


def test_breaker_opens_and_rejects_without_reaching_the_server(
    caller: Any, upstream: Any, key: str, drained: Any
) -> None:
    clock = ManualClock()
    breaker = CircuitBreaker("up", consecutive_failures=2, open_for=30, clock=clock,
                             registry=CollectorRegistry())  # fmt: skip
    t = caller.transport(name="brk", breaker=breaker)
    url = f"{upstream.url}/flaky/{key}?fail=99&status=500"
    assert caller.request(t, "GET", url).status_code == 500
    assert caller.request(t, "GET", url).status_code == 500
    assert breaker.state is State.OPEN
    with pytest.raises(CircuitOpenError):
        caller.request(t, "GET", url)
    assert upstream.app.counts[key] == 2
    reg = caller.registry
    assert sample(reg, "opskit_http_requests_total", client="brk", outcome="rejected") == 1
    assert sample(reg, "opskit_http_attempts_total", client="brk", outcome="rejected") == 1
    drained(t)


def test_breaker_opening_between_attempts_ends_the_retries(
    caller: Any, upstream: Any, key: str
) -> None:
    clock = ManualClock()
    breaker = CircuitBreaker("up2", consecutive_failures=2, clock=clock,
                             registry=CollectorRegistry())  # fmt: skip
    t = caller.transport(retry=policy(clock, attempts=5), breaker=breaker)
    with pytest.raises(CircuitOpenError):
        caller.request(t, "GET", f"{upstream.url}/flaky/{key}?fail=99&status=503")
    assert upstream.app.counts[key] == 2


def test_4xx_is_not_a_breaker_failure_transport_errors_are(
    caller: Any, upstream: Any, key: str
) -> None:
    breaker = CircuitBreaker("up3", consecutive_failures=2, registry=CollectorRegistry())
    t = caller.transport(breaker=breaker, attempt_timeout=0.2)
    for _ in range(3):
        r = caller.request(t, "GET", f"{upstream.url}/flaky/{key}?fail=99&status=429")
        assert r.status_code == 429
    assert breaker.state is State.CLOSED
    with pytest.raises(AttemptTimeout):
        caller.request(t, "GET", f"{upstream.url}/hang/{key}-h?fail=9")
    with pytest.raises(httpx.ConnectError):
        caller.request(t, "GET", f"http://127.0.0.1:{free_port()}/")
    assert breaker.state is State.OPEN


def test_breaker_for_is_called_once_per_host(caller: Any, upstream: Any, key: str) -> None:
    made: list[str] = []

    def factory(host: str) -> CircuitBreaker:
        made.append(host)
        return CircuitBreaker(f"b-{host}", registry=CollectorRegistry())

    t = caller.transport(breaker_for=factory)
    port = upstream.url.rsplit(":", 1)[1]
    for host in ("127.0.0.1", "localhost", "127.0.0.1", "localhost"):
        assert caller.request(t, "GET", f"http://{host}:{port}/ok/{key}").status_code == 200
    assert made == ["127.0.0.1", "localhost"]


# -- hedging -----------------------------------------------------------------------------


def test_hedging_cuts_a_slow_first_attempt_and_closes_the_loser(
    caller: Any, upstream: Any, key: str, drained: Any
) -> None:
    t = caller.transport(name="hedge", hedge=Hedge(after=0.1))
    with capture_logs() as logs:
        r = caller.request(t, "GET", f"{upstream.url}/slow/{key}?first=3")
    assert r.status_code == 200 and r.headers["x-attempt"] == "2"
    assert upstream.app.counts[key] == 2
    reg = caller.registry
    assert sample(reg, "opskit_http_requests_total", client="hedge", outcome="hedged") == 1
    assert [e["host"] for e in logs if e["event"] == "http.hedge"] == ["127.0.0.1"]
    if caller.mode == "async":
        # The loser was cancelled: its connection closed, so the server saw the client go.
        assert sample(reg, "opskit_http_attempts_total", client="hedge", outcome="cancelled") == 1
    else:
        t._pool.shutdown(wait=True)  # the loser returns; its response is closed at once
    drained(t)


def test_a_fast_answer_is_not_hedged(caller: Any, upstream: Any, key: str) -> None:
    t = caller.transport(hedge=Hedge(after=2))
    assert caller.request(t, "GET", f"{upstream.url}/ok/{key}").status_code == 200
    assert upstream.app.counts[key] == 1


def test_post_without_a_key_is_not_hedged(caller: Any, upstream: Any, key: str) -> None:
    t = caller.transport(hedge=Hedge(after=0.05))
    r = caller.request(t, "POST", f"{upstream.url}/slow/{key}?first=0.3", content=b"x")
    assert r.headers["x-attempt"] == "1" and upstream.app.counts[key] == 1


def test_an_early_failure_starts_the_hedge_at_once(caller: Any, upstream: Any, key: str) -> None:
    t = caller.transport(hedge=Hedge(after=30))
    r = caller.request(t, "GET", f"{upstream.url}/flaky/{key}?fail=1&status=503")
    assert r.status_code == 200 and upstream.app.counts[key] == 2


class Busy:
    """A ``retry_if_result`` check that rejects 202 and records every status it saw."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def __call__(self, r: httpx.Response) -> bool:
        self.seen.append(r.status_code)
        return r.status_code == 202


def test_retry_if_result_runs_once_per_response(caller: Any, upstream: Any, key: str) -> None:
    busy = Busy()
    clock = ManualClock()
    t = caller.transport(name="up", retry=policy(clock, retry_if_result=busy))
    r = caller.request(t, "GET", f"{upstream.url}/flaky/{key}?fail=2&status=202")
    assert r.status_code == 200 and r.text == "ok after 3"
    assert busy.seen == [202, 202, 200]  # counting and the retry decision share one verdict
    assert clock.sleeps == [0.5, 0.5]
    reg = caller.registry
    assert sample(reg, "opskit_http_attempts_total", client="up", outcome="status") == 2
    assert sample(reg, "opskit_http_attempts_total", client="up", outcome="ok") == 1


def test_retry_if_result_runs_once_per_response_when_hedging(
    caller: Any, upstream: Any, key: str
) -> None:
    busy = Busy()
    t = caller.transport(retry=policy(ManualClock(), retry_if_result=busy), hedge=Hedge(after=30))
    r = caller.request(t, "GET", f"{upstream.url}/flaky/{key}?fail=1&status=202")
    assert r.status_code == 200 and upstream.app.counts[key] == 2  # the hedge won at once
    assert busy.seen == [202, 200]


def test_a_result_check_that_raises_reaches_the_caller_and_frees_the_connection(
    caller: Any, upstream: Any, key: str, drained: Any
) -> None:
    def buggy(r: httpx.Response) -> bool:
        raise RuntimeError("bug in the check")

    t = caller.transport(name="up", retry=policy(ManualClock(), retry_if_result=buggy))
    for i in range(3):
        with pytest.raises(RuntimeError, match="bug in the check"):
            caller.request(t, "GET", f"{upstream.url}/ok/{key}-{i}")
    drained(t)  # each response was closed: no connection stays busy
    reg = caller.registry
    assert sample(reg, "opskit_http_attempts_total", client="up", outcome="error") == 3
    assert sample(reg, "opskit_http_requests_total", client="up", outcome="error") == 3


# -- telemetry ---------------------------------------------------------------------------


def test_retry_log_names_host_and_status_never_query_or_headers(
    caller: Any, upstream: Any, key: str
) -> None:
    t = caller.transport(retry=policy(ManualClock()))
    with capture_logs() as logs:
        caller.request(t, "GET", f"{upstream.url}/flaky/{key}?fail=1&status=503&token=s3cr3t",
                       headers={"Authorization": "Bearer hunter2"})  # fmt: skip
    events = [e for e in logs if e["event"] == "http.retry"]
    assert len(events) == 1
    assert events[0]["host"] == "127.0.0.1" and events[0]["status"] == 503
    assert events[0]["wait"] == 0.5
    assert events[0]["retry"] == "up" and events[0]["attempt"] == 1
    # One line per retry: the policy's own retry.scheduled is not logged beside it.
    assert [e["event"] for e in logs if e["event"].startswith("retry.")] == []
    text = repr(logs)
    assert "s3cr3t" not in text and "hunter2" not in text and key not in text


def test_close_removes_the_metrics(caller: Any, upstream: Any, key: str) -> None:
    t = caller.transport(name="gone")
    caller.request(t, "GET", f"{upstream.url}/ok/{key}")
    reg = caller.registry
    assert sample(reg, "opskit_http_requests_total", client="gone", outcome="ok") == 1
    t._engine.close()
    assert sample(reg, "opskit_http_requests_total", client="gone", outcome="ok") is None


# -- tenant propagation ------------------------------------------------------------------


def _in_tenant(caller: Any, t: Any, tenant: str | None, url: str, **kw: Any) -> httpx.Response:
    if caller.mode == "sync":
        with tenant_scope(tenant):
            return caller.request(t, "GET", url, **kw)  # type: ignore[no-any-return]

    async def go() -> httpx.Response:
        async with tenant_scope(tenant):
            return await caller.client(t).get(url, **kw)  # type: ignore[no-any-return]

    return caller._run(go())  # type: ignore[no-any-return]


def test_the_tenant_header_arrives_on_every_attempt(caller: Any, upstream: Any, key: str) -> None:
    t = caller.transport(retry=policy(ManualClock()), hedge=Hedge(after=30))
    r = _in_tenant(caller, t, "acme", f"{upstream.url}/flaky/{key}?fail=3&status=503")
    assert r.status_code == 200 and upstream.app.counts[key] == 4  # hedge + retries
    assert [h.get("x-opskit-tenant") for h in upstream.app.headers[key]] == ["acme"] * 4


def test_no_tenant_header_outside_a_scope_or_when_off(caller: Any, upstream: Any, key: str) -> None:
    t = caller.transport()
    _in_tenant(caller, t, None, f"{upstream.url}/ok/{key}")
    off = caller.transport(propagate_tenant=False)
    _in_tenant(caller, off, "acme", f"{upstream.url}/ok/{key}")
    explicit = caller.transport()
    _in_tenant(caller, explicit, "acme", f"{upstream.url}/ok/{key}",
               headers={"x-opskit-tenant": "mine"})  # fmt: skip
    seen = [h.get("x-opskit-tenant") for h in upstream.app.headers[key]]
    assert seen == [None, None, "mine"]
