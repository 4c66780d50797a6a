"""call() and the decorators share one closed fast path (successes counted lazily);
it must decide and count exactly as the plain path (``with breaker:``) does."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from opskit.breaker import CircuitBreaker, CircuitOpenError, CountWindow, TimeWindow
from opskit.testing import ManualClock

OUTCOMES = ("success", "failure", "rejected")

steps = st.lists(
    st.one_of(
        st.sampled_from(["ok", "fail", "snapshot"]),
        st.sampled_from([0.05, 0.3, 0.5, 0.999, 1.0, 1.001, 2.5, 7.0, 30.0]),
    ),
    max_size=120,
)
windows = st.one_of(
    st.builds(CountWindow, st.integers(4, 30)),
    st.builds(TimeWindow, st.sampled_from([1.0, 3.0, 10.0, 60.0]), buckets=st.integers(1, 10)),
)


def run_at_once(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (no store, no sleep) without a loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise AssertionError("the coroutine suspended")


class Driven:
    """One breaker, driven one way, with its own clock and registry."""

    def __init__(self, how: str, window: Any, minimum: int, consecutive: int | None) -> None:
        self.how = how
        self.clock = ManualClock()
        self.registry = CollectorRegistry()
        if isinstance(window, CountWindow):
            minimum = min(minimum, window.size)
        self.b = CircuitBreaker("fast", window=window, minimum_calls=minimum, failure_rate=0.5,
                                consecutive_failures=consecutive, open_for=5.0,
                                clock=self.clock, registry=self.registry)  # fmt: skip

        def dep(fail: bool) -> str:
            if fail:
                raise ConnectionError("down")
            return "ok"

        async def adep(fail: bool) -> str:
            return dep(fail)

        self.dep, self.wrapped, self.awrapped = dep, self.b(dep), self.b(adep)

    def step(self, fail: bool) -> str:
        try:
            if self.how == "call":
                self.b.call(self.dep, fail)
            elif self.how == "decorator":
                self.wrapped(fail)
            elif self.how == "async decorator":
                run_at_once(self.awrapped(fail))
            else:
                with self.b:  # the plain path: admit, then record every outcome
                    self.dep(fail)
        except ConnectionError:
            return "failed"
        except CircuitOpenError:
            return "rejected"
        return "ok"

    def counts(self) -> dict[str, float | None]:
        return {
            o: self.registry.get_sample_value(
                "opskit_breaker_calls_total", {"name": "fast", "outcome": o}
            )
            for o in OUTCOMES
        }


@settings(max_examples=600, deadline=None)
@given(
    window=windows,
    minimum=st.one_of(st.integers(1, 4), st.integers(1, 20)),
    consecutive=st.one_of(st.none(), st.integers(2, 6)),
    script=steps,
)
def test_the_fast_path_decides_and_counts_as_the_plain_path(
    window: Any, minimum: int, consecutive: int | None, script: list[Any]
) -> None:
    ways = [Driven(h, window, minimum, consecutive)
            for h in ("with", "call", "decorator", "async decorator")]  # fmt: skip
    for item in script:
        if isinstance(item, float):
            for d in ways:
                d.clock.advance(item)
            continue
        if item == "snapshot":  # folds lazily counted successes: only now and then
            snapshots = [d.b.snapshot() for d in ways]
            assert all(s == snapshots[0] for s in snapshots), snapshots
            continue
        results = {d.how: d.step(item == "fail") for d in ways}
        assert len(set(results.values())) == 1, results
    snapshots = [d.b.snapshot() for d in ways]
    assert all(s == snapshots[0] for s in snapshots), snapshots
    counts = [d.counts() for d in ways]
    assert all(c == counts[0] for c in counts), counts


def test_a_success_after_its_bucket_ends_is_counted_in_the_next_bucket() -> None:
    for how in ("call", "decorator", "async decorator", "with"):
        d = Driven(how, TimeWindow(3.0, buckets=3), minimum=2, consecutive=None)
        d.step(False)
        d.step(False)  # the minimum is reached in bucket 0: successes are counted lazily now
        d.clock.advance(1.0)
        d.step(False)  # bucket 1: not lazily counted into bucket 0
        d.clock.advance(2.0)  # bucket 3: bucket 0 has left the window, bucket 1 has not
        assert d.b.snapshot().calls == 1, how
