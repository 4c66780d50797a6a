from __future__ import annotations

import asyncio
import inspect
import random
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import opskit.retry._policy as policy_mod
from opskit import OpskitError
from opskit.retry import NEVER_RETRIED, Retry, RetryBudget, RetryExhausted, backoff, testing
from opskit.testing import ManualClock


class Flaky:
    """Fails ``failures`` times with ``exc``, then returns ``value``."""

    def __init__(self, failures: int, exc: BaseException | None = None, value: Any = "ok",
                 clock: ManualClock | None = None, takes: float = 0.0) -> None:  # fmt: skip
        self.failures = failures
        self.exc = exc or ConnectionError("upstream down")
        self.value = value
        self.calls = 0
        self.clock = clock
        self.takes = takes

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.clock is not None and self.takes:
            self.clock.advance(self.takes)
        if self.calls <= self.failures:
            raise self.exc
        return self.value


def policy(clock: ManualClock, **kw: Any) -> Retry:
    kw.setdefault("on", ConnectionError)
    kw.setdefault("backoff", backoff.exponential(initial=0.1, maximum=10, jitter="none"))
    return Retry("t", clock=clock, registry=CollectorRegistry(), **kw)


def count(p: Retry, outcome: str) -> float:
    return p._publication._collector and next(  # type: ignore[union-attr,return-value]
        m.value for m in p._metrics() if m.labels.get("outcome") == outcome
    )


def test_first_try_success_builds_no_tenacity_machinery(
    manual_clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*a: Any, **k: Any) -> None:
        raise AssertionError("tenacity state built on the success path")

    monkeypatch.setattr(policy_mod, "RetryCallState", forbidden)
    p = policy(manual_clock)
    f = Flaky(0)
    assert p(f)(1, x=2) == "ok"
    assert p.call(f) == "ok"
    assert manual_clock.sleeps == []
    assert count(p, "first_try") == 2


def test_retries_then_recovers_with_the_backoff_waits(manual_clock: ManualClock) -> None:
    p = policy(manual_clock, attempts=4)
    f = Flaky(2)
    assert p(f)() == "ok"
    assert f.calls == 3
    assert manual_clock.sleeps == [0.1, 0.2]
    assert count(p, "recovered") == 1
    assert next(m.value for m in p._metrics() if m.name == "opskit_retry_retries_total") == 2


def test_exhaustion_reraises_the_last_exception_itself_with_a_note(
    manual_clock: ManualClock,
) -> None:
    err = ConnectionError("still down")
    p = policy(manual_clock, attempts=3)
    f = Flaky(10, err)
    with pytest.raises(ConnectionError) as info:
        p.call(f)
    assert info.value is err  # no wrapper
    assert f.calls == 3
    assert manual_clock.sleeps == [0.1, 0.2]
    assert info.value.__notes__ == [
        "opskit.retry 't': gave up after 3 attempts over 0.300s (exhausted)"
    ]
    assert count(p, "exhausted") == 1


def test_result_exhaustion_raises_retry_exhausted_with_the_last_result(
    manual_clock: ManualClock,
) -> None:
    p = policy(manual_clock, attempts=3, retry_if_result=lambda r: r["status"] == 503)
    calls = iter([{"status": 503, "n": 1}, {"status": 503, "n": 2}, {"status": 503, "n": 3}])
    with pytest.raises(RetryExhausted) as info:
        p.call(lambda: next(calls))
    assert info.value.last_result == {"status": 503, "n": 3}
    assert info.value.attempts == 3
    assert isinstance(info.value, OpskitError)
    assert "503" not in str(info.value)  # the result is never in the message
    ok = iter([{"status": 503}, {"status": 200}])
    assert p.call(lambda: next(ok)) == {"status": 200}


def test_errors_outside_on_are_not_retried(manual_clock: ManualClock) -> None:
    p = policy(manual_clock)
    f = Flaky(5, ValueError("bad input"))
    with pytest.raises(ValueError, match="bad input"):
        p.call(f)
    assert f.calls == 1
    # ... also when the first failure was retryable and a later one is not.
    seq = iter([ConnectionError(), KeyError("k")])

    def g() -> None:
        raise next(seq)

    with pytest.raises(KeyError):
        p.call(g)
    assert manual_clock.sleeps == [0.1]
    assert count(p, "failed") == 2


def test_predicate_on(manual_clock: ManualClock) -> None:
    p = policy(manual_clock, on=lambda e: isinstance(e, OSError) and e.errno == 111)
    refused = OSError(111, "refused")
    f = Flaky(1, refused)
    assert p.call(f) == "ok"
    with pytest.raises(OSError, match="other"):
        p.call(Flaky(1, OSError(5, "other")))


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_base_exceptions_are_never_retried(manual_clock: ManualClock, exc_type: type) -> None:
    p = policy(manual_clock, on=BaseException)
    f = Flaky(3, exc_type())
    with pytest.raises(exc_type):
        p.call(f)
    assert f.calls == 1
    assert exc_type in NEVER_RETRIED


async def test_async_cancellation_is_never_retried(manual_clock: ManualClock) -> None:
    p = policy(manual_clock, on=BaseException, attempts=5)
    started = asyncio.Event()
    calls = 0

    @p
    async def slow() -> None:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.Event().wait()

    task = asyncio.ensure_future(slow())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1
    assert manual_clock.sleeps == []

    # A predicate that says yes to everything still cannot retry cancellation.
    q = policy(manual_clock, on=lambda e: True)
    f = Flaky(1, asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        q.call(f)
    assert f.calls == 1


async def test_async_decorator_call_async_and_signature(manual_clock: ManualClock) -> None:
    p = policy(manual_clock, attempts=3)
    f = Flaky(2, value=7)

    @p
    async def fetch(a: int, *, b: str = "x") -> int:
        """Doc."""
        return f() * a  # type: ignore[no-any-return]

    assert inspect.iscoroutinefunction(fetch)
    assert fetch.__name__ == "fetch" and fetch.__doc__ == "Doc."
    assert str(inspect.signature(fetch)) == "(a: 'int', *, b: 'str' = 'x') -> 'int'"
    assert await fetch(2) == 14
    assert manual_clock.sleeps == [0.1, 0.2]

    g = Flaky(1)

    async def coro() -> Any:
        return g()

    assert await p.call_async(coro) == "ok"
    with pytest.raises(ConnectionError):
        await p.call_async(_async_failing)


async def _async_failing() -> None:
    raise ConnectionError("x")


def test_sync_decorator_keeps_the_signature(manual_clock: ManualClock) -> None:
    p = policy(manual_clock)

    @p
    def charge(amount: int, currency: str = "eur") -> str:
        return f"{amount}{currency}"

    assert str(inspect.signature(charge)) == "(amount: 'int', currency: 'str' = 'eur') -> 'str'"
    assert charge(5) == "5eur"


class WithRetryAfter(ConnectionError):
    def __init__(self, retry_after: float) -> None:
        super().__init__("throttled")
        self.retry_after = retry_after


def test_retry_after_sets_the_wait_never_shorter_than_backoff_and_capped(
    manual_clock: ManualClock,
) -> None:
    p = policy(manual_clock, attempts=4, max_retry_after=30,
               backoff=backoff.constant(2.0))  # fmt: skip
    seq = iter([WithRetryAfter(5), WithRetryAfter(0.5), WithRetryAfter(3600)])

    def f() -> str:
        e = next(seq, None)
        if e:
            raise e
        return "ok"

    assert p.call(f) == "ok"
    assert manual_clock.sleeps == [5.0, 2.0, 30.0]


def test_retry_after_can_be_ignored(manual_clock: ManualClock) -> None:
    p = policy(manual_clock, respect_retry_after=False, backoff=backoff.constant(1.0))
    assert p.call(Flaky(1, WithRetryAfter(50))) == "ok"
    assert manual_clock.sleeps == [1.0]


def test_deadline_stops_before_a_wait_that_would_pass_it(manual_clock: ManualClock) -> None:
    p = policy(manual_clock, attempts=10, deadline=2.5, backoff=backoff.constant(1.0))
    f = Flaky(100, clock=manual_clock, takes=0.2)
    with pytest.raises(ConnectionError) as info:
        p.call(f)
    # attempt 1 (0.2) wait 1, attempt 2 (1.4) wait 1, attempt 3 ends at 2.6 > 2.5: stop.
    assert f.calls == 3
    assert manual_clock.sleeps == [1.0, 1.0]
    assert "deadline exceeded" in info.value.__notes__[0]
    assert count(p, "deadline_exceeded") == 1
    # A wait that would cross the deadline is not slept at all.
    q = policy(manual_clock, attempts=10, deadline=5, backoff=backoff.constant(10.0))
    manual_clock.sleeps.clear()
    with pytest.raises(ConnectionError):
        q.call(Flaky(100))
    assert manual_clock.sleeps == []


def test_budget_stops_retries_when_empty_and_refills(manual_clock: ManualClock) -> None:
    budget = RetryBudget(ratio=0.5, min_per_second=0, ttl=10, clock=manual_clock)
    p = policy(manual_clock, attempts=3, budget=budget, backoff=backoff.constant(0.0))
    for _ in range(4):  # 4 successful calls deposit 2 retries
        p.call(Flaky(0))
    assert budget.balance() == pytest.approx(2.0)
    f = Flaky(100)
    with pytest.raises(ConnectionError) as info:
        p.call(f)  # its own deposit makes 2.5: two retries, then empty
    assert f.calls == 3
    g = Flaky(100)
    with pytest.raises(ConnectionError) as info:
        p.call(g)
    assert g.calls == 2  # 1 unit left + its own deposit = one retry, then empty
    assert "budget exhausted" in info.value.__notes__[0]
    assert count(p, "budget_exhausted") == 1
    manual_clock.advance(10.5)  # everything expired, withdrawals too
    assert budget.balance() == pytest.approx(0.0)


def test_budget_reserve_allows_min_per_second(manual_clock: ManualClock) -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=1, ttl=10, clock=manual_clock)
    taken = sum(budget.try_withdraw() for _ in range(20))
    assert taken == 10  # min_per_second * ttl with no traffic at all
    manual_clock.advance(11)
    assert budget.try_withdraw()


def test_iteration_blocks(manual_clock: ManualClock) -> None:
    p = policy(manual_clock, attempts=3)
    f = Flaky(2)
    seen = []
    for attempt in p:
        with attempt:
            seen.append(attempt.retry_state.attempt_number)
            f()
    assert seen == [1, 2, 3]
    assert manual_clock.sleeps == [0.1, 0.2]

    def run_blocks() -> None:
        for attempt in p:
            with attempt:
                Flaky(9)()

    with pytest.raises(ConnectionError):
        run_blocks()


async def test_async_iteration_blocks(manual_clock: ManualClock) -> None:
    p = policy(manual_clock, attempts=3)
    f = Flaky(1)
    n = 0
    async for attempt in p:
        with attempt:
            n += 1
            await asyncio.sleep(0)
            f()
    assert n == 2
    assert manual_clock.sleeps == [0.1]


def test_as_tenacity_gives_the_same_attempts_and_waits_for_the_same_seed() -> None:
    def run(use_tenacity: bool) -> tuple[list[float], int]:
        clock = ManualClock()
        p = Retry("t", on=ConnectionError, attempts=5, clock=clock, registry=CollectorRegistry(),
                  backoff=backoff.exponential(jitter="full", rng=random.Random(42)))  # fmt: skip
        f = Flaky(3)
        if use_tenacity:
            assert p.as_tenacity()(f) == "ok"
        else:
            assert p.call(f) == "ok"
        return clock.sleeps, f.calls

    assert run(True) == run(False)
    sleeps, calls = run(False)
    assert calls == 4 and len(sleeps) == 3


async def test_as_tenacity_async_and_exhaustion() -> None:
    clock = ManualClock()
    p = Retry("t", on=ConnectionError, attempts=2, clock=clock, registry=CollectorRegistry(),
              backoff=backoff.constant(1.5))  # fmt: skip
    with pytest.raises(ConnectionError) as info:
        await p.as_tenacity(asyncio=True)(_async_failing)
    assert info.value.__notes__
    assert clock.sleeps == [1.5]


def test_testing_mode_skips_waits_caps_attempts_and_restores(manual_clock: ManualClock) -> None:
    p = policy(manual_clock, attempts=5)
    with testing():
        assert testing.active()
        assert p.call(Flaky(3)) == "ok"
        assert manual_clock.sleeps == []
        with testing(attempts=1):
            f = Flaky(1)
            with pytest.raises(ConnectionError):
                p.call(f)
            assert f.calls == 1
        assert p.call(Flaky(2)) == "ok"  # cap restored
    assert not testing.active()
    switch = testing()
    assert testing.active()
    testing(False)
    assert not testing.active()
    del switch
    with pytest.raises(ValueError, match="attempts"):
        testing(attempts=0)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"attempts": 0}, "attempts"),
        ({"attempts": True}, "attempts"),
        ({"deadline": -1}, "deadline"),
        ({"deadline": 0}, "deadline"),
        ({"max_retry_after": -1}, "max_retry_after"),
        ({"on": "ConnectionError"}, "on"),
        ({"on": ()}, "on"),
        ({"on": (ValueError, int)}, "on"),
        ({"backoff": 5}, "backoff"),
        ({"budget": 3}, "budget"),
        ({"retry_if_result": 3}, "retry_if_result"),
    ],
)
def test_invalid_configuration_names_the_parameter(kwargs: dict[str, Any], param: str) -> None:
    kwargs.setdefault("on", ConnectionError)
    with pytest.raises(ValueError, match=param):
        Retry("t", registry=CollectorRegistry(), **kwargs)
    with pytest.raises(ValueError, match="name"):
        Retry("", on=ConnectionError)


def test_logs_say_attempt_wait_and_error_type_but_not_the_message(
    manual_clock: ManualClock,
) -> None:
    p = policy(manual_clock, attempts=2)
    with structlog.testing.capture_logs() as logs, pytest.raises(ConnectionError):
        p.call(Flaky(5, ConnectionError("password=hunter2")))
    assert [e["event"] for e in logs] == ["retry.scheduled", "retry.exhausted"]
    assert logs[0]["attempt"] == 1 and logs[0]["wait"] == 0.1
    assert logs[0]["error"] == "ConnectionError"
    assert "hunter2" not in repr(logs)
    loud = policy(manual_clock, attempts=2, log_error_messages=True)
    with structlog.testing.capture_logs() as logs, pytest.raises(ConnectionError):
        loud.call(Flaky(5, ConnectionError("detail")))
    assert logs[0]["message"] == "detail"


def test_a_quiet_run_logs_no_scheduled_line_but_still_its_exhaustion(
    manual_clock: ManualClock,
) -> None:
    run = policy(manual_clock, attempts=2).begin()
    with structlog.testing.capture_logs() as logs:
        assert run.next_wait(error="HTTP 503", quiet=True) == 0.1
        assert run.next_wait(error="HTTP 503", quiet=True) is None
    assert [e["event"] for e in logs] == ["retry.exhausted"]
    assert logs[0]["attempts"] == 2 and logs[0]["reason"] == "exhausted"


def test_metrics_on_the_registry_and_close() -> None:
    reg = CollectorRegistry()
    clock = ManualClock()
    p = Retry("pay", on=ConnectionError, clock=clock, registry=reg)
    p.call(Flaky(0))
    p.call(Flaky(1))
    assert reg.get_sample_value(
        "opskit_retry_calls_total", {"name": "pay", "outcome": "first_try"}) == 1  # fmt: skip
    assert reg.get_sample_value(
        "opskit_retry_calls_total", {"name": "pay", "outcome": "recovered"}) == 1  # fmt: skip
    assert reg.get_sample_value("opskit_retry_retries_total", {"name": "pay"}) == 1
    Retry("pay2", on=ConnectionError, registry=reg)  # same names, no duplicate error
    p.close()
    assert reg.get_sample_value(
        "opskit_retry_calls_total", {"name": "pay", "outcome": "first_try"}) is None  # fmt: skip
    assert "pay" in repr(p)


@settings(max_examples=60, deadline=None)
@given(attempts=st.integers(1, 8), failures=st.integers(0, 10), wait=st.floats(0, 5))
def test_property_calls_and_waits(attempts: int, failures: int, wait: float) -> None:
    clock = ManualClock()
    p = Retry("p", on=ConnectionError, attempts=attempts, clock=clock,
              registry=CollectorRegistry(), backoff=backoff.constant(wait))  # fmt: skip
    f = Flaky(failures)
    if failures < attempts:
        assert p.call(f) == "ok"
    else:
        with pytest.raises(ConnectionError):
            p.call(f)
    assert f.calls == min(attempts, failures + 1)
    assert clock.sleeps == [wait] * (f.calls - 1)
