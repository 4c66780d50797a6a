from __future__ import annotations

import asyncio
import functools
import inspect
import math
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, Literal, ParamSpec, TypeVar, cast, overload

from prometheus_client import CollectorRegistry
from tenacity import (
    AsyncRetrying,
    AttemptManager,
    DoAttempt,
    DoSleep,
    RetryCallState,
    Retrying,
    retry_base,
)

from opskit import OpskitError
from opskit._core.clock import Clock, resolve_clock
from opskit._core.telemetry import Metric, get_logger, publish
from opskit.retry._budget import RetryBudget
from opskit.retry._retry_after import retry_after_from
from opskit.retry._run import RetryRun
from opskit.retry._testing import MODE
from opskit.retry.backoff import Backoff, exponential

P = ParamSpec("P")
T = TypeVar("T")

_log = get_logger("retry")

#: Never retried, whatever ``on`` says.
NEVER_RETRIED: tuple[type[BaseException], ...] = (
    asyncio.CancelledError,
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
)

OUTCOMES = (
    "first_try",
    "recovered",
    "exhausted",
    "budget_exhausted",
    "deadline_exceeded",
    "failed",
)

# Attributes opskit keeps on tenacity's RetryCallState (it has no __slots__).
_STARTED = "_opskit_started"
_REASON = "_opskit_reason"


class RetryExhausted(OpskitError):
    """Every attempt returned a result that ``retry_if_result`` rejected.

    (When attempts end in exceptions, the last exception itself is re-raised.)
    ``last_result`` is the last result; it is never put in the message.
    """

    def __init__(self, name: str, attempts: int, last_result: Any, reason: str) -> None:
        super().__init__(f"retry policy {name!r} gave up after {attempts} attempts ({reason})")
        self.name = name
        self.attempts = attempts
        self.last_result = last_result
        self.reason = reason


def _add_note(exc: BaseException, note: str) -> None:
    add = getattr(exc, "add_note", None)
    if add is not None:  # Python >= 3.11
        add(note)
    else:  # pragma: no cover - Python 3.10 keeps the note where 3.11 would
        notes = getattr(exc, "__notes__", None)
        if not isinstance(notes, list):
            notes = []
            exc.__notes__ = notes  # type: ignore[attr-defined]
        notes.append(note)


def _predicate(on: Any) -> Callable[[BaseException], bool]:
    if isinstance(on, type) and issubclass(on, BaseException):
        types: tuple[type[BaseException], ...] = (on,)
    elif (
        isinstance(on, tuple)
        and on
        and all(isinstance(t, type) and issubclass(t, BaseException) for t in on)
    ):
        types = on
    elif callable(on) and not isinstance(on, type):
        pred = cast(Callable[[BaseException], bool], on)
        return lambda e: not isinstance(e, NEVER_RETRIED) and bool(pred(e))
    else:
        raise ValueError(
            "on must be an exception type, a non-empty tuple of them, or a "
            f"predicate(exception) -> bool, not {on!r}"
        )
    return lambda e: isinstance(e, types) and not isinstance(e, NEVER_RETRIED)


class _RetryIf(retry_base):
    """tenacity ``retry``: the policy's exception predicate and result predicate."""

    def __init__(self, on_exc: Callable[[BaseException], bool], on_result: Any) -> None:
        self.on_exc = on_exc
        self.on_result = on_result

    def __call__(self, retry_state: RetryCallState) -> bool:
        fut = retry_state.outcome
        if fut is None:  # pragma: no cover - tenacity always sets it first
            return False
        if fut.failed:
            exc = fut.exception()
            return exc is not None and self.on_exc(exc)
        return self.on_result is not None and bool(self.on_result(fut.result()))


class Retry:
    """A retry policy: which errors, how many attempts, how long, how to wait.

    Use it as a decorator (sync or async functions; signatures are kept), with
    ``call`` / ``call_async``, or as tenacity-style blocks::

        for attempt in policy:
            with attempt:
                ...

    The first attempt is a plain call: no tenacity object is built unless it
    fails with a retryable error (or a result ``retry_if_result`` rejects).
    From then on tenacity's engine decides, with ``wait``/``stop``/``retry``
    built from this policy. Exhaustion re-raises the last exception itself
    with a note; result exhaustion raises :class:`RetryExhausted`.
    """

    def __init__(
        self,
        name: str,
        *,
        on: type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool],
        attempts: int = 3,
        deadline: float | None = None,
        backoff: Backoff | None = None,
        retry_if_result: Callable[[Any], bool] | None = None,
        respect_retry_after: bool = True,
        max_retry_after: float = 60.0,
        budget: RetryBudget | None = None,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        log_error_messages: bool = False,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, not {name!r}")
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"attempts must be an int >= 1, not {attempts!r}")
        if deadline is not None and not (
            isinstance(deadline, (int, float)) and deadline > 0 and not math.isnan(deadline)
        ):
            raise ValueError(f"deadline must be None or seconds > 0, not {deadline!r}")
        if not (isinstance(max_retry_after, (int, float)) and max_retry_after >= 0):
            raise ValueError(f"max_retry_after must be seconds >= 0, not {max_retry_after!r}")
        if backoff is not None and not isinstance(backoff, Backoff):
            raise ValueError(f"backoff must be built with opskit.retry.backoff, not {backoff!r}")
        if retry_if_result is not None and not callable(retry_if_result):
            raise ValueError(f"retry_if_result must be callable, not {retry_if_result!r}")
        if budget is not None and not isinstance(budget, RetryBudget):
            raise ValueError(f"budget must be a RetryBudget, not {budget!r}")
        self.name = name
        self.attempts = attempts
        self.deadline = None if deadline is None else float(deadline)
        self.backoff = backoff if backoff is not None else exponential()
        self.retry_if_result = retry_if_result
        self.respect_retry_after = respect_retry_after
        self.max_retry_after = float(max_retry_after)
        self.budget = budget
        self.clock = resolve_clock(clock)
        self.log_error_messages = log_error_messages
        self._retryable = _predicate(on)
        self._now = self.clock.monotonic
        # Plain counters, read by the Prometheus collector at scrape time.
        self._outcomes = dict.fromkeys(OUTCOMES, 0)
        self._first_try = 0
        self._retries = 0
        self._retrying = self._build(Retrying, sleep=self._sleep)
        self._async_retrying = self._build(AsyncRetrying, sleep=self._asleep)
        self._publication = publish(self._metrics, registry)

    # -- tenacity pieces built from the policy ---------------------------------------

    def _build(self, cls: Any, *, sleep: Callable[[float], Any]) -> Any:
        return cls(
            retry=_RetryIf(self._retryable, self.retry_if_result),
            wait=self._wait,
            stop=self._stop,
            before=self._before,
            before_sleep=self._before_sleep,
            retry_error_callback=self._give_up,
            sleep=sleep,
            reraise=True,
        )

    def _before(self, rs: RetryCallState) -> None:
        if not hasattr(rs, _STARTED):
            setattr(rs, _STARTED, self._now())

    def _wait(self, rs: RetryCallState) -> float:
        asked = None
        fut = rs.outcome
        if self.respect_retry_after and fut is not None and fut.failed:
            asked = retry_after_from(fut.exception(), now=self.clock.time())
        return self.next_wait(rs.attempt_number, rs.upcoming_sleep, asked)

    def _stop(self, rs: RetryCallState) -> bool:
        if rs.attempt_number >= self.max_attempts:
            setattr(rs, _REASON, "exhausted")
            return True
        if self.deadline is not None:
            elapsed = self._now() - getattr(rs, _STARTED, self._now())
            if elapsed + rs.upcoming_sleep > self.deadline:
                setattr(rs, _REASON, "deadline_exceeded")
                return True
        if self.budget is not None and not self.budget.try_withdraw():
            setattr(rs, _REASON, "budget_exhausted")
            return True
        return False

    def _before_sleep(self, rs: RetryCallState) -> None:
        self._retries += 1
        fut = rs.outcome
        exc = fut.exception() if fut is not None and fut.failed else None
        fields: dict[str, Any] = {
            "name": self.name,
            "attempt": rs.attempt_number,
            "wait": round(rs.upcoming_sleep, 6),
            "error": type(exc).__name__ if exc is not None else None,
        }
        if self.log_error_messages and exc is not None:
            fields["message"] = str(exc)
        _log.info("retry.scheduled", **fields)

    def _give_up(self, rs: RetryCallState) -> Any:
        reason = getattr(rs, _REASON, "exhausted")
        self._outcomes[reason] += 1
        elapsed = self._now() - getattr(rs, _STARTED, self._now())
        fut = rs.outcome
        assert fut is not None
        exc = fut.exception() if fut.failed else None
        _log.warning(
            "retry.exhausted",
            name=self.name,
            attempts=rs.attempt_number,
            elapsed=round(elapsed, 6),
            reason=reason,
            error=type(exc).__name__ if exc is not None else None,
        )
        if exc is not None:
            _add_note(
                exc,
                f"opskit.retry {self.name!r}: gave up after {rs.attempt_number} attempts "
                f"over {elapsed:.3f}s ({reason.replace('_', ' ')})",
            )
            raise exc
        raise RetryExhausted(self.name, rs.attempt_number, fut.result(), reason)

    def _sleep(self, seconds: float) -> None:
        if not MODE.enabled:
            self.clock.sleep(seconds)

    async def _asleep(self, seconds: float) -> None:
        if not MODE.enabled:
            await self.clock.asleep(seconds)

    def _metrics(self) -> Iterable[Metric]:
        counts = dict(self._outcomes)
        counts["first_try"] = self._first_try
        for outcome, n in counts.items():
            yield Metric(
                "opskit_retry_calls_total",
                "counter",
                "Calls through a retry policy, by how they ended.",
                n,
                {"name": self.name, "outcome": outcome},
            )
        yield Metric(
            "opskit_retry_retries_total",
            "counter",
            "Retries scheduled (waits begun).",
            self._retries,
            {"name": self.name},
        )

    # -- for drivers that run their own loop (opskit.http) ------------------------------

    def retryable(self, exc: BaseException) -> bool:
        """Whether ``exc`` is an error this policy retries (its ``on``)."""
        return self._retryable(exc)

    @property
    def max_attempts(self) -> int:
        """``attempts``, capped by ``opskit.retry.testing(attempts=...)`` when set."""
        return self.attempts if MODE.attempts is None else min(self.attempts, MODE.attempts)

    def next_wait(
        self, attempt: int, previous: float = 0.0, retry_after: float | None = None
    ) -> float:
        """The wait after failed attempt number ``attempt`` (1-based).

        ``previous`` is the last wait (for decorrelated jitter); ``retry_after``
        the seconds a server asked for: with ``respect_retry_after`` the wait is
        ``max(backoff, min(retry_after, max_retry_after))``, as the policy's
        own drivers compute it.
        """
        delay = self.backoff.delay(attempt, previous)
        if self.respect_retry_after and retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return delay

    def begin(self) -> RetryRun:
        """Start one call's retry state (deposits into the budget), for a driver's own loop."""
        return RetryRun(self)

    # -- drivers -------------------------------------------------------------------------

    def _state(self, retrying: Any, fn: Any, args: Any, kwargs: Any, started: float) -> Any:
        rs = RetryCallState(retrying, fn, args, kwargs)
        setattr(rs, _STARTED, started)
        return rs

    def _first_failure(self, exc: BaseException | None, result: Any) -> bool:
        """Whether the first attempt's outcome is retried at all."""
        if exc is not None:
            return self._retryable(exc)
        return self.retry_if_result is not None and bool(self.retry_if_result(result))

    def _ended_by_error(self, rs: Any) -> None:
        """tenacity raised: exhaustion was counted by ``_give_up``; anything else is "failed"."""
        if not hasattr(rs, _REASON):
            self._outcomes["failed"] += 1

    def _finish(self, rs: Any, do: Any) -> Any:
        self._outcomes["recovered" if rs.attempt_number > 1 else "first_try"] += 1
        return do

    def _continue(
        self, fn: Callable[..., Any], args: Any, kwargs: Any, started: float,
        exc: BaseException | None, result: Any,
    ) -> Any:  # fmt: skip
        retrying = self._retrying
        retrying.begin()
        rs = self._state(retrying, fn, args, kwargs, started)
        if exc is not None:
            rs.set_exception((type(exc), exc, exc.__traceback__))
        else:
            rs.set_result(result)
        del exc
        while True:
            try:
                do = retrying.iter(rs)
            except BaseException:
                self._ended_by_error(rs)
                raise
            if isinstance(do, DoAttempt):
                try:
                    value = fn(*args, **kwargs)
                except BaseException:
                    rs.set_exception(sys.exc_info())
                else:
                    rs.set_result(value)
            elif isinstance(do, DoSleep):
                rs.prepare_for_next_attempt()
                self._sleep(float(do))
            else:
                return self._finish(rs, do)

    async def _acontinue(
        self, fn: Callable[..., Awaitable[Any]], args: Any, kwargs: Any, started: float,
        exc: BaseException | None, result: Any,
    ) -> Any:  # fmt: skip
        retrying = self._async_retrying
        retrying.begin()
        rs = self._state(retrying, fn, args, kwargs, started)
        if exc is not None:
            rs.set_exception((type(exc), exc, exc.__traceback__))
        else:
            rs.set_result(result)
        del exc
        while True:
            try:
                do = await retrying.iter(rs)
            except BaseException:
                self._ended_by_error(rs)
                raise
            if isinstance(do, DoAttempt):
                try:
                    value = await fn(*args, **kwargs)
                except BaseException:
                    rs.set_exception(sys.exc_info())
                else:
                    rs.set_result(value)
            elif isinstance(do, DoSleep):
                rs.prepare_for_next_attempt()
                await self._asleep(float(do))
            else:
                return self._finish(rs, do)

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)`` under this policy."""
        started = self._now()
        if self.budget is not None:
            self.budget.deposit()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            if not self._retryable(exc):
                self._outcomes["failed"] += 1
                raise
            return cast(T, self._continue(fn, args, kwargs, started, exc, None))
        if self.retry_if_result is not None and self.retry_if_result(result):
            return cast(T, self._continue(fn, args, kwargs, started, None, result))
        self._first_try += 1
        return result

    async def call_async(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``fn(*args, **kwargs)`` under this policy."""
        started = self._now()
        if self.budget is not None:
            self.budget.deposit()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            if not self._retryable(exc):
                self._outcomes["failed"] += 1
                raise
            return cast(T, await self._acontinue(fn, args, kwargs, started, exc, None))
        if self.retry_if_result is not None and self.retry_if_result(result):
            return cast(T, await self._acontinue(fn, args, kwargs, started, None, result))
        self._first_try += 1
        return result

    @overload
    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]: ...
    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a sync or async function; its signature is kept."""
        # The success path is inlined: one Python frame over the bare call.
        now = self._now
        retryable = self._retryable
        deposit = self.budget.deposit if self.budget is not None else None
        reject = self.retry_if_result
        policy = self

        if inspect.iscoroutinefunction(fn):
            acont = self._acontinue

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                started = now()
                if deposit is not None:
                    deposit()
                try:
                    result = await fn(*args, **kwargs)
                except Exception as exc:
                    if not retryable(exc):
                        policy._outcomes["failed"] += 1
                        raise
                    return await acont(fn, args, kwargs, started, exc, None)
                if reject is not None and reject(result):
                    return await acont(fn, args, kwargs, started, None, result)
                policy._first_try += 1
                return result

            return async_wrapper

        cont = self._continue

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            started = now()
            if deposit is not None:
                deposit()
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if not retryable(exc):
                    policy._outcomes["failed"] += 1
                    raise
                return cont(fn, args, kwargs, started, exc, None)
            if reject is not None and reject(result):
                return cont(fn, args, kwargs, started, None, result)
            policy._first_try += 1
            return result

        return wrapper

    # -- tenacity-style blocks -----------------------------------------------------------

    def __iter__(self) -> Iterator[AttemptManager]:
        retrying = self._retrying
        retrying.begin()
        rs = self._state(retrying, None, (), {}, self._now())
        if self.budget is not None:
            self.budget.deposit()
        while True:
            try:
                do = retrying.iter(rs)
            except BaseException:
                self._ended_by_error(rs)
                raise
            if isinstance(do, DoAttempt):
                yield AttemptManager(retry_state=rs)
            elif isinstance(do, DoSleep):
                rs.prepare_for_next_attempt()
                self._sleep(float(do))
            else:
                self._finish(rs, do)
                return

    async def __aiter__(self) -> AsyncIterator[AttemptManager]:
        retrying = self._async_retrying
        retrying.begin()
        rs = self._state(retrying, None, (), {}, self._now())
        if self.budget is not None:
            self.budget.deposit()
        while True:
            try:
                do = await retrying.iter(rs)
            except BaseException:
                self._ended_by_error(rs)
                raise
            if isinstance(do, DoAttempt):
                yield AttemptManager(retry_state=rs)
            elif isinstance(do, DoSleep):
                rs.prepare_for_next_attempt()
                await self._asleep(float(do))
            else:
                self._finish(rs, do)
                return

    # -- tenacity interop ----------------------------------------------------------------

    @overload
    def as_tenacity(self, *, asyncio: Literal[False] = False) -> Retrying: ...
    @overload
    def as_tenacity(self, *, asyncio: Literal[True]) -> AsyncRetrying: ...
    def as_tenacity(self, *, asyncio: bool = False) -> Retrying | AsyncRetrying:
        """An equivalent tenacity ``Retrying`` (or ``AsyncRetrying``) object.

        Same retry predicate, waits (backoff, jitter, Retry-After), attempts,
        deadline, budget, clock, exhaustion behaviour and metrics.
        """
        if asyncio:
            return cast(AsyncRetrying, self._build(AsyncRetrying, sleep=self._asleep))
        return cast(Retrying, self._build(Retrying, sleep=self._sleep))

    def close(self) -> None:
        """Stop publishing this policy's metrics."""
        self._publication.remove()

    def __repr__(self) -> str:
        return (
            f"Retry({self.name!r}, attempts={self.attempts}, deadline={self.deadline}, "
            f"backoff={self.backoff!r})"
        )
