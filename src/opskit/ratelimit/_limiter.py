from __future__ import annotations

import functools
import inspect
import itertools
import math
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, ParamSpec, TypeVar

from prometheus_client import CollectorRegistry

from opskit._core.clock import Clock, resolve_clock
from opskit._core.telemetry import Metric, publish
from opskit.ratelimit._algo import ALGORITHMS, Decision, ttl
from opskit.ratelimit._errors import RateLimitExceeded
from opskit.ratelimit._memory import MemoryStore, sweep
from opskit.ratelimit._rate import Rate

P = ParamSpec("P")
T = TypeVar("T")

RateLike = str | Rate


def _rates(rates: RateLike | Sequence[RateLike]) -> tuple[Rate, ...]:
    items = [rates] if isinstance(rates, (str, Rate)) else list(rates)
    if not items:
        raise ValueError("rates must name at least one rate, like '100/15minutes'")
    return tuple(Rate.parse(r) for r in items)


def _check_cost(cost: int, rates: Sequence[Rate]) -> int:
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
        raise ValueError(f"cost must be an int >= 1, not {cost!r}")
    smallest = min(r.limit for r in rates)
    if cost > smallest:
        raise ValueError(f"cost {cost} can never pass: a rate allows only {smallest}")
    return cost


def _limiter_metrics(name: str, counts: dict[str, int], store: Any) -> Iterable[Metric]:
    """The metrics every limiter publishes (read at scrape time)."""
    for decision, n in list(counts.items()):
        yield Metric("opskit_ratelimit_decisions_total", "counter", "Rate limit decisions.", n,
                     {"name": name, "decision": decision})  # fmt: skip
    tracker = getattr(store, "tracker", None)
    yield Metric("opskit_ratelimit_store_errors_total", "counter",
                 "Errors from the limiter's shared store.",
                 tracker.errors if tracker is not None else 0, {"name": name})  # fmt: skip


class RateLimiter:
    """Limits hits per key under one or more rates, all of which must allow.

    ``algorithm`` is ``"gcra"`` (burst equal to the limit, steady rate
    limit/period), ``"sliding_window"`` (Cloudflare's two-counter estimate) or
    ``"fixed_window"``. A denied hit consumes nothing from any rate.
    """

    def __init__(
        self,
        name: str,
        rates: RateLike | Sequence[RateLike],
        *,
        algorithm: str = "gcra",
        store: Any = None,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, not {name!r}")
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}")
        self.name = name
        self.rates = _rates(rates)
        self.algorithm = algorithm
        self.store: Any = MemoryStore() if store is None else store
        self.clock = resolve_clock(clock)
        self._ttl = ttl(algorithm, self.rates)
        self.counts = {"allowed": 0, "limited": 0, "delayed": 0}
        self._publication = publish(self._metrics, registry)
        if (
            type(self.store) is MemoryStore
            and len(self.rates) == 1
            and algorithm in ("gcra", "fixed_window")
        ):
            self.hit = self._fast_memory_hit()  # type: ignore[method-assign]
            self._fast_peek = self._fast_memory_hit(commit=False)
            self.peek = lambda key: self._fast_peek(key)  # type: ignore[method-assign]

    def _fast_memory_hit(self, *, commit: bool = True) -> Callable[..., Decision]:
        """The one-rate in-memory hit with the arithmetic inlined.

        Its keys hold a flat entry, ``(expires, tat)`` or ``(expires, window, count)``,
        read only by this limiter's own fast hit and peek.
        """
        rate = self.rates[0]
        limit, per = rate.limit, rate.per
        interval = per / limit
        keep = self._ttl
        store = self.store
        data = store.table(self.name)
        acquire, release = store._lock.acquire, store._lock.release
        now_fn = self.clock.monotonic
        counts = self.counts
        gcra = self.algorithm == "gcra"
        rates = self.rates
        floor = math.floor
        new = tuple.__new__

        def hit(key: str, cost: int = 1) -> Decision:
            # acquire()/release() bound once: cheaper than ``with lock`` on this hot path.
            if cost != 1:
                cost = _check_cost(cost, rates)
            now = now_fn()
            acquire()
            try:
                entry: Any = data.get(key)
                if gcra:
                    tat = entry[1] if entry is not None else now
                    base = tat if tat > now else now
                    used = base + cost * interval - now
                    if used <= per + 1e-9:
                        if commit:
                            data[key] = (now + keep, base + cost * interval)
                        d = new(Decision, (True, limit, int(floor((per - used) / interval + 1e-9)),
                                           used, 0.0, rate))  # fmt: skip
                    else:
                        left = int(max(0.0, floor((per - (base - now)) / interval + 1e-9)))
                        d = new(Decision, (False, limit, left, base - now, used - per, rate))
                else:
                    window = floor(now / per)
                    count = entry[2] if entry is not None and entry[1] == window else 0
                    reset = (window + 1) * per - now
                    if count + cost <= limit:
                        if commit:
                            data[key] = (now + keep, window, count + cost)
                        d = new(Decision, (True, limit, limit - count - cost, reset, 0.0, rate))
                    else:
                        left = max(0, limit - count)
                        d = new(Decision, (False, limit, left, reset, reset, rate))
                if entry is None and commit and len(data) > data.sweep_at:
                    sweep(data, now)
            finally:
                release()
            if commit:
                counts["allowed" if d[0] else "limited"] += 1
            return d

        return hit

    # -- decisions -----------------------------------------------------------------------

    def _count(self, d: Decision) -> Decision:
        self.counts["allowed" if d.allowed else "limited"] += 1
        return d

    def hit(self, key: str, cost: int = 1) -> Decision:
        """Count a hit of ``cost`` against ``key`` if every rate allows it."""
        cost = _check_cost(cost, self.rates) if cost != 1 else 1
        return self._count(self.store.hit(self.name, key, self.algorithm, self.rates, cost,
                                          self.clock.monotonic(), self._ttl))  # fmt: skip

    async def ahit(self, key: str, cost: int = 1) -> Decision:
        if not self.store.is_async:
            return self.hit(key, cost)
        cost = _check_cost(cost, self.rates) if cost != 1 else 1
        d = await self.store.ahit(self.name, key, self.algorithm, self.rates, cost,
                                  self.clock.monotonic(), self._ttl)  # fmt: skip
        return self._count(d)

    def peek(self, key: str) -> Decision:
        """What a hit of cost 1 would get now, without counting it."""
        d: Decision = self.store.hit(self.name, key, self.algorithm, self.rates, 1,
                                     self.clock.monotonic(), self._ttl, commit=False)  # fmt: skip
        return d

    async def apeek(self, key: str) -> Decision:
        if self.store.is_async:
            d: Decision = await self.store.ahit(
                self.name,
                key,
                self.algorithm,
                self.rates,
                1,
                self.clock.monotonic(),
                self._ttl,
                commit=False,
            )
            return d
        return self.peek(key)

    def reset(self, key: str) -> None:
        self.store.reset(self.name, key)

    async def areset(self, key: str) -> None:
        if self.store.is_async:
            await self.store.areset(self.name, key)
        else:
            self.store.reset(self.name, key)

    def acquire(self, key: str, cost: int = 1, timeout: float | None = None) -> Decision:
        """Wait (through the clock) until the hit is allowed; client-side throttling.

        Raises :class:`RateLimitExceeded` at once when the wait it needs exceeds
        ``timeout``.
        """
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        while True:
            d = self.hit(key, cost)
            if d.allowed:
                return d
            self._check_wait(d, deadline)
            self.clock.sleep(d.retry_after)

    async def aacquire(self, key: str, cost: int = 1, timeout: float | None = None) -> Decision:
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        while True:
            d = await self.ahit(key, cost)
            if d.allowed:
                return d
            self._check_wait(d, deadline)
            await self.clock.asleep(d.retry_after)

    def _check_wait(self, d: Decision, deadline: float | None) -> None:
        if deadline is not None and self.clock.monotonic() + d.retry_after > deadline + 1e-9:
            raise RateLimitExceeded(self.name, d.retry_after, d)

    # -- decorator -----------------------------------------------------------------------

    def limit(
        self, key: Callable[..., str] | str, cost: int = 1
    ) -> Callable[[Callable[P, T]], Callable[P, T]]:
        """Decorate a function: each call hits ``key`` (a string, or a function of the
        call's arguments); a denied hit raises :class:`RateLimitExceeded`."""
        limiter = self

        def key_of(args: Any, kwargs: Any) -> str:
            return key(*args, **kwargs) if callable(key) else key

        def decorate(fn: Callable[P, T]) -> Callable[P, T]:
            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    d = await limiter.ahit(key_of(args, kwargs), cost)
                    if not d.allowed:
                        raise RateLimitExceeded(limiter.name, d.retry_after, d)
                    return await fn(*args, **kwargs)

                return async_wrapper  # type: ignore[return-value]

            @functools.wraps(fn)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                d = limiter.hit(key_of(args, kwargs), cost)
                if not d.allowed:
                    raise RateLimitExceeded(limiter.name, d.retry_after, d)
                return fn(*args, **kwargs)

            return wrapper

        return decorate

    def _metrics(self) -> Iterable[Metric]:
        return _limiter_metrics(self.name, self.counts, self.store)

    def close(self) -> None:
        self._publication.remove()

    def __repr__(self) -> str:
        rates = ", ".join(map(str, self.rates))
        return f"RateLimiter({self.name!r}, [{rates}], algorithm={self.algorithm!r})"


_slot_ids = itertools.count(1)
_PID = f"{os.getpid():x}"


class ConcurrencyLimiter:
    """At most ``limit`` holders of a slot per key at once (Stripe's concurrent-requests
    limiter). A slot whose holder died is reclaimed after ``lease`` seconds.
    Entering a full limiter raises :class:`RateLimitExceeded` at once."""

    def __init__(
        self,
        name: str,
        *,
        limit: int,
        lease: float = 60.0,
        store: Any = None,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an int >= 1, not {limit!r}")
        if not (isinstance(lease, (int, float)) and lease > 0 and math.isfinite(lease)):
            raise ValueError(f"lease must be seconds > 0, not {lease!r}")
        self.name = name
        self.limit = limit
        self.lease = float(lease)
        self.store: Any = MemoryStore() if store is None else store
        self.clock = resolve_clock(clock)
        self.counts = {"allowed": 0, "limited": 0, "delayed": 0}
        self._publication = publish(self._metrics, registry)

    def _slot_id(self) -> str:
        return f"{_PID}:{next(_slot_ids)}"

    def _refuse(self) -> RateLimitExceeded:
        self.counts["limited"] += 1
        return RateLimitExceeded(self.name, 1.0)

    def try_acquire(self, key: str) -> str | None:
        """A slot id, or None when the key is full (see also :meth:`slot`)."""
        slot = self._slot_id()
        if self.store.acquire_slot(self.name, key, slot, self.limit, self.lease,
                                   self.clock.monotonic()):  # fmt: skip
            self.counts["allowed"] += 1
            return slot
        return None

    async def atry_acquire(self, key: str) -> str | None:
        slot = self._slot_id()
        if self.store.is_async:
            got = await self.store.aacquire_slot(self.name, key, slot, self.limit, self.lease,
                                                 self.clock.monotonic())  # fmt: skip
        else:
            got = self.store.acquire_slot(self.name, key, slot, self.limit, self.lease,
                                          self.clock.monotonic())  # fmt: skip
        if got:
            self.counts["allowed"] += 1
            return slot
        return None

    def release(self, key: str, slot: str) -> None:
        self.store.release_slot(self.name, key, slot)

    async def arelease(self, key: str, slot: str) -> None:
        if self.store.is_async:
            await self.store.arelease_slot(self.name, key, slot)
        else:
            self.store.release_slot(self.name, key, slot)

    @contextmanager
    def slot(self, key: str) -> Iterator[str]:
        """Hold a slot for the block; released on exit, exception included."""
        slot = self.try_acquire(key)
        if slot is None:
            raise self._refuse()
        try:
            yield slot
        finally:
            self.release(key, slot)

    @asynccontextmanager
    async def aslot(self, key: str) -> AsyncIterator[str]:
        """Hold a slot for the block; released on exit, exception or cancellation."""
        slot = await self.atry_acquire(key)
        if slot is None:
            raise self._refuse()
        try:
            yield slot
        finally:
            await self.arelease(key, slot)

    def _metrics(self) -> Iterable[Metric]:
        return _limiter_metrics(self.name, self.counts, self.store)

    def close(self) -> None:
        self._publication.remove()
