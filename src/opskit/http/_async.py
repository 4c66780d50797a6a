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
from opskit.ratelimit import RateLimiter, RateLimitExceeded
from opskit.retry import Retry

__all__ = ["AsyncResilientTransport"]


async def _within(coro: Coroutine[Any, Any, httpx.Response], seconds: float) -> httpx.Response:
    """``await coro``, or raise ``TimeoutError`` after ``seconds``."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await coro
    else:  # pragma: no cover - Python 3.10
        return await asyncio.wait_for(coro, seconds)


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

    @property
    def name(self) -> str:
        return self._engine.name

    # -- the steps' I/O -----------------------------------------------------------------

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
                    breaker = engine.breaker_of(request)
                    hedge: Hedge | None = step[2]
                    if hedge is None:
                        response_, error = await self._attempt(request, step[1], breaker)
                        reply = (response_, error, False)
                    else:
                        reply = await self._hedged(request, step[1], breaker, hedge)
                elif kind == ACQUIRE:
                    limiter = engine.limiter
                    assert limiter is not None
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
        else:
            try:
                response = await _within(self._send(request), budget)
            except TimeoutError:
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
                response = await breaker.call_async(self._exchange, request, budget, total, True)
        except ServerStatus as failed:
            response = failed.response
        except asyncio.CancelledError:
            engine.attempts["cancelled"] += 1
            raise
        except Exception as exc:
            error = exc
        engine.attempted(response, error)
        return response, error

    async def _hedged(
        self,
        request: httpx.Request,
        deadline: float | None,
        breaker: CircuitBreaker | None,
        hedge: Hedge,
    ) -> Outcome:
        """The first attempt, and hedges after ``hedge.after``; the first usable wins."""
        engine = self._engine
        tasks: list[asyncio.Task[tuple[httpx.Response | None, Exception | None]]] = []
        loop = asyncio.get_running_loop()

        def start() -> None:
            if tasks:
                engine.hedging(request)
            # Each attempt runs in a task of its own, in a copy of the caller's context.
            tasks.append(loop.create_task(self._attempt(request, deadline, breaker)))

        start()
        pending = set(tasks)
        winner: asyncio.Task[Any] | None = None
        last: asyncio.Task[Any] | None = None
        try:
            while True:
                more = len(tasks) <= hedge.max_extra and engine.budget(deadline)[0] != 0.0
                done, pending = await asyncio.wait(
                    pending,
                    timeout=hedge.after if more else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for task in sorted(done, key=tasks.index):
                    response, error = task.result()
                    if engine.usable(response, error):
                        winner = task
                        return response, error, task is not tasks[0]
                    if last is not None and last.result()[0] is not None:
                        await last.result()[0].aclose()
                    last = task
                if not pending and not more:
                    assert last is not None
                    winner = last
                    response, error = last.result()
                    return response, error, last is not tasks[0]
                if more:
                    start()
                    pending.add(tasks[-1])
        finally:
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
