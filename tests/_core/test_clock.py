from __future__ import annotations

import asyncio
import time

import pytest

from opskit._core.clock import MONOTONIC, Clock, ManualClock, resolve_clock
from opskit.testing import ManualClock as PublicManualClock


def test_manual_clock_is_reexported_from_opskit_testing() -> None:
    assert PublicManualClock is ManualClock


def test_both_clocks_satisfy_the_protocol() -> None:
    assert isinstance(MONOTONIC, Clock)
    assert isinstance(ManualClock(), Clock)
    assert resolve_clock(None) is MONOTONIC
    c = ManualClock()
    assert resolve_clock(c) is c


def test_manual_clock_moves_only_when_told() -> None:
    c = ManualClock(start=5.0)
    assert c.monotonic() == 5.0
    c.advance(2.5)
    assert c.monotonic() == 7.5
    assert c.time() - c.monotonic() == pytest.approx(1_700_000_000.0 - 5.0)
    with pytest.raises(ValueError, match="cannot go back"):
        c.advance(-1)


def test_manual_sleep_records_and_advances_without_waiting() -> None:
    c = ManualClock()
    started = time.perf_counter()
    c.sleep(3600)
    c.sleep(-1)  # a negative wait is a zero wait
    assert time.perf_counter() - started < 1.0
    assert c.sleeps == [3600.0, 0.0]
    assert c.monotonic() == 3600.0


async def test_manual_asleep_records_and_advances() -> None:
    c = ManualClock()
    await c.asleep(1.5)
    await asyncio.gather(c.asleep(1), c.asleep(2))
    assert sorted(c.sleeps) == [1.0, 1.5, 2.0]
    assert c.monotonic() == 4.5


def test_real_clock_is_monotonic_and_sleeps() -> None:
    a = MONOTONIC.monotonic()
    MONOTONIC.sleep(0.001)
    MONOTONIC.sleep(-5)  # ignored, no error
    assert MONOTONIC.monotonic() > a
    assert abs(MONOTONIC.time() - time.time()) < 5


async def test_real_clock_asleep() -> None:
    a = MONOTONIC.monotonic()
    await MONOTONIC.asleep(0.001)
    assert MONOTONIC.monotonic() > a
