"""A broken log sink never changes what a breaker decides or what its callers see."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from _telemetry import SINKS, broken_logging, log_errors
from opskit.breaker import CircuitBreaker, CircuitOpenError, State
from opskit.testing import ManualClock


def boom() -> None:
    raise ConnectionError("upstream down")


def make(clock: ManualClock, **kw: Any) -> CircuitBreaker:
    kw.setdefault("open_for", 10.0)
    return CircuitBreaker("t", consecutive_failures=2, clock=clock,
                          registry=CollectorRegistry(), **kw)  # fmt: skip


def broken_listener(name: str, old: State, new: State) -> None:
    raise RuntimeError("listener down")


@pytest.mark.parametrize("sink", SINKS)
def test_open_half_open_close_with_a_broken_sink_and_listener(
    sink: str, manual_clock: ManualClock
) -> None:
    b = make(manual_clock, on_state_change=broken_listener)
    before = log_errors()
    with broken_logging(sink):
        for _ in range(2):
            with pytest.raises(ConnectionError):  # the caller's error, not the sink's
                b.call(boom)
        assert b.state is State.OPEN
        with pytest.raises(CircuitOpenError):
            b.call(lambda: "never called")
        manual_clock.advance(10.0)
        assert b.call(lambda: "probe") == "probe"
        assert b.state is State.CLOSED
    # opened, listener_failed, half_opened, listener_failed, closed, listener_failed
    assert log_errors() >= before + 6


@pytest.mark.parametrize("sink", SINKS)
async def test_async_calls_with_a_broken_sink(sink: str, manual_clock: ManualClock) -> None:
    b = make(manual_clock)

    async def aboom() -> None:
        raise ConnectionError("upstream down")

    with broken_logging(sink):
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await b.call_async(aboom)
        assert b.state is State.OPEN
        with pytest.raises(CircuitOpenError):
            await b.call_async(aboom)


@pytest.mark.parametrize("sink", SINKS)
def test_a_broken_open_for_is_logged_through_a_broken_sink(
    sink: str, manual_clock: ManualClock
) -> None:
    def open_for(n: int) -> float:
        raise ZeroDivisionError

    b = make(manual_clock, open_for=open_for)
    with broken_logging(sink):
        for _ in range(2):
            with pytest.raises(ConnectionError):
                b.call(boom)
    assert b.state is State.OPEN
