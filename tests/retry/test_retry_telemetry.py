"""A broken log sink never changes what a retry policy does."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from _telemetry import SINKS, broken_logging, log_errors
from opskit.retry import Retry
from opskit.testing import ManualClock


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("upstream down")
        return "ok"


def policy(clock: ManualClock) -> Retry:
    return Retry("t", on=ConnectionError, attempts=3, clock=clock, registry=CollectorRegistry())


@pytest.mark.parametrize("sink", SINKS)
def test_retries_go_on_when_the_log_sink_is_broken(sink: str, manual_clock: ManualClock) -> None:
    flaky = Flaky(2)
    before = log_errors()
    with broken_logging(sink):
        assert policy(manual_clock).call(flaky) == "ok"
    assert flaky.calls == 3
    assert log_errors() >= before + 2  # each retry.scheduled failed, and was counted


@pytest.mark.parametrize("sink", SINKS)
def test_exhaustion_raises_the_callers_error_not_the_sinks(
    sink: str, manual_clock: ManualClock
) -> None:
    flaky = Flaky(5)
    with broken_logging(sink), pytest.raises(ConnectionError, match="upstream down"):
        policy(manual_clock).call(flaky)
    assert flaky.calls == 3


@pytest.mark.parametrize("sink", SINKS)
async def test_async_retries_go_on_when_the_log_sink_is_broken(
    sink: str, manual_clock: ManualClock
) -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise ConnectionError("upstream down")
        return "ok"

    with broken_logging(sink):
        assert await policy(manual_clock).call_async(flaky) == "ok"
    assert calls == 3
