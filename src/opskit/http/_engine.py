"""The sans-IO core both transports share: configuration, decisions, one call's flow.

:meth:`Engine.flow` is a generator (as httpx's ``Auth.auth_flow``): it yields
what to do next and receives what happened, and returns the response. The
sync and async transports are thin loops that do the I/O of each step:

- ``(ACQUIRE, key, timeout)``: wait for the limiter; send back whether it admitted.
- ``(ATTEMPT, deadline, hedge, breaker)``: one attempt (with hedges when ``hedge``
  is set) through ``breaker`` (if any) and the attempt timeout; send back
  ``(response, error, hedged)``.
- ``(SLEEP, seconds, response, run)``: close ``response`` (if any), then sleep
  through the retry run ``run``; send back ``None``.

Nothing here sleeps, reads a socket or starts a task.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Collection, Generator, Iterable
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from opskit._core.clock import MONOTONIC, Clock
from opskit._core.telemetry import Metric, get_logger, publish
from opskit.breaker import CircuitBreaker, CircuitOpenError
from opskit.http._errors import AttemptTimeout, TotalTimeout
from opskit.http._hedge import Hedge
from opskit.ratelimit import RateLimiter
from opskit.retry import Retry, RetryRun, retry_after_from
from opskit.tenancy import to_headers

_log = get_logger("http")

ACQUIRE, ATTEMPT, SLEEP = 0, 1, 2

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RETRY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
#: Statuses whose Retry-After is honoured (as urllib3's Retry).
RETRY_AFTER_STATUSES = frozenset({413, 429, 503})
#: Failures before the request was sent: retried for any method.
NOT_SENT: tuple[type[BaseException], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)

CALL_OUTCOMES = ("ok", "retried", "hedged", "rejected", "timeout", "error")
ATTEMPT_OUTCOMES = ("ok", "status", "error", "timeout", "rejected", "cancelled")

Outcome = tuple["httpx.Response | None", "BaseException | None", bool]
Flow = Generator[tuple[Any, ...], Any, httpx.Response]


class ServerStatus(Exception):
    """Raised inside the breaker's call for a 5xx, so the breaker counts a failure."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _seconds(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be None or seconds > 0, not {value!r}")
    return float(value)


def _statuses(value: Any) -> frozenset[int]:
    try:
        codes = frozenset(value)
    except TypeError:
        raise ValueError(f"retry_statuses must be a collection of ints, not {value!r}") from None
    for c in codes:
        if isinstance(c, bool) or not isinstance(c, int) or not 100 <= c <= 599:
            raise ValueError(f"retry_statuses holds {c!r}, not an HTTP status code (100-599)")
    return codes


def _methods(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        raise ValueError(f"retry_methods must be a collection of method names, not {value!r}")
    try:
        methods = list(value)
    except TypeError:
        raise ValueError(f"retry_methods must be a collection of strings, not {value!r}") from None
    for m in methods:
        if not isinstance(m, str) or not m:
            raise ValueError(f"retry_methods holds {m!r}, not a method name")
    return frozenset(m.upper() for m in methods)


def _default_key(request: httpx.Request) -> str:
    return request.url.host


def not_sent(error: BaseException) -> bool:
    """Whether ``error`` happened before the request reached the server."""
    return isinstance(error, NOT_SENT) or (
        isinstance(error, (AttemptTimeout, TotalTimeout)) and isinstance(error.__cause__, NOT_SENT)
    )


class Engine:
    """Configuration and decisions of one transport (sync or async alike)."""

    def __init__(
        self,
        *,
        name: str,
        total_timeout: float | None,
        limiter: RateLimiter | None,
        limiter_key: Callable[[httpx.Request], str] | None,
        retry: Retry | None,
        hedge: Hedge | None,
        breaker: CircuitBreaker | None,
        breaker_for: Callable[[str], CircuitBreaker] | None,
        attempt_timeout: float | None,
        retry_statuses: Collection[int],
        retry_methods: Collection[str],
        propagate_tenant: bool,
        registry: CollectorRegistry | None,
        clock: Clock | None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, not {name!r}")
        if limiter is not None and not isinstance(limiter, RateLimiter):
            raise ValueError(f"limiter must be an opskit.ratelimit.RateLimiter, not {limiter!r}")
        if limiter_key is not None and not callable(limiter_key):
            raise ValueError(f"limiter_key must be callable(request) -> str, not {limiter_key!r}")
        if retry is not None and not isinstance(retry, Retry):
            raise ValueError(f"retry must be an opskit.retry.Retry, not {retry!r}")
        if hedge is not None and not isinstance(hedge, Hedge):
            raise ValueError(f"hedge must be an opskit.http.Hedge, not {hedge!r}")
        if breaker is not None and breaker_for is not None:
            raise ValueError("pass breaker or breaker_for, not both")
        if breaker is not None and not isinstance(breaker, CircuitBreaker):
            raise ValueError(f"breaker must be an opskit.breaker.CircuitBreaker, not {breaker!r}")
        if breaker_for is not None and not callable(breaker_for):
            raise ValueError(
                f"breaker_for must be callable(host) -> CircuitBreaker, not {breaker_for!r}"
            )
        self.name = name
        self.total_timeout = _seconds("total_timeout", total_timeout)
        self.attempt_timeout = _seconds("attempt_timeout", attempt_timeout)
        self.limiter = limiter
        self.limiter_key = limiter_key if limiter_key is not None else _default_key
        self.retry = retry
        self.hedge = hedge
        self.breaker = breaker
        self.breaker_for = breaker_for
        self.retry_statuses = _statuses(retry_statuses)
        self.retry_methods = _methods(retry_methods)
        self.propagate_tenant = bool(propagate_tenant)
        self._tenant_headers = to_headers if self.propagate_tenant else None
        if clock is None:
            clock = retry.clock if retry is not None else MONOTONIC
        self.clock = clock
        self._now = clock.monotonic
        self._result_check = retry.retry_if_result if retry is not None else None
        # The result check's verdict on each response, so the user's check runs once
        # per response (counting, hedge choice and the retry decision all ask).
        self._verdicts: weakref.WeakKeyDictionary[httpx.Response, bool] = (
            weakref.WeakKeyDictionary()
        )
        self._breakers: dict[str, CircuitBreaker] = {}
        self._breakers_lock = threading.Lock()
        self.calls = dict.fromkeys(CALL_OUTCOMES, 0)
        self.attempts = dict.fromkeys(ATTEMPT_OUTCOMES, 0)
        self._publication = publish(self._metrics, registry)

    # -- decisions ---------------------------------------------------------------------

    def breaker_of(self, request: httpx.Request) -> CircuitBreaker | None:
        """The breaker for this request: the one breaker, or ``breaker_for(host)`` (cached)."""
        if self.breaker is not None or self.breaker_for is None:
            return self.breaker
        host = request.url.host
        found = self._breakers.get(host)
        if found is None:
            with self._breakers_lock:
                found = self._breakers.get(host)
                if found is None:
                    found = self.breaker_for(host)
                    if not isinstance(found, CircuitBreaker):
                        raise TypeError(
                            f"breaker_for returned {type(found).__name__}, not a CircuitBreaker"
                        )
                    self._breakers[host] = found
        return found

    def budget(self, deadline: float | None) -> tuple[float | None, bool]:
        """Seconds the next attempt may take, and whether the total deadline binds it."""
        limit = self.attempt_timeout
        if deadline is None:
            return limit, False
        left = deadline - self._now()
        if limit is None or left < limit:
            return max(left, 0.0), True
        return limit, False

    def timeout_error(self, total: bool, request: httpx.Request) -> AttemptTimeout | TotalTimeout:
        host = request.url.host
        if total:
            return TotalTimeout(self.name, host, self.total_timeout or 0.0, request=request)
        return AttemptTimeout(self.name, host, self.attempt_timeout or 0.0, request=request)

    def rejects(self, response: httpx.Response) -> bool:
        """Whether ``response`` is a retryable status or fails the result check.

        The check runs once per response; later questions read its verdict.
        """
        if response.status_code in self.retry_statuses:
            return True
        check = self._result_check
        if check is None:
            return False
        verdicts = self._verdicts
        verdict = verdicts.get(response)
        if verdict is None:
            verdict = verdicts[response] = bool(check(response))
        return verdict

    def attempted(
        self, response: httpx.Response | None, error: BaseException | None
    ) -> Exception | None:
        """Count one attempt's outcome.

        Returns the exception of a result check that raised: the transport closes
        the response and takes that exception as the attempt's error (so a buggy
        check neither leaks the connection nor is mistaken for a verdict).
        """
        if error is None:
            assert response is not None
            try:
                bad = response.status_code in self.retry_statuses or (
                    self._result_check is not None and self.rejects(response)
                )
            except Exception as exc:
                self.attempts["error"] += 1
                return exc
            self.attempts["status" if bad else "ok"] += 1
        elif isinstance(error, CircuitOpenError):
            self.attempts["rejected"] += 1
        elif isinstance(error, httpx.TimeoutException):
            self.attempts["timeout"] += 1
        else:
            self.attempts["error"] += 1
        return None

    def usable(self, response: httpx.Response | None, error: BaseException | None) -> bool:
        return error is None and response is not None and not self.rejects(response)

    def _raised(self, error: BaseException) -> None:
        if isinstance(error, CircuitOpenError):
            self.calls["rejected"] += 1
        elif isinstance(error, httpx.TimeoutException):
            self.calls["timeout"] += 1
        else:
            self.calls["error"] += 1

    # -- one call --------------------------------------------------------------------------

    def flow(self, request: httpx.Request) -> Flow:
        """The steps of one call; see the module's docstring."""
        now = self._now
        deadline = None if self.total_timeout is None else now() + self.total_timeout
        if self.limiter is not None:
            wait_limit = None if deadline is None else self.total_timeout
            if not (yield (ACQUIRE, self.limiter_key(request), wait_limit)):
                self.calls["timeout"] += 1
                raise self.timeout_error(True, request)
        if self._tenant_headers is not None:
            for key, value in self._tenant_headers().items():
                if key not in request.headers:
                    request.headers[key] = value
        # Only a body of bytes can be sent again (not a one-shot stream).
        again = isinstance(request.stream, httpx.ByteStream)
        may_retry = again and (
            request.method in self.retry_methods or "idempotency-key" in request.headers
        )
        hedge = self.hedge if may_retry else None
        run: RetryRun | None = self.retry.begin() if self.retry is not None else None
        breaker = self.breaker if self.breaker_for is None else self.breaker_of(request)
        retried = False
        # The first attempt's deadline check is needed only after a limiter wait.
        check_deadline = deadline is not None and self.limiter is not None
        while True:
            if check_deadline and deadline - now() <= 0:  # type: ignore[operator]
                if run is not None:
                    run.failed()
                self.calls["timeout"] += 1
                raise self.timeout_error(True, request)
            outcome: Outcome = yield (ATTEMPT, deadline, hedge, breaker)
            response, error, hedged = outcome
            retry_after: float | None = None
            if error is None:
                assert response is not None
                if response.status_code not in self.retry_statuses and (
                    self._result_check is None or not self.rejects(response)
                ):
                    if run is not None:
                        run.succeeded()
                    self.calls["hedged" if hedged else "retried" if retried else "ok"] += 1
                    return response
                retryable = may_retry
                if response.status_code in RETRY_AFTER_STATUSES:
                    retry_after = retry_after_from(response, now=self.clock.time())
                what: Any = response.status_code
            else:
                if isinstance(error, (CircuitOpenError, TotalTimeout)):
                    retryable = False
                else:
                    known = isinstance(error, AttemptTimeout) or (
                        self.retry is not None and self.retry.retryable(error)
                    )
                    retryable = known and again and (may_retry or not_sent(error))
                what = type(error).__name__
            wait = None
            if run is not None:
                if not retryable:
                    run.failed()
                else:
                    limit = None if deadline is None else deadline - now()
                    wait = run.next_wait(
                        retry_after=retry_after,
                        limit=limit,
                        error=f"HTTP {what}" if error is None else error,
                        quiet=True,  # the http.retry line below says it all
                    )
            if wait is None:
                if error is not None:
                    self._raised(error)
                    raise error
                self.calls["hedged" if hedged else "retried" if retried else "ok"] += 1
                assert response is not None
                return response
            assert run is not None and self.retry is not None
            _log.info(
                "http.retry",
                client=self.name,
                host=request.url.host,
                **({"status": what} if error is None else {"error": what}),
                wait=round(wait, 6),
                retry=self.retry.name,
                attempt=run.attempt - 1,
            )
            retried = True
            check_deadline = deadline is not None
            yield (SLEEP, wait, response, run)

    # -- telemetry ---------------------------------------------------------------------

    def hedging(self, request: httpx.Request) -> None:
        _log.info("http.hedge", client=self.name, host=request.url.host)

    def _metrics(self) -> Iterable[Metric]:
        labels = {"client": self.name}
        for outcome, n in list(self.calls.items()):
            yield Metric("opskit_http_requests_total", "counter",
                         "Calls through an opskit.http transport, by how they ended.", n,
                         {**labels, "outcome": outcome})  # fmt: skip
        for outcome, n in list(self.attempts.items()):
            yield Metric("opskit_http_attempts_total", "counter",
                         "Attempts (retries and hedges included), by outcome.", n,
                         {**labels, "outcome": outcome})  # fmt: skip

    def close(self) -> None:
        self._publication.remove()

    def describe(self) -> str:
        parts = [f"name={self.name!r}"]
        if self.total_timeout is not None:
            parts.append(f"total_timeout={self.total_timeout:g}")
        if self.limiter is not None:
            parts.append(f"limiter={self.limiter.name!r}")
        if self.retry is not None:
            parts.append(f"retry={self.retry.name!r}")
        if self.hedge is not None:
            parts.append(repr(self.hedge))
        if self.breaker is not None:
            parts.append(f"breaker={self.breaker.name!r}")
        elif self.breaker_for is not None:
            parts.append("breaker_for=...")
        if self.attempt_timeout is not None:
            parts.append(f"attempt_timeout={self.attempt_timeout:g}")
        return ", ".join(parts)
