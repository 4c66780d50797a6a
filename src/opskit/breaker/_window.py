"""Sliding windows of call outcomes: the last N calls, or the last T seconds.

Both keep running totals so a snapshot is O(1). Updates on the call path are
plain int operations without a lock; the totals are recomputed from the ring
once per lap (count window) or per bucket rotation (time window), so a lost
update under thread contention can skew them for at most one lap, never drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["CountWindow", "TimeWindow"]

PRESENT, FAILURE, SLOW = 1, 2, 4


@dataclass(frozen=True)
class CountWindow:
    """The last ``size`` calls."""

    size: int = 100

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"CountWindow size must be an int >= 1, not {self.size!r}")

    def build(self) -> _CountRing:
        return _CountRing(self.size)

    @property
    def timed(self) -> bool:
        return False


@dataclass(frozen=True)
class TimeWindow:
    """The calls of the last ``seconds``, in ``buckets`` (default: 1-second buckets, at most 60)."""

    seconds: float = 60.0
    buckets: int | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.seconds, (int, float)) and self.seconds > 0) or not math.isfinite(
            self.seconds
        ):
            raise ValueError(f"TimeWindow seconds must be > 0, not {self.seconds!r}")
        if self.buckets is not None and (
            isinstance(self.buckets, bool) or not isinstance(self.buckets, int) or self.buckets < 1
        ):
            raise ValueError(f"TimeWindow buckets must be an int >= 1, not {self.buckets!r}")

    def build(self) -> _TimeRing:
        n = self.buckets or min(60, max(1, math.ceil(self.seconds)))
        return _TimeRing(float(self.seconds), n)

    @property
    def timed(self) -> bool:
        return True


class _CountRing:
    __slots__ = ("calls", "failures", "pos", "ring", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self.ring = bytearray(size)
        self.pos = 0
        self.calls = self.failures = self.slow = 0

    def add(self, failure: bool, slow: bool, now: float) -> None:
        i = self.pos
        old = self.ring[i]
        code = PRESENT | (FAILURE if failure else 0) | (SLOW if slow else 0)
        self.ring[i] = code
        if old:
            self.calls -= 1
            if old & FAILURE:
                self.failures -= 1
            if old & SLOW:
                self.slow -= 1
        self.calls += 1
        if failure:
            self.failures += 1
        if slow:
            self.slow += 1
        i += 1
        if i >= self.size:
            i = 0
            self._resum()
        self.pos = i

    def add_ok(self, now: float) -> None:
        """A fast success: replacing a success changes no total."""
        i = self.pos
        old = self.ring[i]
        if old != PRESENT:
            self.ring[i] = PRESENT
            if old:
                if old & FAILURE:
                    self.failures -= 1
                if old & SLOW:
                    self.slow -= 1
            else:
                self.calls += 1
        i += 1
        if i >= self.size:
            i = 0
            self._resum()
        self.pos = i

    def fold_ok(self, k: int) -> None:
        """``k`` successes at once (O(min(k, size)))."""
        if k >= self.size:
            self.ring = bytearray([PRESENT]) * self.size
            self.calls, self.failures, self.slow = self.size, 0, 0
            self.pos = (self.pos + k) % self.size
            return
        for _ in range(k):
            self.add_ok(0.0)

    def _resum(self) -> None:
        ring = self.ring
        self.calls = sum(1 for c in ring if c)
        self.failures = sum(1 for c in ring if c & FAILURE)
        self.slow = sum(1 for c in ring if c & SLOW)

    def totals(self, now: float) -> tuple[int, int, int]:
        return self.calls, self.failures, self.slow

    def clear(self) -> None:
        self.ring = bytearray(self.size)
        self.pos = 0
        self.calls = self.failures = self.slow = 0


class _TimeRing:
    __slots__ = ("b_calls", "b_failures", "b_slow", "calls", "current", "epochs", "failures",
                 "n", "slow", "width")  # fmt: skip

    def __init__(self, seconds: float, buckets: int) -> None:
        self.n = buckets
        self.width = seconds / buckets
        self.clear()

    def clear(self) -> None:
        n = self.n
        self.epochs = [-1] * n
        self.b_calls = [0] * n
        self.b_failures = [0] * n
        self.b_slow = [0] * n
        self.current = -1
        self.calls = self.failures = self.slow = 0

    def _rotate(self, epoch: int) -> None:
        n = self.n
        oldest_live = epoch - n + 1
        for i in range(n):
            if self.epochs[i] < oldest_live:
                self.epochs[i] = -1
                self.b_calls[i] = self.b_failures[i] = self.b_slow[i] = 0
        i = epoch % n
        if self.epochs[i] != epoch:
            self.epochs[i] = epoch
            self.b_calls[i] = self.b_failures[i] = self.b_slow[i] = 0
        self.current = epoch
        self.calls = sum(self.b_calls)
        self.failures = sum(self.b_failures)
        self.slow = sum(self.b_slow)

    def add(self, failure: bool, slow: bool, now: float) -> None:
        epoch = int(now / self.width)
        if epoch != self.current:
            if epoch < self.current:  # a clock that went back: count it in the current bucket
                epoch = self.current
            else:
                self._rotate(epoch)
        i = epoch % self.n
        self.b_calls[i] += 1
        self.calls += 1
        if failure:
            self.b_failures[i] += 1
            self.failures += 1
        if slow:
            self.b_slow[i] += 1
            self.slow += 1

    def fold_ok(self, k: int) -> None:
        """``k`` successes counted during the current bucket."""
        if self.current >= 0:
            self.b_calls[self.current % self.n] += k
            self.calls += k

    def add_ok(self, now: float) -> None:
        epoch = int(now / self.width)
        if epoch > self.current:
            self._rotate(epoch)
        else:
            epoch = self.current
        self.b_calls[epoch % self.n] += 1
        self.calls += 1

    def totals(self, now: float) -> tuple[int, int, int]:
        epoch = int(now / self.width)
        if epoch > self.current:
            self._rotate(epoch)
        return self.calls, self.failures, self.slow
