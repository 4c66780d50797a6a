"""Retry's public pieces for drivers with their own loop: retryable, next_wait, begin."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from opskit.retry import Retry, RetryBudget, RetryRun, backoff, testing
from opskit.testing import ManualClock


def policy(clock: ManualClock, **kw: object) -> Retry:
    kw.setdefault("on", ConnectionError)
    kw.setdefault("backoff", backoff.exponential(initial=0.1, maximum=10, jitter="none"))
    return Retry("run", clock=clock, registry=CollectorRegistry(), **kw)  # type: ignore[arg-type]


def outcomes(p: Retry) -> dict[str, float]:
    return {
        m.labels["outcome"]: m.value for m in p._metrics() if m.name == "opskit_retry_calls_total"
    }


def test_retryable_is_the_on_predicate() -> None:
    p = policy(ManualClock())
    assert p.retryable(ConnectionError("x"))
    assert not p.retryable(ValueError("x"))
    assert not p.retryable(asyncio.CancelledError())


def test_next_wait_applies_backoff_and_retry_after() -> None:
    p = policy(ManualClock(), max_retry_after=5.0)
    assert p.next_wait(1) == pytest.approx(0.1)
    assert p.next_wait(3) == pytest.approx(0.4)
    assert p.next_wait(1, retry_after=2.0) == pytest.approx(2.0)
    assert p.next_wait(1, retry_after=100.0) == pytest.approx(5.0)  # capped
    assert p.next_wait(3, retry_after=0.01) == pytest.approx(0.4)  # backoff is longer
    q = policy(ManualClock(), respect_retry_after=False)
    assert q.next_wait(1, retry_after=2.0) == pytest.approx(0.1)


@given(attempt=st.integers(1, 30), after=st.none() | st.floats(0, 1000))
def test_next_wait_matches_the_policy_rule(attempt: int, after: float | None) -> None:
    p = policy(ManualClock(), max_retry_after=60.0)
    base = p.backoff.delay(attempt, 0.0)
    expected = base if after is None else max(base, min(after, 60.0))
    assert p.next_wait(attempt, 0.0, after) == pytest.approx(expected)


def test_run_counts_once_recovered_and_first_try() -> None:
    clock = ManualClock()
    p = policy(clock, attempts=3)
    run = p.begin()
    assert isinstance(run, RetryRun) and run.attempt == 1
    wait = run.next_wait(error=ConnectionError("down"))
    assert wait == pytest.approx(0.1) and run.attempt == 2
    run.sleep(wait)
    assert clock.sleeps == [pytest.approx(0.1)]
    run.succeeded()
    run.succeeded()  # a second end changes nothing
    p.begin().succeeded()
    got = outcomes(p)
    assert got["recovered"] == 1 and got["first_try"] == 1
    assert next(m.value for m in p._metrics() if m.name == "opskit_retry_retries_total") == 1


def test_run_exhausts_after_attempts_and_under_testing_cap() -> None:
    p = policy(ManualClock(), attempts=2)
    run = p.begin()
    assert run.next_wait() is not None
    assert run.next_wait() is None and run.reason == "exhausted"
    assert run.next_wait() is None
    with testing(attempts=1):
        assert p.max_attempts == 1
        r2 = p.begin()
        assert r2.next_wait() is None and r2.reason == "exhausted"
    assert outcomes(p)["exhausted"] == 2


def test_run_deadline_and_caller_limit() -> None:
    clock = ManualClock()
    p = policy(clock, attempts=10, deadline=1.0, backoff=backoff.constant(0.4))
    run = p.begin()
    clock.advance(0.7)
    assert run.next_wait() is None and run.reason == "deadline_exceeded"
    run2 = p.begin()
    assert run2.next_wait(limit=0.3) is None and run2.reason == "deadline_exceeded"
    assert outcomes(p)["deadline_exceeded"] == 2


def test_run_budget_and_failed() -> None:
    clock = ManualClock()
    budget = RetryBudget(ratio=0.1, min_per_second=0, ttl=10, clock=clock)
    p = policy(clock, attempts=5, budget=budget)
    run = p.begin()  # one deposit: 0.1 of a retry
    assert run.next_wait() is None and run.reason == "budget_exhausted"
    p.begin().failed()
    got = outcomes(p)
    assert got["budget_exhausted"] == 1 and got["failed"] == 1


async def test_run_asleep_skipped_under_testing() -> None:
    clock = ManualClock()
    p = policy(clock)
    run = p.begin()
    await run.asleep(2.0)
    with testing():
        await run.asleep(3.0)
        run.sleep(3.0)
    assert clock.sleeps == [2.0]
