"""``ResilientTransport``: the blocking I/O of each step of :meth:`Engine.flow`.

A blocking call cannot be cancelled from outside, so the attempt timeout is
applied where httpcore reads it: each phase's socket timeout (connect,
write, pool, read) is capped at the time the attempt has left, and an
exchange that still returns late is closed and counts as timed out. Once
the response headers are in, the caps are lifted again (httpcore reads the
request's timeouts on every read), so the body is read under the client's
own timeouts. Hedges run on a small thread pool of the transport's own.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import threading
import time
from collections.abc import Callable, Collection
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

__all__ = ["ResilientTransport"]

_PHASE: dict[type[BaseException], str] = {
    httpx.ConnectTimeout: "connect",
    httpx.ReadTimeout: "read",
    httpx.WriteTimeout: "write",
    httpx.PoolTimeout: "pool",
}
_PHASES = ("connect", "read", "write", "pool")
#: Threads for hedged attempts, per transport.
HEDGE_THREADS = 16


class ResilientTransport(httpx.BaseTransport):
    """An httpx transport composing total timeout, limiter, retry, hedging, breaker
    and attempt timeout around an inner transport (outermost first).

    ``httpx.Client(transport=ResilientTransport(...))``; the arguments are
    :class:`AsyncResilientTransport`'s. See ``docs/http.md``.
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
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
        if transport is not None and not isinstance(transport, httpx.BaseTransport):
            raise ValueError(
                f"transport must be an httpx.BaseTransport, not {type(transport).__name__}"
            )
        self._engine = Engine(
            name=name, total_timeout=total_timeout, limiter=limiter, limiter_key=limiter_key,
            retry=retry, hedge=hedge, breaker=breaker, breaker_for=breaker_for,
            attempt_timeout=attempt_timeout, retry_statuses=retry_statuses,
            retry_methods=retry_methods, propagate_tenant=propagate_tenant,
            registry=registry, clock=clock,
        )  # fmt: skip
        self.transport = httpx.HTTPTransport() if transport is None else transport
        self._send = self.transport.handle_request
        self._pool: cf.ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._engine.name

    # -- the steps' I/O -----------------------------------------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
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
                        response_, error = self._attempt(request, step[1], breaker)
                        reply = (response_, error, False)
                    else:
                        reply = self._hedged(request, step[1], breaker, hedge)
                elif kind == ACQUIRE:
                    limiter = engine.limiter
                    assert limiter is not None
                    try:
                        limiter.acquire(step[1], timeout=step[2])
                    except RateLimitExceeded:
                        reply = False
                    else:
                        reply = True
                else:  # SLEEP: close the failed attempt's response first
                    if step[2] is not None:
                        step[2].close()
                    step[3].sleep(step[1])
                    reply = None
        finally:
            flow.close()

    def _exchange(
        self, request: httpx.Request, budget: float | None, total: bool, trip: bool
    ) -> httpx.Response:
        """The inner transport under the attempt timeout (up to the response headers)."""
        if budget is None:
            response = self._send(request)
        else:
            original: dict[str, Any] = request.extensions.get("timeout") or {}
            capped: dict[str, Any] = {}
            for phase in _PHASES:
                mine = original.get(phase)
                capped[phase] = budget if mine is None or mine > budget else mine
            # A shallow copy sharing the body stream (copy.copy would detach it).
            attempt = object.__new__(httpx.Request)
            attempt.__dict__.update(request.__dict__)
            attempt.extensions = {**request.extensions, "timeout": capped}
            started = time.monotonic()
            try:
                response = self._send(attempt)
            except httpx.TimeoutException as exc:
                phase_ = _PHASE.get(type(exc))
                theirs = original.get(phase_) if phase_ is not None else None
                if phase_ is not None and (theirs is None or capped[phase_] < theirs):
                    raise self._engine.timeout_error(total, request) from exc
                raise
            # From the headers on, the body is read under the client's own timeouts.
            for phase in _PHASES:
                capped[phase] = original.get(phase)
            if time.monotonic() - started > budget:
                response.close()
                raise self._engine.timeout_error(total, request)
        if trip and response.status_code >= 500:
            raise ServerStatus(response)
        return response

    def _attempt(
        self, request: httpx.Request, deadline: float | None, breaker: CircuitBreaker | None
    ) -> tuple[httpx.Response | None, Exception | None]:
        """One attempt through the breaker; its outcome, never raising an Exception."""
        engine = self._engine
        budget, total = engine.budget(deadline)
        response: httpx.Response | None = None
        error: Exception | None = None
        try:
            if breaker is None:
                response = self._exchange(request, budget, total, False)
            else:
                response = breaker.call(self._exchange, request, budget, total, True)
        except ServerStatus as failed:
            response = failed.response
        except Exception as exc:
            error = exc
        except BaseException:
            engine.attempts["cancelled"] += 1
            raise
        check_failed = engine.attempted(response, error)
        if check_failed is not None:  # the result check raised: that is the attempt's error
            assert response is not None
            response.close()
            return None, check_failed
        return response, error

    def _threads(self) -> cf.ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._pool_lock:
                pool = self._pool
                if pool is None:
                    pool = self._pool = cf.ThreadPoolExecutor(
                        HEDGE_THREADS, thread_name_prefix=f"opskit-http-{self.name}"
                    )
        return pool

    def _hedged(
        self,
        request: httpx.Request,
        deadline: float | None,
        breaker: CircuitBreaker | None,
        hedge: Hedge,
    ) -> Outcome:
        """The first attempt, and hedges after ``hedge.after``; the first usable wins.

        Every attempt runs on the transport's threads (the caller's thread waits,
        so it can start hedges); a losing attempt's response is closed as soon
        as it returns.
        """
        engine = self._engine
        pool = self._threads()
        futures: list[cf.Future[tuple[httpx.Response | None, Exception | None]]] = []

        def start() -> None:
            if futures:
                engine.hedging(request)
            context = contextvars.copy_context()
            futures.append(pool.submit(context.run, self._attempt, request, deadline, breaker))

        start()
        pending = set(futures)
        winner: cf.Future[Any] | None = None
        last: cf.Future[Any] | None = None
        try:
            while True:
                more = len(futures) <= hedge.max_extra and engine.budget(deadline)[0] != 0.0
                done, pending = cf.wait(
                    pending, timeout=hedge.after if more else None, return_when=cf.FIRST_COMPLETED
                )
                for future in sorted(done, key=futures.index):
                    response, error = future.result()
                    if engine.usable(response, error):
                        winner = future
                        return response, error, future is not futures[0]
                    if last is not None and last.result()[0] is not None:
                        last.result()[0].close()
                    last = future
                if not pending and not more:
                    assert last is not None
                    winner = last
                    response, error = last.result()
                    return response, error, last is not futures[0]
                if more:
                    start()
                    pending.add(futures[-1])
        finally:
            for future in futures:
                if future is not winner and not future.cancel():
                    future.add_done_callback(_close_loser)

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the inner transport and stop publishing this transport's metrics."""
        self._engine.close()
        pool = self._pool
        if pool is not None:
            pool.shutdown(wait=True)
        self.transport.close()

    def __enter__(self) -> ResilientTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResilientTransport({self._engine.describe()})"


def _close_loser(future: cf.Future[tuple[httpx.Response | None, Exception | None]]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    response = future.result()[0]
    if response is not None:
        response.close()
