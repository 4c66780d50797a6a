from __future__ import annotations

import math
import threading

from opskit._core.clock import Clock, resolve_clock

_SLOTS = 10


class RetryBudget:
    """A retry budget shared by the calls that use it (Finagle semantics).

    Each call deposits ``ratio`` of a retry; each retry withdraws one. On top,
    ``min_per_second`` retries per second are always allowed (a reserve of
    ``min_per_second * ttl``), so low traffic can still retry. Deposits and
    withdrawals expire after ``ttl`` seconds. When a retry finds the budget
    empty, the policy stops and re-raises at once: a failing dependency sees at
    most ``ratio`` extra load, not ``attempts``-fold.

    Deposits are plain integer adds on the call path (no lock); a withdrawal
    takes a lock. Counting is in 1/``ratio`` units, kept in ``_SLOTS`` time
    buckets over ``ttl``.
    """

    def __init__(
        self,
        ratio: float = 0.2,
        min_per_second: float = 10,
        ttl: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(ratio, bool) or not (0 < ratio <= 1000):
            raise ValueError(f"ratio must be > 0, not {ratio!r}")
        if min_per_second < 0:
            raise ValueError(f"min_per_second must be >= 0, not {min_per_second!r}")
        if not (ttl > 0 and math.isfinite(ttl)):
            raise ValueError(f"ttl must be > 0, not {ttl!r}")
        self.ratio = float(ratio)
        self.min_per_second = float(min_per_second)
        self.ttl = float(ttl)
        self._now = resolve_clock(clock).monotonic
        self._width = self.ttl / _SLOTS
        # Units: a deposit is 1, a withdrawal is 1/ratio.
        self._withdraw = 1.0 / self.ratio
        self._reserve = self.min_per_second * self.ttl * self._withdraw
        self._epochs = [-1] * _SLOTS
        self._units = [0.0] * _SLOTS
        self._lock = threading.Lock()

    def _slot(self, now: float) -> int:
        epoch = int(now / self._width)
        slot = epoch % _SLOTS
        if self._epochs[slot] != epoch:
            self._epochs[slot] = epoch
            self._units[slot] = 0.0
        return slot

    def deposit(self) -> None:
        """Record one call (the policy does this for every call it runs)."""
        self._units[self._slot(self._now())] += 1.0

    def _balance(self, now: float) -> float:
        epoch = int(now / self._width)
        live = sum(u for e, u in zip(self._epochs, self._units, strict=True) if epoch - e < _SLOTS)
        return live + self._reserve

    def try_withdraw(self) -> bool:
        """Take one retry if the budget allows it."""
        with self._lock:
            now = self._now()
            if self._balance(now) < self._withdraw:
                return False
            self._units[self._slot(now)] -= self._withdraw
            return True

    def balance(self) -> float:
        """Retries available now."""
        return self._balance(self._now()) / self._withdraw

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio}, min_per_second={self.min_per_second}, ttl={self.ttl})"
        )
