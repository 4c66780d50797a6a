"""``AsyncResilientTransport``: the async I/O of each step of :meth:`Engine.flow`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Collection, Coroutine
from types import TracebackType
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from opskit._core.clock import Clock
from opskit.breaker import CircuitBreaker
from opskit.http._engine import (
    ACQUIRE,
    ATTEMPT,
    RETRY_METHODS,
    RETRY_STATUSES,
    Engine,
    Outcome,
    ServerStatus,
)
from opskit.http._hedge import Hedge
from opskit.http._timers import Cancellable, Wheel
from opskit.ratelimit import RateLimiter, RateLimitExceeded
from opskit.retry import Retry

__all__ = ["AsyncResilientTransport"]


class _Expiry:
    """A timer that cancels the running task, as ``asyncio.timeout`` does, without
    its context-manager machinery (one object and one timer handle per attempt)."""

    __slots__ = ("fired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.fired = False

    def __call__(self) -> None:
        self.fired = True
        self.task.cancel()


class _Wheels:
    """The timer wheels of one event loop: attempt timeouts, hedge delays."""

    __slots__ = ("attempts", "hedges", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.attempts = Wheel(loop)
        self.hedges = Wheel(loop)


class AsyncResilientTransport(httpx.AsyncBaseTransport):
    """An httpx async transport composing total timeout, limiter, retry, hedging,
    breaker and attempt timeout around an inner transport (outermost first).

    ``httpx.AsyncClient(transport=AsyncResilientTransport(...))``; see
    ``docs/http.md`` for every argument. Runs on asyncio.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        name: str = "default",
        total_timeout: float | None = None,
        limiter: RateLimiter | None = None,
        limiter_key: Callable[[httpx.Request], str] | None = None,
        retry: Retry | None = None,
        hedge: Hedge | None = None,
        breaker: CircuitBreaker | None = None,
        breaker_for: Callable[[str], CircuitBreaker] | None = None,
        attempt_timeout: float | None = None,
        retry_statuses: Collection[int] = RETRY_STATUSES,
        retry_methods: Collection[str] = RETRY_METHODS,
        propagate_tenant: bool = True,
        registry: CollectorRegistry | None = None,
        clock: Clock | None = None,
    ) -> None:
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise ValueError(
                f"transport must be an httpx.AsyncBaseTransport, not {type(transport).__name__}"
            )
        self._engine = Engine(
            name=name, total_timeout=total_timeout, limiter=limiter, limiter_key=limiter_key,
            retry=retry, hedge=hedge, breaker=breaker, breaker_for=breaker_for,
            attempt_timeout=attempt_timeout, retry_statuses=retry_statuses,
            retry_methods=retry_methods, propagate_tenant=propagate_tenant,
            registry=registry, clock=clock,
        )  # fmt: skip
        self.transport = httpx.AsyncHTTPTransport() if transport is None else transport
        self._send = self.transport.handle_async_request
        self._wheels: _Wheels | None = None  # of the loop that ran the last request
        # Each breaker's public decorator around the exchange (its cheap closed path).
        self._guarded: dict[CircuitBreaker, Callable[..., Coroutine[Any, Any, httpx.Response]]] = {}

    @property
    def name(self) -> str:
        return self._engine.name

    # -- the steps' I/O -----------------------------------------------------------------

    def _wheels_of(self, loop: asyncio.AbstractEventLoop) -> _Wheels:
        wheels = self._wheels
        if wheels is None or wheels.loop is not loop:
            # Another loop (or the first request): wheels of its own. A wheel is only
            # touched by its loop's thread, so one left to an earlier loop stays sound.
            self._wheels = wheels = _Wheels(loop)
        return wheels

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        engine = self._engine
        flow = engine.flow(request)
        reply: Any = None
        try:
            while True:
                try:
                    step = flow.send(reply)
                except StopIteration as stop:
                    response: httpx.Response = stop.value
                    return response
                kind = step[0]
                if kind == ATTEMPT:
                    breaker: CircuitBreaker | None = step[3]
                    hedge: Hedge | None = step[2]
                    if hedge is None:
                        response_, error = await self._attempt(request, step[1], breaker)
                        reply = (response_, error, False)
                    else:
                        reply = await self._hedged(request, step[1], breaker, hedge)
                elif kind == ACQUIRE:
                    limiter = engine.limiter
                    assert limiter is not None
                    # An in-memory limiter answers at once: no coroutine unless it asks to wait.
                    if not limiter.store.is_async and limiter.hit(step[1]).allowed:
                        reply = True
                    else:
                        try:
                            await limiter.aacquire(step[1], timeout=step[2])
                        except RateLimitExceeded:
                            reply = False
                        else:
                            reply = True
                else:  # SLEEP: close the failed attempt's response first
                    if step[2] is not None:
                        await step[2].aclose()
                    await step[3].asleep(step[1])
                    reply = None
        finally:
            flow.close()

    async def _exchange(
        self, request: httpx.Request, budget: float | None, total: bool, trip: bool
    ) -> httpx.Response:
        """The inner transport under the attempt timeout (up to the response headers)."""
        if budget is None:
            response = await self._send(request)
        elif sys.version_info >= (3, 11):  # as asyncio.timeout, on the loop's timer wheel
            task = asyncio.current_task()
            assert task is not None
            wheel = self._wheels_of(asyncio.get_running_loop()).attempts
            cancelling = task.cancelling()
            expiry = _Expiry(task)
            handle = wheel.call_at(wheel.loop.time() + budget, expiry)
            try:
                response = await self._send(request)
            except asyncio.CancelledError:
                if expiry.fired and task.uncancel() <= cancelling:
                    raise self._engine.timeout_error(total, request) from None
                raise
            except TimeoutError:  # the inner transport's own timeout
                raise self._engine.timeout_error(total, request) from None
            finally:
                handle.cancel()
            if expiry.fired:  # fired as the answer came in: take the cancellation back
                task.uncancel()
        else:  # pragma: no cover - Python 3.10 has no Task.uncancel
            try:
                response = await asyncio.wait_for(self._send(request), budget)
            except asyncio.TimeoutError:  # not yet the builtin TimeoutError on 3.10
                raise self._engine.timeout_error(total, request) from None
        if trip and response.status_code >= 500:
            raise ServerStatus(response)
        return response

    async def _attempt(
        self, request: httpx.Request, deadline: float | None, breaker: CircuitBreaker | None
    ) -> tuple[httpx.Response | None, Exception | None]:
        """One attempt through the breaker; its outcome, never raising an Exception."""
        engine = self._engine
        budget, total = engine.budget(deadline)
        response: httpx.Response | None = None
        error: Exception | None = None
        try:
            if breaker is None:
                response = await self._exchange(request, budget, total, False)
            else:
                guarded = self._guarded.get(breaker)
                if guarded is None:
                    guarded = self._guarded.setdefault(breaker, breaker(self._exchange))
                response = await guarded(request, budget, total, True)
        except ServerStatus as failed:
            response = failed.response
        except asyncio.CancelledError:
            engine.attempts["cancelled"] += 1
            raise
        except Exception as exc:
            error = exc
        check_failed = engine.attempted(response, error)
        if check_failed is not None:  # the result check raised: that is the attempt's error
            assert response is not None
            await response.aclose()
            return None, check_failed
        return response, error

    async def _hedged(
        self,
        request: httpx.Request,
        deadline: float | None,
        breaker: CircuitBreaker | None,
        hedge: Hedge,
    ) -> Outcome:
        """The first attempt, and hedges after ``hedge.after``; the first usable wins.

        The first attempt runs in the caller's task, and a timer starts the
        hedges in tasks of their own: when the first attempt answers in time,
        hedging has cost one timer. A hedge that wins while the first attempt
        still runs interrupts it by cancelling the caller's task once (the way
        ``asyncio.timeout`` does), and that cancellation is taken back.
        """
        engine = self._engine
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None
        race = _Race()
        hedges = race.hedges

        def more() -> bool:
            return len(hedges) < hedge.max_extra and engine.budget(deadline)[0] != 0.0

        def start() -> None:
            engine.hedging(request)
            task = loop.create_task(self._attempt(request, deadline, breaker))
            task.add_done_callback(ended)
            hedges.append(task)

        def tick() -> None:
            race.timer = None
            if race.primary_done:
                return
            if more():
                start()
            if more():
                race.timer = wheel.call_at(loop.time() + hedge.after, tick)

        def ended(task: asyncio.Task[Any]) -> None:
            if race.primary_done or race.winner is not None or task.cancelled():
                return
            response, error = task.result()
            if engine.usable(response, error):
                race.winner = task
                me.cancel()  # interrupt the first attempt; taken back below
            elif more():
                start()  # an early failure starts the next hedge at once

        wheel = self._wheels_of(loop).hedges
        race.timer = wheel.call_at(loop.time() + hedge.after, tick)
        try:
            try:
                response, error = await self._attempt(request, deadline, breaker)
            except asyncio.CancelledError:
                won = race.winner
                race.primary_done = True
                if won is None or (sys.version_info >= (3, 11) and me.uncancel() > 0):
                    race.winner = None  # nobody takes the response: close it too
                    raise  # the caller was cancelled (too)
                response, error = won.result()
                return response, error, True
            race.primary_done = True
            if engine.usable(response, error) or (not hedges and not more()):
                return response, error, False
            return await self._race(race, (response, error, False), more, start, hedge)
        finally:
            race.primary_done = True
            if race.timer is not None:
                race.timer.cancel()
            if hedges:
                await self._reap(hedges, race.winner)

    async def _race(
        self,
        race: _Race,
        last: Outcome,
        more: Callable[[], bool],
        start: Callable[[], None],
        hedge: Hedge,
    ) -> Outcome:
        """The first attempt failed while hedges run: the first usable hedge wins;
        a failure starts the next hedge at once; else the last outcome."""
        engine = self._engine
        loop = asyncio.get_running_loop()
        hedges = race.hedges
        waiter: asyncio.Future[None] = loop.create_future()

        def wake(_: Any = None) -> None:
            if not waiter.done():
                waiter.set_result(None)

        for task in hedges:
            task.add_done_callback(wake)
        judged: list[asyncio.Task[Any]] = []
        latest: asyncio.Task[Any] | None = None
        while True:
            for task in hedges:
                if not task.done() or task in judged:
                    continue
                judged.append(task)
                response, error = task.result()
                if engine.usable(response, error):
                    race.winner = task
                    return response, error, True
                if last[0] is not None:
                    await last[0].aclose()
                last, latest = (response, error, True), task
            if len(judged) == len(hedges):
                if not more():
                    race.winner = latest  # its response goes to the caller
                    return last
                start()
                hedges[-1].add_done_callback(wake)
            timer = loop.call_later(hedge.after, wake) if more() else None
            try:
                await waiter
            finally:
                if timer is not None:
                    timer.cancel()
            waiter = loop.create_future()
            if timer is not None and not any(t.done() and t not in judged for t in hedges):
                start()  # the delay passed without an answer
                hedges[-1].add_done_callback(wake)

    @staticmethod
    async def _reap(tasks: list[asyncio.Task[Any]], winner: asyncio.Task[Any] | None) -> None:
        """Cancel the attempts still running; close every response but the winner's."""
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            if task is winner or task.cancelled() or task.exception() is not None:
                continue
            response, _error = task.result()
            if response is not None:
                await response.aclose()

    # -- lifecycle -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the inner transport and stop publishing this transport's metrics."""
        self._engine.close()
        await self.transport.aclose()

    def close(self) -> None:
        """Stop publishing metrics (``aclose`` also closes the inner transport)."""
        self._engine.close()

    async def __aenter__(self) -> AsyncResilientTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncResilientTransport({self._engine.describe()})"


class _Race:
    """The state of one hedged attempt, shared with the loop's callbacks."""

    __slots__ = ("hedges", "primary_done", "timer", "winner")

    def __init__(self) -> None:
        self.hedges: list[asyncio.Task[tuple[httpx.Response | None, Exception | None]]] = []
        self.winner: asyncio.Task[Any] | None = None
        self.primary_done = False
        self.timer: Cancellable | None = None
