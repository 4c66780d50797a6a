"""The breaker against a small reference model of the state machine (hypothesis stateful)."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from prometheus_client import CollectorRegistry

from opskit.breaker import CircuitBreaker, CircuitOpenError, CountWindow, State, TimeWindow
from opskit.testing import ManualClock


class Model:
    """The breaker's documented behaviour, written as plainly as possible."""

    def __init__(self, *, window: Any, minimum: int, rate: float, consecutive: int | None,
                 half_open_calls: int) -> None:  # fmt: skip
        self.window = window
        self.minimum = minimum
        self.rate = rate
        self.consecutive = consecutive
        self.half_open_calls = half_open_calls
        self.state = State.CLOSED
        self.outcomes: list[tuple[int, bool]] = []  # (index or time bucket, failure)
        self.streak = 0
        self.times_opened = 0
        self.open_until = 0.0
        self.probes_ok = 0
        self.count = 0

    def _live(self, now: float) -> list[bool]:
        if isinstance(self.window, CountWindow):
            return [f for _, f in self.outcomes[-self.window.size :]]
        n = self.window.buckets
        width = self.window.seconds / n
        current = int(now / width)
        return [f for e, f in self.outcomes if e > current - n]

    def _open(self, now: float) -> None:
        self.times_opened += 1
        self.open_until = now + 10.0 * self.times_opened
        self._clear(State.OPEN)

    def _clear(self, state: State) -> None:
        self.state = state
        self.outcomes = []
        self.streak = 0
        self.probes_ok = 0

    def call(self, now: float, failure: bool) -> str:
        if self.state is State.OPEN:
            if now < self.open_until:
                return "rejected"
            self._clear(State.HALF_OPEN)
        if self.state is State.HALF_OPEN:
            if failure:
                self._open(now)
            else:
                self.probes_ok += 1
                if self.probes_ok >= self.half_open_calls:
                    self.times_opened = 0
                    self._clear(State.CLOSED)
            return "called"
        if isinstance(self.window, CountWindow):
            key = self.count
        else:
            key = int(now / (self.window.seconds / self.window.buckets))
        self.count += 1
        self.outcomes.append((key, failure))
        self.streak = self.streak + 1 if failure else 0
        live = self._live(now)
        if (self.consecutive is not None and self.streak >= self.consecutive) or (
            len(live) >= self.minimum and sum(live) >= self.rate * len(live)
        ):
            self._open(now)
        return "called"


class BreakerMachine(RuleBasedStateMachine):
    @initialize(
        kind=st.sampled_from(["count", "time"]),
        size=st.integers(2, 12),
        minimum=st.integers(1, 12),
        rate=st.sampled_from([0.25, 0.5, 0.75, 1.0]),
        consecutive=st.one_of(st.none(), st.integers(1, 5)),
        half_open_calls=st.integers(1, 3),
        buckets=st.integers(1, 6),
    )
    def setup(self, kind: str, size: int, minimum: int, rate: float, consecutive: int | None,
              half_open_calls: int, buckets: int) -> None:  # fmt: skip
        window: Any = (
            CountWindow(size) if kind == "count" else TimeWindow(float(size), buckets=buckets)
        )
        if kind == "count":
            minimum = min(minimum, size)
        self.clock = ManualClock()
        self.breaker = CircuitBreaker(
            "model", window=window, minimum_calls=minimum, failure_rate=rate,
            consecutive_failures=consecutive, half_open_calls=half_open_calls,
            open_for=lambda n: 10.0 * n, clock=self.clock, registry=CollectorRegistry(),
        )  # fmt: skip
        self.model = Model(window=window if kind == "count" else TimeWindow(float(size), buckets),
                           minimum=minimum, rate=rate, consecutive=consecutive,
                           half_open_calls=half_open_calls)  # fmt: skip

    def _call(self, failure: bool) -> None:
        called = []

        def fn() -> None:
            called.append(1)
            if failure:
                raise ConnectionError

        try:
            self.breaker.call(fn)
            got = "called"
        except ConnectionError:
            got = "called"
        except CircuitOpenError:
            got = "rejected"
        expected = self.model.call(self.clock.monotonic(), failure)
        assert got == expected
        assert bool(called) == (expected == "called")

    @rule()
    def succeed(self) -> None:
        self._call(False)

    @rule()
    def fail(self) -> None:
        self._call(True)

    @rule(dt=st.sampled_from([0.5, 1.0, 2.5, 5.0, 10.0, 30.0]))
    def wait(self, dt: float) -> None:
        self.clock.advance(dt)

    @invariant()
    def same_state(self) -> None:
        if hasattr(self, "breaker"):
            assert self.breaker.state is self.model.state


BreakerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestBreakerModel = BreakerMachine.TestCase
