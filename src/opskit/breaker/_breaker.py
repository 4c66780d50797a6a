from __future__ import annotations

import contextvars
import functools
import inspect
import itertools
import math
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast, overload

from prometheus_client import CollectorRegistry

from opskit._core.clock import Clock, resolve_clock
from opskit._core.telemetry import Metric, get_logger, publish
from opskit.breaker._errors import CircuitOpenError
from opskit.breaker._permit import _Permit
from opskit.breaker._state import State
from opskit.breaker._window import CountWindow, TimeWindow

P = ParamSpec("P")
T = TypeVar("T")

_log = get_logger("breaker")

CLOSED, OPEN, HALF_OPEN = State.CLOSED, State.OPEN, State.HALF_OPEN
FORCED_OPEN, DISABLED = State.FORCED_OPEN, State.DISABLED

OUTCOMES = ("success", "failure", "slow", "ignored", "rejected")

StateListener = Callable[[str, State, State], object]
OpenFor = float | Callable[[int], float]

# Outcome codes of one call.
_SUCCESS, _FAILURE, _IGNORED = 0, 1, 2


@dataclass(frozen=True)
class Snapshot:
    """A breaker's state and window at one moment."""

    name: str
    state: State
    calls: int
    failures: int
    slow_calls: int
    failure_rate: float
    slow_call_rate: float
    consecutive_failures: int
    times_opened: int
    half_open_in_flight: int
    open_until: float | None  # on the breaker's monotonic clock
    retry_after: float | None  # seconds until a probe may be admitted


_DISABLED_TOKEN = -1
_ctx: contextvars.ContextVar[tuple[Any, float, Any] | None] = contextvars.ContextVar(
    "opskit_breaker_with", default=None
)


def _positive(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a number > 0, not {value!r}")
    return float(value)


def _rate(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value <= 1):
        raise ValueError(f"{name} must be a rate in (0, 1], not {value!r}")
    return float(value)


def _exc_types(name: str, value: Any) -> tuple[type[BaseException], ...]:
    if isinstance(value, type) and issubclass(value, BaseException):
        return (value,)
    if isinstance(value, tuple) and all(
        isinstance(t, type) and issubclass(t, BaseException) for t in value
    ):
        return value
    raise ValueError(f"{name} must be an exception type or a tuple of them, not {value!r}")


class CircuitBreaker:
    """A circuit breaker around one dependency.

    Closed: calls pass and their outcomes go into a sliding window; when at
    least ``minimum_calls`` were recorded and the failure rate (or the slow-call
    rate) reaches its threshold, or ``consecutive_failures`` failures come in a
    row, it opens. Open: calls are rejected with :class:`CircuitOpenError`
    without calling the function, for ``open_for`` seconds (a callable of the
    number of openings since it last closed gives break-duration backoff).
    Then half-open: exactly ``half_open_calls`` probes run at a time; all of
    them succeeding closes it, any failure reopens it.

    The closed path takes no lock and does no I/O; a lock guards only
    transitions and half-open permits. With ``store=RedisBreakerStore(...)``
    every process using the same name shares one state.
    """

    def __init__(
        self,
        name: str,
        *,
        failure_rate: float = 0.5,
        minimum_calls: int = 20,
        window: CountWindow | TimeWindow | None = None,
        consecutive_failures: int | None = None,
        slow_call_duration: float | None = None,
        slow_call_rate: float | None = None,
        open_for: OpenFor = 30.0,
        half_open_calls: int = 1,
        probe_timeout: float | None = None,
        record: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        ignore: type[BaseException] | tuple[type[BaseException], ...] = (),
        failure_if: Callable[[Any], bool] | None = None,
        store: Any = None,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        on_state_change: StateListener | Iterable[StateListener] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, not {name!r}")
        self.name = name
        self.failure_rate = cast(float, _rate("failure_rate", failure_rate))
        if (
            isinstance(minimum_calls, bool)
            or not isinstance(minimum_calls, int)
            or minimum_calls < 1
        ):
            raise ValueError(f"minimum_calls must be an int >= 1, not {minimum_calls!r}")
        self.window = TimeWindow(60) if window is None else window
        if not isinstance(self.window, (CountWindow, TimeWindow)):
            raise ValueError(f"window must be a CountWindow or a TimeWindow, not {window!r}")
        if isinstance(self.window, CountWindow) and minimum_calls > self.window.size:
            raise ValueError(
                f"minimum_calls ({minimum_calls}) is larger than the CountWindow size "
                f"({self.window.size}): the breaker could never open"
            )
        self.minimum_calls = minimum_calls
        if consecutive_failures is not None and (
            isinstance(consecutive_failures, bool)
            or not isinstance(consecutive_failures, int)
            or consecutive_failures < 1
        ):
            raise ValueError(
                f"consecutive_failures must be None or an int >= 1, not {consecutive_failures!r}"
            )
        self.consecutive_failures = consecutive_failures
        self.slow_call_duration = _positive(
            "slow_call_duration", slow_call_duration, allow_none=True
        )
        self.slow_call_rate = _rate("slow_call_rate", slow_call_rate, allow_none=True)
        if (self.slow_call_rate is None) != (self.slow_call_duration is None) and (
            self.slow_call_rate is not None
        ):
            raise ValueError("slow_call_rate needs slow_call_duration")
        if callable(open_for):
            self._open_for: Callable[[int], float] = open_for
        else:
            fixed = cast(float, _positive("open_for", open_for))
            self._open_for = lambda _n: fixed
        self.open_for = open_for
        if (
            isinstance(half_open_calls, bool)
            or not isinstance(half_open_calls, int)
            or half_open_calls < 1
        ):
            raise ValueError(f"half_open_calls must be an int >= 1, not {half_open_calls!r}")
        self.half_open_calls = half_open_calls
        self.probe_timeout = _positive("probe_timeout", probe_timeout, allow_none=True)
        self.record = _exc_types("record", record)
        self.ignore = _exc_types("ignore", ignore)
        if failure_if is not None and not callable(failure_if):
            raise ValueError(f"failure_if must be callable, not {failure_if!r}")
        self.failure_if = failure_if
        self.clock = resolve_clock(clock)
        self._now = self.clock.monotonic
        if on_state_change is None:
            self._listeners: tuple[StateListener, ...] = ()
        elif callable(on_state_change):
            self._listeners = (on_state_change,)
        else:
            self._listeners = tuple(on_state_change)

        self._timed_window = self.window.timed
        self._timed = self.slow_call_duration is not None
        self._ring = self.window.build()
        self._lock = threading.Lock()
        self._state = CLOSED
        self._gen = 0
        self._consec = 0
        self._times_opened = 0
        self._open_until = 0.0
        self._permits: dict[int, _Permit] = {}
        self._probe_ok = 0
        self._permit_ids = itertools.count(1)
        self._counts = dict.fromkeys(OUTCOMES, 0)
        self._transitions: dict[tuple[State, State], int] = {}
        self._store: Any = None
        if store is not None:
            self._store = store.bind(self)
        # The closed fast path: no timing, no result predicate (a store adds a freshness check).
        self._fast = not self._timed and failure_if is None
        # Once a count window holds minimum_calls calls, a success can never trip
        # the breaker: successes are then only counted (``_pending``) and folded
        # into the window before anything reads it.
        # The fast paths (call() and both decorators) count a success lazily when
        # ``_lazy_count`` holds, or ``_lazy_ok`` and the clock is before ``_lazy_until``.
        self._lazy_ok = False  # successes may be counted lazily now
        self._lazy_count = False  # ... and without reading the clock (count window)
        self._lazy_capable = self._fast
        self._lazy_until = 0.0  # time window: the end of the bucket lazy counting is valid in
        self._pending = 0
        self._publication = publish(self._metrics, registry)

    # -- state -----------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The current state. An open breaker whose time is up stays OPEN until a call arrives."""
        if self._store is not None:
            self._store.refresh()
        return self._state

    def snapshot(self) -> Snapshot:
        self._fold()
        now = self._now()
        calls, failures, slow = self._ring.totals(now)
        state = self._state
        open_until = self._open_until if state is OPEN else None
        if state is OPEN:
            retry_after: float | None = max(0.0, self._open_until - now)
        elif state is FORCED_OPEN:
            retry_after = None
        else:
            retry_after = 0.0
        return Snapshot(
            name=self.name,
            state=state,
            calls=calls,
            failures=failures,
            slow_calls=slow,
            failure_rate=failures / calls if calls else 0.0,
            slow_call_rate=slow / calls if calls else 0.0,
            consecutive_failures=self._consec,
            times_opened=self._times_opened,
            half_open_in_flight=len(self._permits),
            open_until=open_until,
            retry_after=retry_after,
        )

    def force_open(self) -> None:
        """Reject every call until :meth:`reset` (fleet-wide with a store)."""
        self._manual(FORCED_OPEN)

    def disable(self) -> None:
        """Pass every call and record nothing until :meth:`reset`."""
        self._manual(DISABLED)

    def reset(self) -> None:
        """Close it and clear the window (fleet-wide with a store)."""
        self._manual(CLOSED)

    def _manual(self, target: State) -> None:
        try:
            if self._store is not None:
                self._store.set_state(target)
        finally:  # under on_error="raise" the Redis error surfaces after the local change
            with self._lock:
                change = self._set_state_locked(target, self._now())
            self._emit(change)

    # -- transitions (under the lock) ------------------------------------------------

    def _set_state_locked(
        self, target: State, now: float, *, open_until: float | None = None
    ) -> tuple[State, State, dict[str, Any]] | None:
        old = self._state
        details: dict[str, Any] = {}
        if target is OPEN:
            if open_until is None:
                self._times_opened += 1
                duration = self._duration(self._times_opened)
                open_until = now + duration
                details["open_for"] = duration
            self._open_until = open_until
            calls, failures, slow = self._ring.totals(now)
            if calls:
                details["failure_rate"] = round(failures / calls, 4)
                details["slow_call_rate"] = round(slow / calls, 4)
            details["calls"] = calls
            details["consecutive_failures"] = self._consec
        if target is CLOSED:
            self._times_opened = 0
        self._counts["success"] += self._pending
        self._pending = 0
        self._lazy_ok = self._lazy_count = False
        self._ring.clear()
        self._consec = 0
        self._permits.clear()
        self._probe_ok = 0
        self._gen += 1
        self._state = target
        if old is target and target is not OPEN:
            return None
        key = (old, target)
        self._transitions[key] = self._transitions.get(key, 0) + 1
        return (old, target, details)

    def _duration(self, times_opened: int) -> float:
        try:
            d = float(self._open_for(times_opened))
        except Exception:  # a broken open_for must not break the call path
            _log.exception("breaker.open_for_failed", name=self.name)
            d = 30.0
        if not math.isfinite(d) or d < 0:
            d = 30.0 if not math.isfinite(d) or math.isnan(d) else 0.0
        return d

    def _emit(self, change: tuple[State, State, dict[str, Any]] | None) -> None:
        if change is None:
            return
        old, new, details = change
        if new is OPEN:
            _log.warning("breaker.opened", name=self.name, from_state=str(old), **details)
        elif new is HALF_OPEN:
            _log.info("breaker.half_opened", name=self.name)
        elif new is CLOSED:
            _log.info("breaker.closed", name=self.name, from_state=str(old))
        else:
            _log.warning(f"breaker.{new.value}", name=self.name, from_state=str(old))
        for listener in self._listeners:
            try:
                listener(self.name, old, new)
            except Exception:
                _log.exception("breaker.listener_failed", name=self.name)

    def _trip(self, gen: int, now: float) -> None:
        store = self._store
        if store is not None and not store.degraded:
            # The fleet decides, at the flush this starts (now, or right after the call
            # with an asyncio client). A flush that finds Redis down opens the breaker
            # here first (``_open_locally``), then applies the store's policy.
            store.opened_locally(gen)
            return
        self._open_locally(gen)

    def _open_locally(self, gen: int) -> bool:
        """Open on the local state's own decision, if it still stands; True if it opened."""
        now = self._now()  # the caller's ``now`` may be 0.0 (count window, untimed)
        with self._lock:
            if gen != self._gen or self._state is not CLOSED:
                return False
            change = self._set_state_locked(OPEN, now)
        self._emit(change)
        return True

    # -- recording ---------------------------------------------------------------------

    def _record(self, gen: int, failure: bool, slow: bool, now: float) -> None:
        """One closed-state outcome. No lock unless it trips."""
        if gen != self._gen:
            return  # admitted before a transition: stale
        if self._pending:
            self._fold()
        counts = self._counts
        if failure:
            counts["failure"] += 1
            self._consec += 1
        else:
            counts["slow" if slow else "success"] += 1
            self._consec = 0
        ring = self._ring
        ring.add(failure, slow, now)
        n = self.consecutive_failures
        if n is not None and self._consec >= n:
            self._trip(gen, now)
            return
        calls = ring.calls
        if calls >= self.minimum_calls:
            if self._timed_window:
                calls, failures, slow_n = ring.totals(now)
                if calls < self.minimum_calls:
                    return
            else:
                failures, slow_n = ring.failures, ring.slow
            if failures >= self.failure_rate * calls or (
                self.slow_call_rate is not None and slow_n >= self.slow_call_rate * calls
            ):
                self._trip(gen, now)
                return
            self._allow_lazy()

    def _fold(self) -> None:
        k = self._pending
        if k:
            self._pending = 0
            self._counts["success"] += k
            self._ring.fold_ok(k)
            # They all came after the last recorded outcome: the failure streak is broken.
            self._consec = 0

    def _ok(self, gen: int) -> None:
        """A plain success on the closed fast path."""
        if gen != self._gen:
            return
        ring = self._ring
        if self._timed_window:
            now = self._now()
            if self._lazy_ok:
                if now < self._lazy_until:
                    self._pending += 1
                    return
                self._lazy_ok = False
                self._fold()
        else:
            now = 0.0
            if self._lazy_ok:
                self._pending += 1
                return
        self._counts["success"] += 1
        self._consec = 0
        ring.add_ok(now)
        calls = ring.calls
        if calls >= self.minimum_calls:
            if ring.failures >= self.failure_rate * calls:
                self._record_check(gen)
            else:
                self._allow_lazy()

    def _allow_lazy(self) -> None:
        if self._lazy_capable:
            if self._timed_window:
                # Valid until the ring's current bucket ends: the clock only moves on, so
                # the ring cannot rotate before then.
                ring = self._ring
                self._lazy_until = (ring.current + 1) * ring.width  # type: ignore[union-attr]
            else:
                self._lazy_count = True
            self._lazy_ok = True

    def _record_check(self, gen: int) -> None:
        now = self._now()
        calls, failures, _slow = self._ring.totals(now)
        if calls >= self.minimum_calls and failures >= self.failure_rate * calls:
            self._trip(gen, now)

    def _classify_exc(self, exc: BaseException) -> int:
        if isinstance(exc, self.ignore) or not isinstance(exc, Exception):
            return _IGNORED  # cancellation, KeyboardInterrupt ... never count
        if isinstance(exc, self.record):
            return _FAILURE
        return _SUCCESS

    def _classify_result(self, result: Any) -> int:
        failure_if = self.failure_if
        if failure_if is not None:
            try:
                return _FAILURE if failure_if(result) else _SUCCESS
            except Exception:
                _log.exception("breaker.failure_if_failed", name=self.name)
        return _SUCCESS

    def _finish(self, token: Any, outcome: int, started: float) -> None:
        """Record the outcome of an admitted call."""
        now = self._now() if (self._timed or self._timed_window) else 0.0
        slow = self._timed and now - started >= cast(float, self.slow_call_duration)
        if type(token) is int:
            if token == _DISABLED_TOKEN:
                return
            if outcome == _IGNORED:
                self._counts["ignored"] += 1
                return
            self._record(token, outcome == _FAILURE, slow, now)
        else:
            self._release(token, outcome, slow, now)

    # -- admission ---------------------------------------------------------------------

    def _reject(self, retry_after: float | None) -> CircuitOpenError:
        self._counts["rejected"] += 1
        return CircuitOpenError(self.name, retry_after)

    def _admit(self) -> Any:
        """A token for a call that may proceed, or raise CircuitOpenError."""
        store = self._store
        if store is not None:
            store.maybe_sync()
            if store.blind:
                return store.gate()
        state = self._state
        if state is CLOSED:
            return self._gen
        return self._admit_slow(state)

    async def _aadmit(self) -> Any:
        store = self._store
        if store is not None:
            await store.amaybe_sync()
            if store.blind:
                return store.gate()
        state = self._state
        if state is CLOSED:
            return self._gen
        if (
            store is not None
            and store.remote_permits
            and store.store.is_async
            and (state is OPEN or state is HALF_OPEN)
        ):
            now = self._now()
            if state is OPEN and now < self._open_until:
                raise self._reject(self._open_until - now)
            return await store.aacquire(self)
        return self._admit_slow(state)

    def _admit_slow(self, state: State) -> Any:
        if state is DISABLED:
            return _DISABLED_TOKEN
        if state is FORCED_OPEN:
            raise self._reject(None)
        now = self._now()
        if state is OPEN and now < self._open_until:
            raise self._reject(self._open_until - now)
        store = self._store
        if store is not None and store.remote_permits and not store.store.is_async:
            return store.acquire(self)
        return self._local_permit(now)

    def _local_permit(self, now: float) -> Any:
        change = None
        try:
            with self._lock:
                state = self._state
                if state is CLOSED:
                    return self._gen
                if state is DISABLED:
                    return _DISABLED_TOKEN
                if state is FORCED_OPEN:
                    raise self._reject(None)
                if state is OPEN:
                    if now < self._open_until:
                        raise self._reject(self._open_until - now)
                    change = self._set_state_locked(HALF_OPEN, now)
                permits = self._permits
                if self.probe_timeout is not None and permits:
                    expired = [p for p in permits.values() if now - p.issued >= self.probe_timeout]
                    for p in expired:
                        del permits[p.id]
                if len(permits) >= self.half_open_calls:
                    raise self._reject(self._half_open_retry_after(now))
                permit = _Permit(next(self._permit_ids), self._gen, now)
                permits[permit.id] = permit
                return permit
        finally:
            self._emit(change)

    def _half_open_retry_after(self, now: float) -> float:
        if self.probe_timeout is not None and self._permits:
            oldest = min(p.issued for p in self._permits.values())
            return max(0.0, oldest + self.probe_timeout - now)
        return self._duration(max(self._times_opened, 1))

    def _release(self, permit: _Permit, outcome: int, slow: bool, now: float) -> None:
        if permit.remote is not None:
            if not self._store.store.is_async:  # async stores release in _afinish
                self._store.release(self, permit, outcome, slow)
            return
        self._settle(permit, outcome, slow)

    def _hold_remote(self, remote: str, now: float) -> _Permit:
        """A permit the fleet granted, also held in the local permit table (see _Permit)."""
        with self._lock:
            permit = _Permit(next(self._permit_ids), self._gen, now, remote)
            self._permits[permit.id] = permit
        return permit

    def _forget(self, permit: _Permit) -> None:
        """The fleet settled this remote permit: drop it from the local table."""
        with self._lock:
            self._permits.pop(permit.id, None)

    def _settle(self, permit: _Permit, outcome: int, slow: bool) -> None:
        """A probe's outcome decided by the local state: the permit is local, or Redis
        failed while releasing the fleet's permit."""
        now = self._now()
        change = None
        with self._lock:
            if permit.gen != self._gen or self._permits.pop(permit.id, None) is None:
                return  # reclaimed by probe_timeout, or the state moved on
            self._count_probe(outcome, slow)
            failed = outcome == _FAILURE or (slow and self.slow_call_rate is not None)
            if failed:
                change = self._set_state_locked(OPEN, now)
            elif outcome == _SUCCESS:
                self._probe_ok += 1
                if self._probe_ok >= self.half_open_calls:
                    change = self._set_state_locked(CLOSED, now)
        self._emit(change)

    def _count_probe(self, outcome: int, slow: bool) -> None:
        key = (
            ("ignored", "failure", "ignored")[outcome]
            if outcome
            else ("slow" if slow else "success")
        )
        self._counts[key] += 1

    # -- drivers -------------------------------------------------------------------------

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)`` through the breaker."""
        if self._state is CLOSED and self._fast and (self._store is None or self._store.fresh()):
            gen = self._gen
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self._finish(gen, self._classify_exc(exc), 0.0)
                raise
            # The decorators' success path, inlined: a lazily counted success is one add.
            if gen == self._gen and (
                self._lazy_count or (self._lazy_ok and self._now() < self._lazy_until)
            ):
                self._pending += 1
            else:
                self._ok(gen)
            return result
        token = self._admit()
        started = self._now() if self._timed else 0.0
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._finish(token, self._classify_exc(exc), started)
            raise
        self._finish(token, self._classify_result(result), started)
        return result

    async def call_async(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``fn(*args, **kwargs)`` through the breaker."""
        token = await self._aadmit()
        started = self._now() if self._timed else 0.0
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            await self._afinish(token, self._classify_exc(exc), started)
            raise
        await self._afinish(token, self._classify_result(result), started)
        return result

    async def _afinish(self, token: Any, outcome: int, started: float) -> None:
        if type(token) is not int and getattr(token, "remote", None) is not None:
            now = self._now()
            slow = self._timed and now - started >= cast(float, self.slow_call_duration)
            await self._store.arelease(self, token, outcome, slow)
            return
        self._finish(token, outcome, started)
        store = self._store
        if store is not None and store.flush_due:
            await store.amaybe_sync()

    @overload
    def __call__(self, fn: Callable[P, T], /) -> Callable[P, T]: ...
    @overload
    def __call__(
        self, fn: None = None, /, *, fallback: Callable[..., Any] | None = None
    ) -> Callable[[Callable[P, T]], Callable[P, T]]: ...
    def __call__(
        self, fn: Callable[P, T] | None = None, /, *, fallback: Callable[..., Any] | None = None
    ) -> Any:
        """Decorate a sync or async function (``@breaker`` or ``@breaker(fallback=...)``).

        ``fallback`` is called with the same arguments instead of raising
        :class:`CircuitOpenError` when the breaker rejects the call.
        """
        if fn is None:
            return functools.partial(self._decorate, fallback=fallback)
        return self._decorate(fn, fallback=fallback)

    def _decorate(self, fn: Callable[..., Any], *, fallback: Callable[..., Any] | None) -> Any:
        breaker = self
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if (
                    breaker._state is CLOSED
                    and breaker._fast
                    and (breaker._store is None or breaker._store.fresh())
                ):
                    gen = breaker._gen
                    try:
                        result = await fn(*args, **kwargs)
                    except BaseException as exc:
                        await breaker._afinish(gen, breaker._classify_exc(exc), 0.0)
                        raise
                    if gen == breaker._gen and (
                        breaker._lazy_count
                        or (breaker._lazy_ok and breaker._now() < breaker._lazy_until)
                    ):
                        breaker._pending += 1
                    else:
                        breaker._ok(gen)
                    return result
                try:
                    token = await breaker._aadmit()
                except CircuitOpenError:
                    if fallback is None:
                        raise
                    value = fallback(*args, **kwargs)
                    return await value if inspect.isawaitable(value) else value
                started = breaker._now() if breaker._timed else 0.0
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    await breaker._afinish(token, breaker._classify_exc(exc), started)
                    raise
                await breaker._afinish(token, breaker._classify_result(result), started)
                return result

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if (
                breaker._state is CLOSED
                and breaker._fast
                and (breaker._store is None or breaker._store.fresh())
            ):
                gen = breaker._gen
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    breaker._finish(gen, breaker._classify_exc(exc), 0.0)
                    raise
                if gen == breaker._gen and (
                    breaker._lazy_count
                    or (breaker._lazy_ok and breaker._now() < breaker._lazy_until)
                ):
                    breaker._pending += 1
                else:
                    breaker._ok(gen)
                return result
            try:
                token = breaker._admit()
            except CircuitOpenError:
                if fallback is None:
                    raise
                return fallback(*args, **kwargs)
            started = breaker._now() if breaker._timed else 0.0
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                breaker._finish(token, breaker._classify_exc(exc), started)
                raise
            breaker._finish(token, breaker._classify_result(result), started)
            return result

        return wrapper

    # -- context managers ----------------------------------------------------------------

    def __enter__(self) -> CircuitBreaker:
        token = self._admit()
        _ctx.set((token, self._now() if self._timed else 0.0, _ctx.get()))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entry = _ctx.get()
        assert entry is not None, "__exit__ without __enter__"
        token, started, previous = entry
        _ctx.set(previous)
        self._finish(token, _SUCCESS if exc is None else self._classify_exc(exc), started)

    async def __aenter__(self) -> CircuitBreaker:
        token = await self._aadmit()
        _ctx.set((token, self._now() if self._timed else 0.0, _ctx.get()))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entry = _ctx.get()
        assert entry is not None, "__aexit__ without __aenter__"
        token, started, previous = entry
        _ctx.set(previous)
        await self._afinish(token, _SUCCESS if exc is None else self._classify_exc(exc), started)

    # -- metrics -------------------------------------------------------------------------

    def _metrics(self) -> Iterable[Metric]:
        current = self._state
        name = self.name
        for s in State:
            yield Metric(
                "opskit_breaker_state", "gauge",
                "1 for the breaker's current state, 0 for the others.",
                1 if s is current else 0, {"name": name, "state": s.value},
            )  # fmt: skip
        counts = dict(self._counts)
        counts["success"] += self._pending
        for outcome, n in counts.items():
            yield Metric("opskit_breaker_calls_total", "counter",
                         "Calls through the breaker, by outcome.", n,
                         {"name": self.name, "outcome": outcome})  # fmt: skip
        for (a, b), n in list(self._transitions.items()):
            labels = {"name": name, "from_state": a.value, "to_state": b.value}
            yield Metric(
                "opskit_breaker_transitions_total", "counter", "State transitions.", n, labels
            )
        if self._store is not None:
            yield from self._store.metrics()

    def close(self) -> None:
        """Stop publishing this breaker's metrics."""
        self._publication.remove()

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state.value})"
