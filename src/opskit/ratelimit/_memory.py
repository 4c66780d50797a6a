from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from opskit.ratelimit._algo import Decision, State, decide
from opskit.ratelimit._rate import Rate

_SWEEP_EVERY = 4096


class MemoryStore:
    """In-process state (the default). One lock makes check-and-update atomic.

    Keys not seen for longer than their longest period are swept out, so a
    scan over many IPs or users does not grow memory for ever.
    """

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}
        self._slots: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()
        self._ops = 0

    is_async = False

    def hit(self, name: str, key: str, algorithm: str, rates: Sequence[Rate], cost: int,
            now: float, ttl: float, *, commit: bool = True) -> Decision:  # fmt: skip
        key = f"{name}:{key}"
        with self._lock:
            entry = self._data.get(key)
            states: list[State | None] = entry[1] if entry is not None else [None] * len(rates)
            decision, new_states = decide(algorithm, rates, states, now, cost)
            if commit and decision.allowed:
                self._data[key] = (now + ttl, new_states)
            self._ops += 1
            if self._ops >= _SWEEP_EVERY:
                self._sweep(now)
        return decision

    def reset(self, name: str, key: str) -> None:
        key = f"{name}:{key}"
        with self._lock:
            self._data.pop(key, None)
            self._slots.pop(key, None)

    def _sweep(self, now: float) -> None:
        self._ops = 0
        stale = [k for k, entry in self._data.items() if entry[0] < now]
        for k in stale:
            del self._data[k]

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
        return len(self._data)
