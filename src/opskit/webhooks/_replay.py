"""Replay stores: remember accepted message ids for their replay window.

``add(key, ttl)`` records ``key`` for ``ttl`` seconds and answers whether it was
new. :class:`MemoryReplayStore` keeps one process's ids; :class:`RedisReplayStore`
shares them across a fleet with one ``SET key 1 NX PX ttl`` per check.
"""

from __future__ import annotations

import heapq
import threading
from typing import Any, Protocol, runtime_checkable

from opskit._core.clock import Clock, resolve_clock
from opskit._core.redis import (
    OnError,
    OutageTracker,
    RedisError,
    is_async_client,
    tagged_key,
    validate_on_error,
)
from opskit.webhooks._errors import ReplayStoreUnavailable

__all__ = ["MemoryReplayStore", "RedisReplayStore", "ReplayStore"]


@runtime_checkable
class ReplayStore(Protocol):
    """Where seen message ids live. ``add`` returns True when ``key`` was new."""

    def add(self, key: str, ttl: float) -> bool: ...

    async def aadd(self, key: str, ttl: float) -> bool: ...


class MemoryReplayStore:
    """Seen ids in this process, each kept ``ttl`` seconds (by the clock's ``monotonic``).

    ``max_entries`` bounds memory; past it the entries closest to expiry are
    dropped first. Only verified messages are ever recorded, so an attacker
    without a secret cannot fill it.
    """

    __slots__ = ("_clock", "_expiry", "_heap", "_lock", "max_entries")

    def __init__(self, *, max_entries: int = 100_000, clock: Clock | None = None) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self._clock = resolve_clock(clock)
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def add(self, key: str, ttl: float) -> bool:
        now = self._clock.monotonic()
        with self._lock:
            heap, expiry = self._heap, self._expiry
            while heap and (heap[0][0] <= now or len(heap) >= self.max_entries):
                exp, old = heapq.heappop(heap)
                if expiry.get(old) == exp:
                    del expiry[old]
            current = expiry.get(key)
            if current is not None and current > now:
                return False
            exp = now + max(ttl, 0.001)
            expiry[key] = exp
            heapq.heappush(heap, (exp, key))
            return True

    async def aadd(self, key: str, ttl: float) -> bool:
        return self.add(key, ttl)

    def __len__(self) -> int:
        return len(self._expiry)

    def __repr__(self) -> str:
        return f"MemoryReplayStore(entries={len(self._expiry)}, max_entries={self.max_entries})"


class RedisReplayStore:
    """Seen ids in Redis: one ``SET <prefix>{<key>} 1 NX PX <ttl>`` per check.

    Accepts ``redis.Redis``, ``RedisCluster`` and their asyncio versions (use
    ``await scheme.averify(...)`` with an asyncio client). When Redis fails,
    ``on_error`` decides: ``"local"`` (default) falls back to an in-process
    :class:`MemoryReplayStore`, ``"allow"`` accepts the message unchecked,
    ``"deny"`` raises :class:`ReplayStoreUnavailable` (HTTP 503, so the sender
    retries later), ``"raise"`` lets the Redis error through.
    """

    __slots__ = ("_async", "_client", "_fallback", "_outage", "on_error", "prefix")

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "opskit:webhooks:seen:",
        on_error: OnError = "local",
        clock: Clock | None = None,
    ) -> None:
        self._client = client
        self._async = is_async_client(client)
        self.prefix = prefix
        self.on_error: OnError = validate_on_error(on_error)
        self._fallback = MemoryReplayStore(clock=clock)
        self._outage = OutageTracker("webhooks", "replay_store")

    @property
    def errors(self) -> int:
        """Redis errors seen so far."""
        return self._outage.errors

    def _key(self, key: str) -> str:
        return tagged_key(self.prefix, key)

    def add(self, key: str, ttl: float) -> bool:
        if self._async:
            raise TypeError(
                "RedisReplayStore holds an asyncio client: use `await scheme.averify(...)`"
            )
        try:
            created = self._client.set(self._key(key), b"1", nx=True, px=_ms(ttl))
        except RedisError as exc:
            return self._failed(exc, key, ttl)
        self._outage.ok()
        return bool(created)

    async def aadd(self, key: str, ttl: float) -> bool:
        if not self._async:
            return self.add(key, ttl)
        try:
            created = await self._client.set(self._key(key), b"1", nx=True, px=_ms(ttl))
        except RedisError as exc:
            return self._failed(exc, key, ttl)
        self._outage.ok()
        return bool(created)

    def _failed(self, exc: RedisError, key: str, ttl: float) -> bool:
        self._outage.failed(exc, self.on_error)
        if self.on_error == "raise":
            raise exc
        if self.on_error == "deny":
            raise ReplayStoreUnavailable() from None
        if self.on_error == "allow":
            return True
        return self._fallback.add(key, ttl)

    def __repr__(self) -> str:
        return f"RedisReplayStore(prefix={self.prefix!r}, on_error={self.on_error!r})"


def _ms(ttl: float) -> int:
    return max(int(ttl * 1000), 1)
