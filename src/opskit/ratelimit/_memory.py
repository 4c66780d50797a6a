from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from opskit.ratelimit._algo import Decision, State, decide
from opskit.ratelimit._rate import Rate

_FIRST_SWEEP = 1024


class Table(dict[str, Any]):
    """One limiter's keys in one layout.

    ``"generic/<algorithm>"`` entries are ``(expires, [state per rate])``. The one-rate fast
    paths keep the theoretical arrival time (``"gcra"``: a float, stale once in
    the past), or the count in the window ending at ``end`` (``"fixed_window/<per>"``:
    the table is emptied when its window ends), or that and the previous window's
    counts (``"sliding_window/<per>"``).
    """

    # Slots: a fast path reads these on every hit (a slot read is cheaper than
    # an instance-dict one).
    __slots__ = ("end", "prev", "start", "sweep_at", "window")

    def __init__(self) -> None:
        super().__init__()
        self.sweep_at = _FIRST_SWEEP
        self.end = float("-inf")  # window layouts: when the current window ends
        self.window = -1  # "sliding_window/<per>": the current window's index and start
        self.start = float("-inf")
        # "sliding_window/<per>": the previous window's counts
        self.prev: dict[str, int] = {}


class MemoryStore:
    """In-process state (the default). One lock makes check-and-update atomic.

    Keys not seen for longer than their longest period are swept out when a
    limiter's table has doubled since the last sweep, so a scan over many IPs
    or users does not grow memory for ever (and a steady key set costs nothing).
    """

    def __init__(self) -> None:
        self._tables: dict[tuple[str, str], Table] = {}
        self._slots: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    is_async = False

    def table(self, name: str, layout: str = "generic/gcra") -> Table:
        """The limiter ``name``'s keys in ``layout`` (created on first use)."""
        table = self._tables.get((name, layout))
        if table is None:
            table = self._tables.setdefault((name, layout), Table())
        return table

    def hit(self, name: str, key: str, algorithm: str, rates: Sequence[Rate], cost: int,
            now: float, ttl: float, *, commit: bool = True) -> Decision:  # fmt: skip
        table = self.table(name, f"generic/{algorithm}")
        with self._lock:
            entry = table.get(key)
            states: list[State | None] = entry[1] if entry is not None else [None] * len(rates)
            decision, new_states = decide(algorithm, rates, states, now, cost)
            if commit and decision.allowed:
                table[key] = (now + ttl, new_states)
                if entry is None and len(table) > table.sweep_at:
                    sweep(table, now)
        return decision

    def reset(self, name: str, key: str) -> None:
        with self._lock:
            for (table_name, _), table in self._tables.items():
                if table_name == name:
                    table.pop(key, None)
                    if table.prev:
                        table.prev.pop(key, None)
            self._slots.pop(f"{name}:{key}", None)

    # -- concurrency slots -----------------------------------------------------------

    def acquire_slot(self, name: str, key: str, slot: str, limit: int, lease: float,
                     now: float) -> bool:  # fmt: skip
        key = f"{name}:{key}"
        with self._lock:
            slots = self._slots.setdefault(key, {})
            for s in [s for s, expires in slots.items() if expires <= now]:
                del slots[s]
            if len(slots) >= limit:
                return False
            slots[slot] = now + lease
            return True

    def release_slot(self, name: str, key: str, slot: str) -> None:
        key = f"{name}:{key}"
        with self._lock:
            slots = self._slots.get(key)
            if slots is not None:
                slots.pop(slot, None)
                if not slots:
                    del self._slots[key]

    def in_flight(self, name: str, key: str, now: float) -> int:
        key = f"{name}:{key}"
        with self._lock:
            return sum(1 for e in self._slots.get(key, {}).values() if e > now)

    def __len__(self) -> int:
        return sum(len(t) for t in self._tables.values())


def sweep(table: Table, now: float) -> None:
    """Drop expired keys; sweep again when the table has doubled (call under the lock)."""
    stale = [k for k, e in table.items() if (e[0] if e.__class__ is tuple else e) <= now]
    for k in stale:
        del table[k]
    table.sweep_at = max(_FIRST_SWEEP, 2 * len(table))
