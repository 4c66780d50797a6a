from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry

from opskit import OpskitError
from opskit.breaker import (
    BreakerError,
    CircuitBreaker,
    CircuitOpenError,
    CountWindow,
    State,
    TimeWindow,
)
from opskit.testing import ManualClock


def boom() -> None:
    raise ConnectionError("dependency down")


def ok() -> str:
    return "ok"


def make(clock: ManualClock, **kw: Any) -> CircuitBreaker:
    kw.setdefault("minimum_calls", 4)
    kw.setdefault("window", CountWindow(10))
    kw.setdefault("open_for", 10.0)
    return CircuitBreaker("dep", clock=clock, registry=CollectorRegistry(), **kw)


def fail_n(b: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(ConnectionError):
            b.call(boom)


def test_opens_at_the_failure_rate_once_the_minimum_is_reached(manual_clock: ManualClock) -> None:
    b = make(manual_clock, failure_rate=0.5)
    b.call(ok)
    fail_n(b, 2)  # 2 of 3: rate reached, minimum not
    assert b.state is State.CLOSED
    fail_n(b, 1)  # 3 of 4
    assert b.state is State.OPEN
    calls = 0

    def counted() -> None:
        nonlocal calls
        calls += 1

    with pytest.raises(CircuitOpenError) as info:
        b.call(counted)
    assert calls == 0
    assert info.value.retry_after == pytest.approx(10.0)
    assert str(info.value) == "circuit breaker 'dep' is open"
    assert info.value.name == "dep"
    assert isinstance(info.value, BreakerError) and isinstance(info.value, OpskitError)
    manual_clock.advance(4)
    with pytest.raises(CircuitOpenError) as info:
        b.call(counted)
    assert info.value.retry_after == pytest.approx(6.0)


def test_successes_keep_it_closed_and_old_outcomes_leave_a_count_window(
    manual_clock: ManualClock,
) -> None:
    b = make(manual_clock, window=CountWindow(4), minimum_calls=4, failure_rate=0.75)
    fail_n(b, 2)
    for _ in range(10):
        b.call(ok)
    assert b.snapshot().failures == 0  # both failures fell out of the last 4
    fail_n(b, 2)
    assert b.state is State.CLOSED  # 2 of 4 < 0.75
    fail_n(b, 1)
    assert b.state is State.OPEN


def test_a_success_that_reaches_the_minimum_can_trip_it(manual_clock: ManualClock) -> None:
    b = make(manual_clock, minimum_calls=4, failure_rate=0.7)
    fail_n(b, 3)
    assert b.state is State.CLOSED
    b.call(ok)  # 3 of 4 = 0.75 >= 0.7, reached by a success
    assert b.state is State.OPEN


def test_time_window_forgets_failures_older_than_the_window(manual_clock: ManualClock) -> None:
    b = make(manual_clock, window=TimeWindow(10), minimum_calls=3, failure_rate=0.5)
    fail_n(b, 2)
    manual_clock.advance(11)
    b.call(ok)
    b.call(ok)
    snap = b.snapshot()
    assert (snap.calls, snap.failures) == (2, 0)
    assert b.state is State.CLOSED
    fail_n(b, 2)
    assert b.state is State.OPEN


def test_consecutive_failures_rule(manual_clock: ManualClock) -> None:
    b = make(manual_clock, minimum_calls=100, window=CountWindow(100), consecutive_failures=3)
    fail_n(b, 2)
    b.call(ok)  # resets the streak
    fail_n(b, 2)
    assert b.state is State.CLOSED
    fail_n(b, 1)
    assert b.state is State.OPEN


def test_slow_calls_trip_it(manual_clock: ManualClock) -> None:
    b = make(manual_clock, slow_call_duration=1.0, slow_call_rate=0.5, failure_rate=1.0)

    def slow() -> str:
        manual_clock.advance(2)
        return "late"

    b.call(ok)
    b.call(ok)
    assert b.call(slow) == "late"
    assert b.snapshot().slow_calls == 1
    b.call(slow)
    assert b.state is State.OPEN


def test_half_open_probe_success_closes_and_clears_the_window(manual_clock: ManualClock) -> None:
    b = make(manual_clock, half_open_calls=2)
    fail_n(b, 4)
    manual_clock.advance(10)
    assert b.call(ok) == "ok"
    assert b.state is State.HALF_OPEN
    assert b.call(ok) == "ok"
    assert b.state is State.CLOSED
    snap = b.snapshot()
    assert (snap.calls, snap.failures, snap.times_opened) == (0, 0, 0)


def test_probe_failure_reopens_with_break_duration_backoff(manual_clock: ManualClock) -> None:
    durations: list[int] = []

    def open_for(n: int) -> float:
        durations.append(n)
        return 10.0 * 2 ** (n - 1)

    b = make(manual_clock, open_for=open_for)
    fail_n(b, 4)
    assert b.snapshot().retry_after == 10
    manual_clock.advance(10)
    fail_n(b, 1)  # the probe fails
    assert b.state is State.OPEN
    assert b.snapshot().retry_after == 20
    manual_clock.advance(20)
    fail_n(b, 1)
    assert b.snapshot().retry_after == 40
    manual_clock.advance(40)
    b.call(ok)
    assert b.state is State.CLOSED
    fail_n(b, 4)
    assert b.snapshot().retry_after == 10  # closing reset the backoff
    assert durations == [1, 2, 3, 1]


def test_half_open_admits_only_the_permitted_probes(manual_clock: ManualClock) -> None:
    b = make(manual_clock, half_open_calls=1)
    fail_n(b, 4)
    manual_clock.advance(10)
    inside = []

    def probe() -> None:
        inside.append(1)
        with pytest.raises(CircuitOpenError):
            b.call(ok)  # a second caller while the probe runs is rejected

    b.call(probe)
    assert inside == [1]
    assert b.state is State.CLOSED


def test_ignored_errors_and_non_recorded_errors(manual_clock: ManualClock) -> None:
    b = make(manual_clock, record=(ConnectionError,), ignore=(TimeoutError,))
    for exc in (TimeoutError(), TimeoutError(), ValueError(), ValueError()):

        def raise_it(e: BaseException = exc) -> None:
            raise e

        with pytest.raises(type(exc)):
            b.call(raise_it)
    snap = b.snapshot()
    assert snap.calls == 2 and snap.failures == 0  # ValueError counts as success, Timeout ignored


def test_failure_if_result(manual_clock: ManualClock) -> None:
    b = make(manual_clock, failure_if=lambda r: r["status"] >= 500)
    for _ in range(4):
        assert b.call(lambda: {"status": 503}) == {"status": 503}
    assert b.state is State.OPEN


def test_force_open_disable_reset(manual_clock: ManualClock) -> None:
    b = make(manual_clock)
    b.force_open()
    assert b.state is State.FORCED_OPEN
    manual_clock.advance(10_000)
    with pytest.raises(CircuitOpenError) as info:
        b.call(ok)
    assert info.value.retry_after is None
    b.disable()
    fail_n(b, 50)
    assert b.state is State.DISABLED
    assert b.snapshot().calls == 0  # records nothing
    b.reset()
    assert b.state is State.CLOSED
    fail_n(b, 4)
    assert b.state is State.OPEN
    b.reset()
    assert b.call(ok) == "ok"


def test_state_change_callbacks_and_logs(manual_clock: ManualClock) -> None:
    seen: list[tuple[str, State, State]] = []

    def bad(name: str, old: State, new: State) -> None:
        raise RuntimeError("listener bug")

    b = make(manual_clock, on_state_change=[lambda *a: seen.append(a), bad])
    with structlog.testing.capture_logs() as logs:
        fail_n(b, 4)
        manual_clock.advance(10)
        b.call(ok)
    assert seen == [
        ("dep", State.CLOSED, State.OPEN),
        ("dep", State.OPEN, State.HALF_OPEN),
        ("dep", State.HALF_OPEN, State.CLOSED),
    ]
    events = [e["event"] for e in logs if e["event"].startswith("breaker.")]
    assert events == [
        "breaker.opened", "breaker.listener_failed", "breaker.half_opened",
        "breaker.listener_failed", "breaker.closed", "breaker.listener_failed",
    ]  # fmt: skip
    opened = next(e for e in logs if e["event"] == "breaker.opened")
    assert opened["log_level"] == "warning"
    assert opened["failure_rate"] == 1.0 and opened["calls"] == 4


def test_wall_clock_is_never_read(manual_clock: ManualClock) -> None:
    class NoWallClock(ManualClock):
        def time(self) -> float:
            raise AssertionError("the breaker read the wall clock")

    b = CircuitBreaker("w", clock=NoWallClock(), minimum_calls=2, window=TimeWindow(5),
                       open_for=1, registry=CollectorRegistry())  # fmt: skip
    fail_n(b, 2)
    assert b.state is State.OPEN
    b.clock.advance(1)  # type: ignore[attr-defined]
    b.call(ok)
    assert b.state is State.CLOSED


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"failure_rate": 0}, "failure_rate"),
        ({"failure_rate": 1.5}, "failure_rate"),
        ({"minimum_calls": 0}, "minimum_calls"),
        ({"minimum_calls": 200, "window": CountWindow(100)}, "minimum_calls"),
        ({"consecutive_failures": 0}, "consecutive_failures"),
        ({"slow_call_duration": -1}, "slow_call_duration"),
        ({"slow_call_rate": 0.5}, "slow_call_rate"),
        ({"slow_call_rate": 2, "slow_call_duration": 1}, "slow_call_rate"),
        ({"open_for": 0}, "open_for"),
        ({"half_open_calls": 0}, "half_open_calls"),
        ({"probe_timeout": 0}, "probe_timeout"),
        ({"record": "x"}, "record"),
        ({"ignore": [ValueError]}, "ignore"),
        ({"window": 5}, "window"),
        ({"failure_if": 3}, "failure_if"),
    ],
)
def test_invalid_configuration_names_the_parameter(kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(ValueError, match=param):
        CircuitBreaker("x", registry=CollectorRegistry(), **kwargs)


@pytest.mark.parametrize(
    ("factory", "param"),
    [(lambda: CountWindow(0), "size"), (lambda: TimeWindow(0), "seconds"),
     (lambda: TimeWindow(10, buckets=0), "buckets")],
)  # fmt: skip
def test_invalid_windows(factory: Any, param: str) -> None:
    with pytest.raises(ValueError, match=param):
        factory()


def test_decorator_keeps_signature_and_fallback(manual_clock: ManualClock) -> None:
    b = make(manual_clock)

    @b
    def charge(amount: int, currency: str = "eur") -> str:
        """Charge."""
        if amount < 0:
            raise ConnectionError("down")
        return f"{amount}{currency}"

    @b(fallback=lambda amount, currency="eur": "queued")
    def charge2(amount: int, currency: str = "eur") -> str:
        return charge(amount, currency)

    assert charge.__name__ == "charge" and charge.__doc__ == "Charge."
    assert str(inspect.signature(charge)) == "(amount: 'int', currency: 'str' = 'eur') -> 'str'"
    assert charge(5) == "5eur"
    for _ in range(3):  # with the success: 3 of 4 fail
        with pytest.raises(ConnectionError):
            charge(-1)
    with pytest.raises(CircuitOpenError):
        charge(1)
    assert charge2(1) == "queued"


async def test_async_decorator_call_async_context_managers(manual_clock: ManualClock) -> None:
    b = make(manual_clock)

    @b
    async def fetch(x: int) -> int:
        if x < 0:
            raise ConnectionError
        return x

    async def afallback(x: int) -> int:
        return -100

    guarded = b(fallback=afallback)(fetch)
    assert inspect.iscoroutinefunction(fetch)
    assert await fetch(3) == 3
    assert await b.call_async(fetch, 4) == 4
    async with b:
        pass
    with b:
        pass
    # 5 successes so far (call_async of the decorated fetch counts twice): 5 failures open it.
    for _ in range(5):
        with pytest.raises(ConnectionError):
            async with b:
                raise ConnectionError
    assert b.state is State.OPEN
    with pytest.raises(CircuitOpenError):
        await fetch(1)
    with pytest.raises(CircuitOpenError), b:
        pass
    assert await guarded(1) == -100


def test_nested_context_managers_track_their_own_calls(manual_clock: ManualClock) -> None:
    a = make(manual_clock)
    c = CircuitBreaker("other", clock=manual_clock, registry=CollectorRegistry(),
                       minimum_calls=1, window=CountWindow(1))  # fmt: skip
    with pytest.raises(ConnectionError), a, c:
        raise ConnectionError
    assert c.state is State.OPEN
    assert a.snapshot().failures == 1


def test_metrics_are_read_at_scrape_time() -> None:
    reg = CollectorRegistry()
    clock = ManualClock()
    b = CircuitBreaker("pay", clock=clock, registry=reg, minimum_calls=2, window=CountWindow(2))
    b.call(ok)
    fail_n(b, 1)
    with pytest.raises(CircuitOpenError):
        b.call(ok)

    def v(name: str, **labels: str) -> float | None:
        return reg.get_sample_value(name, {"name": "pay", **labels})

    assert v("opskit_breaker_calls_total", outcome="success") == 1
    assert v("opskit_breaker_calls_total", outcome="failure") == 1
    assert v("opskit_breaker_calls_total", outcome="rejected") == 1
    assert v("opskit_breaker_state", state="open") == 1
    assert v("opskit_breaker_state", state="closed") == 0
    assert v("opskit_breaker_transitions_total", from_state="closed", to_state="open") == 1
    CircuitBreaker("pay2", registry=reg)  # same metric names: no duplicate error
    b.close()
    assert v("opskit_breaker_state", state="open") is None
    assert "pay" in repr(b)


def test_successes_counted_lazily_are_all_reported(manual_clock: ManualClock) -> None:
    reg = CollectorRegistry()
    b = CircuitBreaker("lazy", clock=manual_clock, registry=reg, minimum_calls=5,
                       window=CountWindow(10))  # fmt: skip
    wrapped = b(ok)
    for _ in range(1000):
        wrapped()
    assert reg.get_sample_value(
        "opskit_breaker_calls_total", {"name": "lazy", "outcome": "success"}) == 1000  # fmt: skip
    fail_n(b, 4)
    snap = b.snapshot()
    assert (snap.calls, snap.failures) == (10, 4)
    fail_n(b, 1)
    assert b.state is State.OPEN  # 5 of the last 10


# -- half-open concurrency and permit leaks ---------------------------------------------


def _open_then_wait(clock: ManualClock, **kw: Any) -> CircuitBreaker:
    b = make(clock, **kw)
    fail_n(b, 4)
    clock.advance(10)
    return b


def _thread_round(half_open_calls: int) -> tuple[int, int, State]:
    clock = ManualClock()
    b = _open_then_wait(clock, half_open_calls=half_open_calls)
    barrier = threading.Barrier(64)
    release = threading.Event()
    lock = threading.Lock()
    counts = {"entered": 0, "rejected": 0}

    def probe() -> None:
        with lock:
            counts["entered"] += 1
        release.wait(10)

    def worker() -> None:
        barrier.wait()
        try:
            b.call(probe)
        except CircuitOpenError:
            with lock:
                counts["rejected"] += 1

    threads = [threading.Thread(target=worker) for _ in range(64)]
    for t in threads:
        t.start()
    deadline = threading.Event()
    for _ in range(10_000):  # until every thread entered or was rejected (bounded)
        if counts["entered"] + counts["rejected"] >= 64:
            break
        deadline.wait(0.001)
    release.set()
    for t in threads:
        t.join(10)
    return counts["entered"], counts["rejected"], b.state


@pytest.mark.parametrize("half_open_calls", [1, 3])
def test_64_threads_in_half_open_admit_exactly_the_permits(half_open_calls: int) -> None:
    for _round in range(10):
        entered, rejected, state = _thread_round(half_open_calls)
        assert entered == half_open_calls
        assert rejected == 64 - half_open_calls
        assert state is State.CLOSED


async def _task_round(half_open_calls: int) -> tuple[int, list[str], State]:
    b = _open_then_wait(ManualClock(), half_open_calls=half_open_calls)
    gate = asyncio.Event()
    entered = 0

    async def probe() -> None:
        nonlocal entered
        entered += 1
        await gate.wait()

    async def worker() -> str:
        try:
            await b.call_async(probe)
        except CircuitOpenError:
            return "rejected"
        return "ran"

    tasks = [asyncio.ensure_future(worker()) for _ in range(64)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks)
    return entered, results, b.state


async def test_64_tasks_in_half_open_admit_exactly_the_permits() -> None:
    for half_open_calls in (1, 2, 5):
        for _round in range(10):
            entered, results, state = await _task_round(half_open_calls)
            assert entered == half_open_calls
            assert results.count("ran") == half_open_calls
            assert state is State.CLOSED


async def test_a_cancelled_probe_frees_its_permit(manual_clock: ManualClock) -> None:
    b = _open_then_wait(manual_clock)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.ensure_future(b.call_async(hang))
    await started.wait()
    with pytest.raises(CircuitOpenError):
        await b.call_async(asyncio.sleep, 0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert b.state is State.HALF_OPEN
    await b.call_async(asyncio.sleep, 0)  # the permit came back: this probe runs
    assert b.state is State.CLOSED


def test_an_ignored_exception_frees_the_permit_without_deciding(
    manual_clock: ManualClock,
) -> None:
    b = _open_then_wait(manual_clock, ignore=(KeyError,))

    def lookup() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        b.call(lookup)
    assert b.state is State.HALF_OPEN
    assert b.snapshot().half_open_in_flight == 0
    b.call(ok)
    assert b.state is State.CLOSED


def test_a_recorded_exception_reopens_and_frees_the_permit(manual_clock: ManualClock) -> None:
    b = _open_then_wait(manual_clock)
    fail_n(b, 1)
    assert b.state is State.OPEN
    assert b.snapshot().half_open_in_flight == 0


def test_probe_timeout_reclaims_a_permit_that_never_reports(manual_clock: ManualClock) -> None:
    b = _open_then_wait(manual_clock, probe_timeout=5.0)
    b._admit()  # a probe that never reports (its process hung)
    with pytest.raises(CircuitOpenError) as info:
        b.call(ok)
    assert info.value.retry_after == pytest.approx(5.0)
    manual_clock.advance(5)
    assert b.call(ok) == "ok"
    assert b.state is State.CLOSED
    # Without probe_timeout, the same leak would wedge half-open.
    wedged = _open_then_wait(ManualClock())
    wedged._admit()
    wedged.clock.advance(10_000)  # type: ignore[attr-defined]
    with pytest.raises(CircuitOpenError):
        wedged.call(ok)


def test_lazily_counted_successes_break_the_failure_streak(manual_clock: ManualClock) -> None:
    # Found by the model test: a success counted on the fast path must still reset the
    # consecutive-failures streak.
    b = make(manual_clock, window=CountWindow(3), minimum_calls=1, failure_rate=0.75,
             consecutive_failures=3)  # fmt: skip
    wrapped = b(ok)
    wrapped()
    fail_n(b, 2)
    wrapped()
    fail_n(b, 1)
    assert b.state is State.CLOSED
    assert b.snapshot().consecutive_failures == 1
