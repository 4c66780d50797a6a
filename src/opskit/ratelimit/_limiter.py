from __future__ import annotations

import functools
import inspect
import itertools
import math
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, ParamSpec, TypeVar

from prometheus_client import CollectorRegistry

from opskit._core.clock import Clock, resolve_clock
from opskit._core.telemetry import Metric, publish
from opskit.ratelimit._algo import ALGORITHMS, Decision, DecisionTuple, ttl
from opskit.ratelimit._errors import RateLimitExceeded
from opskit.ratelimit._memory import MemoryStore, Table, sweep
from opskit.ratelimit._rate import Rate
from opskit.ratelimit._redis import RedisStore

P = ParamSpec("P")
T = TypeVar("T")
D = TypeVar("D", bound=DecisionTuple)

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


class Counts:
    """Decision counters. Each is an ``itertools.count``: ``next()`` is one atomic C
    call, so the hot path loses no increment to a thread race and pays ~20 ns."""

    __slots__ = ("_lock", "_reads", "allowed", "delayed", "limited")
    NAMES = ("allowed", "limited", "delayed")

    def __init__(self) -> None:
        self.allowed = itertools.count()
        self.limited = itertools.count()
        self.delayed = itertools.count()
        self._reads = 0
        self._lock = threading.Lock()

    def add(self, decision: str) -> None:
        next(getattr(self, decision))

    def snapshot(self) -> dict[str, int]:
        """Current totals. Reading advances every counter by one, so reads are counted
        and subtracted."""
        with self._lock:
            out = {name: next(getattr(self, name)) - self._reads for name in self.NAMES}
            self._reads += 1
        return out

    def __getitem__(self, decision: str) -> int:
        return self.snapshot()[decision]


def _limiter_metrics(name: str, counts: Counts, store: Any) -> Iterable[Metric]:
    """The metrics every limiter publishes (read at scrape time)."""
    for decision, n in counts.snapshot().items():
        yield Metric("opskit_ratelimit_decisions_total", "counter", "Rate limit decisions.", n,
                     {"name": name, "decision": decision})  # fmt: skip
    tracker = getattr(store, "tracker", None)
    yield Metric("opskit_ratelimit_store_errors_total", "counter",
                 "Errors from the limiter's shared store.",
                 tracker.errors if tracker is not None else 0, {"name": name})  # fmt: skip
    fail_open = getattr(store, "fail_open", None)
    yield Metric("opskit_ratelimit_fail_open_total", "counter",
                 "Hits allowed unchecked (on_error='allow') while the shared store failed.",
                 fail_open.get(name, 0) if fail_open else 0, {"name": name})  # fmt: skip


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
        self.counts = Counts()
        self._publication = publish(self._metrics, registry)
        # The one-rate memory paths' builder (below), or None.
        self._fast: Callable[[type[Any]], tuple[Callable[..., Any], Callable[[str], Any]]] | None
        self._fast = None
        if type(self.store) is MemoryStore and len(self.rates) == 1:
            self._fast = {"gcra": self._fast_gcra, "fixed_window": self._fast_fixed,
                          "sliding_window": self._fast_sliding}[algorithm]  # fmt: skip
            self.hit, self.peek = self._fast(Decision)  # type: ignore[method-assign,assignment]
        elif type(self.store) is RedisStore:  # hit or ahit built for this limiter
            plan = (name, algorithm, self.rates, self._ttl, self.clock.monotonic,
                    (self.counts.allowed, self.counts.limited),
                    functools.partial(_check_cost, rates=self.rates))  # fmt: skip
            if self.store.is_async:
                self.ahit = self.store.aplanned(*plan)  # type: ignore[method-assign,assignment]
            else:
                self.hit = self.store.planned(*plan)  # type: ignore[method-assign]

    def _plain_hit(self) -> Callable[..., DecisionTuple]:
        """``hit(key, cost=1)`` answering a plain tuple in :class:`Decision`'s field
        order, for callers that read decisions by position (the ASGI middleware): a
        one-rate memory limiter then makes no ``Decision`` (about 400 instructions of
        a request under uvicorn). Other limiters answer their ``hit``."""
        return self.hit if self._fast is None else self._fast(tuple)[0]

    # The one-rate in-memory paths, arithmetic inlined (the generic path is
    # ``_algo.decide``; the hypothesis models in the tests hold both to one
    # reference). Their tables are this limiter's own layouts: GCRA keeps only the
    # theoretical arrival time, a float that is also the key's expiry; the fixed
    # window keeps ``(window_end, count)``. The lock is taken with bound
    # acquire/release (cheaper than ``with``) and released on every way out. ``kind``
    # is what they answer: ``Decision``, or ``tuple`` for :meth:`_plain_hit`.

    def _fast_parts(self) -> tuple[Rate, tuple[Rate, ...], Table, Any, Callable[[], float],
                                   Iterator[int], Iterator[int]]:  # fmt: skip
        """What every one-rate memory path binds: the rate, this limiter's table in
        its algorithm's layout, the store's lock, the clock and the counters."""
        rate = self.rates[0]
        layout = "gcra" if self.algorithm == "gcra" else f"{self.algorithm}/{rate.per!r}"
        counts = self.counts
        return (rate, self.rates, self.store.table(self.name, layout), self.store._lock,
                self.clock.monotonic, counts.allowed, counts.limited)  # fmt: skip

    def _fast_gcra(self, kind: type[D]) -> tuple[Callable[..., D], Callable[[str], D]]:
        rate, rates, data, lock, now_fn, allowed, limited = self._fast_parts()
        acquire, release = lock.acquire, lock.release
        limit, per = rate.limit, rate.per
        interval = per / limit
        ceiling = per + 1e-9
        slack = per + 1e-9 * interval  # (slack - used) / interval == (per - used) / interval + 1e-9
        new = tuple.__new__

        def denied(tat: float, now: float, used: float) -> D:
            left = max(0, math.floor((slack - (tat - now)) / interval))
            return new(kind, (False, limit, left, tat - now, used - per, rate))

        def hit(key: str, cost: int = 1) -> D:
            step = interval if cost == 1 else _check_cost(cost, rates) * interval
            now = now_fn()
            acquire()
            try:
                tat = data.get(key, now)
                new_tat = (tat if tat > now else now) + step
                used = new_tat - now
                if used <= ceiling:
                    data[key] = new_tat
                    if tat is now and len(data) > data.sweep_at:  # a new key
                        sweep(data, now)
                    ok = True
                else:
                    ok = False
            finally:
                release()
            if ok:
                next(allowed)
                # (slack - used) / interval > -1 here, so int() is floor() clamped at 0
                return new(kind, (True, limit, int((slack - used) / interval), used, 0.0, rate))
            next(limited)
            return denied(tat, now, used)

        def peek(key: str) -> D:
            now = now_fn()
            with lock:
                tat = data.get(key, now)
            used = (tat if tat > now else now) + interval - now
            if used <= ceiling:
                return new(kind, (True, limit, int((slack - used) / interval), used, 0.0, rate))
            return denied(tat, now, used)

        return hit, peek

    def _fast_fixed(self, kind: type[D]) -> tuple[Callable[..., D], Callable[[str], D]]:
        # Fixed windows are aligned to multiples of ``per`` for every key, so the table
        # holds the current window's counts only and is emptied when it ends.
        rate, rates, data, lock, now_fn, allowed, limited = self._fast_parts()
        acquire, release = lock.acquire, lock.release
        limit, per = rate.limit, rate.per
        floor = math.floor
        new = tuple.__new__

        def hit(key: str, cost: int = 1) -> D:
            if cost != 1:
                cost = _check_cost(cost, rates)
            now = now_fn()
            acquire()
            try:
                end = data.end
                if now >= end:
                    data.clear()
                    data.end = end = (floor(now / per) + 1) * per
                count = data.get(key, 0)
                if count + cost <= limit:
                    data[key] = count + cost
                    ok = True
                else:
                    ok = False
            finally:
                release()
            if ok:
                next(allowed)
                return new(kind, (True, limit, limit - count - cost, end - now, 0.0, rate))
            next(limited)
            reset = end - now
            return new(kind, (False, limit, limit - count, reset, reset, rate))

        def peek(key: str) -> D:
            now = now_fn()
            with lock:
                end = data.end
                count = data.get(key, 0) if now < end else 0
            if now >= end:
                end = (floor(now / per) + 1) * per
            reset = end - now
            if count < limit:
                return new(kind, (True, limit, limit - count - 1, reset, 0.0, rate))
            return new(kind, (False, limit, limit - count, reset, reset, rate))

        return hit, peek

    def _fast_sliding(self, kind: type[D]) -> tuple[Callable[..., D], Callable[[str], D]]:
        # Windows are aligned for every key: the table holds the current window's
        # counts, ``data.prev`` the previous window's; both move on when it ends.
        rate, rates, data, lock, now_fn, allowed, limited = self._fast_parts()
        acquire, release = lock.acquire, lock.release
        limit, per = rate.limit, rate.per
        ceiling = limit + 1e-9
        span = 2 * per  # the two windows the estimate reads: reset is when both have passed
        floor = math.floor
        new = tuple.__new__

        def denied(prev: int, curr: int, elapsed: float, estimate: float, cost: int
                   ) -> D:  # fmt: skip
            room = limit - cost
            if curr <= room and prev > 0:
                retry = per * (1.0 - (room - curr) / prev) - elapsed
            else:  # the next window, where this window's count becomes the previous one
                retry = (per - elapsed) + (per * (1.0 - room / curr) if curr > 0 else 0.0)
            left = int(max(0.0, floor(limit - estimate + 1e-9)))
            reset = span - elapsed
            return new(kind, (False, limit, left, reset, max(retry, 0.0), rate))

        def hit(key: str, cost: int = 1) -> D:
            if cost != 1:
                cost = _check_cost(cost, rates)
            now = now_fn()
            acquire()
            try:
                if now >= data.end:
                    window = floor(now / per)
                    data.prev = dict(data) if window == data.window + 1 else {}
                    data.clear()
                    data.window, data.start, data.end = window, window * per, (window + 1) * per
                start = data.start
                curr = data.get(key, 0)
                earlier = data.prev
                prev = earlier.get(key, 0) if earlier else 0
                count = curr + cost
                if prev:
                    estimate = prev * (1.0 - (now - start) / per) + curr
                    ok = estimate + cost <= ceiling
                else:  # the previous window is empty: the estimate is the count, exactly
                    estimate = curr
                    ok = count <= limit
                if ok:
                    data[key] = count
            finally:
                release()
            if ok:
                next(allowed)
                left = floor(limit - estimate - cost + 1e-9) if prev else limit - count
                return new(kind, (True, limit, left if left > 0 else 0, span - (now - start),
                                      0.0, rate))  # fmt: skip
            next(limited)
            return denied(prev, curr, now - start, estimate, cost)

        def peek(key: str) -> D:
            now = now_fn()
            with lock:
                if now < data.end:
                    window, prev, curr = data.window, data.prev.get(key, 0), data.get(key, 0)
                    start = data.start
                else:
                    window = floor(now / per)
                    prev = data.get(key, 0) if window == data.window + 1 else 0
                    curr = 0
                    start = window * per
            elapsed = now - start
            estimate = prev * (1.0 - elapsed / per) + curr
            if estimate + 1 <= ceiling:
                left = floor(limit - estimate - 1 + 1e-9)
                return new(kind, (True, limit, left if left > 0 else 0, span - elapsed,
                                      0.0, rate))  # fmt: skip
            return denied(prev, curr, elapsed, estimate, 1)

        return hit, peek

    # -- decisions -----------------------------------------------------------------------

    def _count(self, d: Decision) -> Decision:
        next(self.counts.allowed if d.allowed else self.counts.limited)
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
        self.counts = Counts()
        self._publication = publish(self._metrics, registry)

    def _slot_id(self) -> str:
        return f"{_PID}:{next(_slot_ids)}"

    def _refuse(self) -> RateLimitExceeded:
        next(self.counts.limited)
        return RateLimitExceeded(self.name, 1.0)

    def try_acquire(self, key: str) -> str | None:
        """A slot id, or None when the key is full (see also :meth:`slot`)."""
        slot = self._slot_id()
        if self.store.acquire_slot(self.name, key, slot, self.limit, self.lease,
                                   self.clock.monotonic()):  # fmt: skip
            next(self.counts.allowed)
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
            next(self.counts.allowed)
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
