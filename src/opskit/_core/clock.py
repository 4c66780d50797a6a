"""Injected time.

Every decision in opskit takes its time from a :class:`Clock`. Production code
uses :data:`MONOTONIC` (``time.monotonic`` for durations, ``time.time`` for
wall-clock stamps such as webhook timestamps); tests use :class:`ManualClock`,
whose sleeps return at once and only move the clock.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["MONOTONIC", "Clock", "ManualClock", "MonotonicClock", "resolve_clock"]


@runtime_checkable
class Clock(Protocol):
    """What opskit needs from time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; for durations and deadlines."""
        ...

    def time(self) -> float:
        """Seconds since the Unix epoch; only for stamps exchanged with others."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        ...

    async def asleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds``."""
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic``, ``time.time``, ``time.sleep``, ``asyncio.sleep``."""

    __slots__ = ()

    # Bound as staticmethods so a call costs what the builtin costs.
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))

    def __repr__(self) -> str:
        return "MonotonicClock()"


MONOTONIC = MonotonicClock()


class ManualClock:
    """A clock that moves only when told to, for tests.

    ``advance(s)`` moves it by hand. ``sleep(s)`` and ``await asleep(s)`` return at
    once, advance the clock by ``s`` and append ``s`` to :attr:`sleeps`, so a test
    can assert every wait without waiting. ``time()`` is ``wall_start`` plus the
    same elapsed seconds as ``monotonic()``.
    """

    def __init__(self, start: float = 0.0, *, wall_start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._wall_offset = float(wall_start) - float(start)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (negative values are refused)."""
        if seconds < 0:
            raise ValueError("a clock cannot go back; advance() takes seconds >= 0")
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        seconds = max(float(seconds), 0.0)
        with self._lock:
            self.sleeps.append(seconds)
            self._now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)
        # Still yield to the loop once, as a real sleep would.
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now!r})"


def resolve_clock(clock: Clock | None) -> Clock:
    """``clock`` or the real monotonic clock."""
    return MONOTONIC if clock is None else clock
