"""``TenantMiddleware`` for PEP 3333 WSGI: the scope lasts until the response is closed.

The app, every step of its response iterable and its ``close()`` run inside one
``contextvars.Context`` copied for the request, with the tenant set in it. The
server thread's own context is never changed, so no tenant can survive into
the next request on that thread, even when a server forgets ``close()``; the
middleware always forwards ``close()`` to the app's iterable.

::

    from opskit.tenancy import resolvers
    from opskit.tenancy.wsgi import TenantMiddleware

    app.wsgi_app = TenantMiddleware(app.wsgi_app, resolver=resolvers.subdomain("example.com"))
"""

from __future__ import annotations

import contextvars
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from prometheus_client import CollectorRegistry

from opskit._core.clock import Clock
from opskit._core.wsgi import Environ, StartResponse, WSGIApp, problem_response
from opskit.tenancy import _gate
from opskit.tenancy._context import _enter
from opskit.tenancy._errors import InvalidTenant
from opskit.tenancy._tenant import Tenant
from opskit.tenancy.resolvers import Found, Resolver

__all__ = ["TenantMiddleware"]


class _InScope:
    """The app's response iterable, every step of it run in the request's context."""

    __slots__ = ("_ctx", "_it", "_result")

    def __init__(self, ctx: contextvars.Context, result: Iterable[bytes]) -> None:
        self._ctx = ctx
        self._result = result
        self._it: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._it is None:
            self._it = self._ctx.run(iter, self._result)
        return self._ctx.run(next, self._it)

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        if close is not None:
            self._ctx.run(close)


class _SizedInScope(_InScope):
    """For a response of known length (a list): servers use ``len()`` to set
    Content-Length for a one-item body (PEP 3333)."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._result)  # type: ignore[arg-type]


class TenantMiddleware:
    """Resolve each request's tenant and run the app in its scope (see the ASGI
    middleware for the answers: 400, 401, 404, 503 as problem+json).

    ``lookup`` must be synchronous here; it runs in a helper thread so that a
    call slower than ``lookup_timeout`` answers 503 on time, and concurrent
    requests for one uncached id wait for the same call.
    """

    def __init__(
        self,
        app: WSGIApp,
        resolver: Resolver | Callable[..., Found] | None = None,
        lookup: Callable[[str], Any] | None = None,
        required: bool = True,
        exempt: Iterable[str] = (),
        lookup_ttl: float = 30.0,
        lookup_timeout: float = 5.0,
        id_pattern: str | re.Pattern[str] | None = None,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        *,
        cache_size: int = 10_000,
    ) -> None:
        if lookup is not None and _gate.is_async(lookup):
            raise TypeError("the WSGI middleware needs a synchronous lookup")
        self.app = app
        self._gate = _gate.Gate(
            resolver=resolver,
            lookup=lookup,
            required=required,
            exempt=exempt,
            lookup_ttl=lookup_ttl,
            lookup_timeout=lookup_timeout,
            id_pattern=id_pattern,
            clock=clock,
            registry=registry,
            cache_size=cache_size,
        )
        self._required = required
        self._inflight: dict[str, Future[Tenant | int]] = {}
        self._lock = threading.Lock()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        gate = self._gate
        counts = gate.counts
        if gate.exempt is not None and gate.exempt(environ.get("PATH_INFO") or ""):
            counts[_gate.EXEMPT] += 1
            return self.app(environ, start_response)
        try:
            found = gate.resolver.wsgi(environ)
        except InvalidTenant:
            decided: Tenant | str | int = _gate.INVALID
        except Exception as exc:
            decided = gate.resolver_failed(exc)
        else:
            decided = gate.decide(found)
        if isinstance(decided, str):
            decided = self._lookup(decided)
        if not isinstance(decided, Tenant):
            if decided == _gate.MISSING and not self._required:
                counts[_gate.MISSING] += 1
                return self.app(environ, start_response)
            return self._reject(decided, start_response)
        counts[_gate.RESOLVED] += 1
        ctx = contextvars.copy_context()
        ctx.run(_enter, decided)
        result = ctx.run(self.app, environ, start_response)
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(result, file_wrapper):
            return result  # a file the server sends itself: no app code runs any more
        if hasattr(result, "__len__"):
            return _SizedInScope(ctx, result)
        return _InScope(ctx, result)

    def _reject(self, outcome: int, start_response: StartResponse) -> Iterable[bytes]:
        status, detail = self._gate.reject(outcome)
        return problem_response(start_response, status, detail=detail)

    def _lookup(self, tenant_id: str) -> Tenant | int:
        with self._lock:
            flight = self._inflight.get(tenant_id)
            if flight is None:
                flight = Future()
                self._inflight[tenant_id] = flight
                # A daemon thread per call (misses only): a hung lookup never blocks
                # the server's thread past the timeout, nor the interpreter's exit.
                threading.Thread(
                    target=self._fetch,
                    args=(tenant_id, flight),
                    name="opskit-tenancy-lookup",
                    daemon=True,
                ).start()
        try:
            return flight.result(timeout=self._gate.lookup_timeout)
        except FutureTimeout:
            return self._gate.failed("timeout")

    def _fetch(self, tenant_id: str, flight: Future[Tenant | int]) -> None:
        gate = self._gate
        lookup = gate.lookup
        assert lookup is not None
        try:
            outcome: Tenant | int = gate.settle(tenant_id, lookup(tenant_id))
        except Exception as exc:
            outcome = gate.failed("error", exc)
        finally:
            with self._lock:
                if self._inflight.get(tenant_id) is flight:
                    del self._inflight[tenant_id]
        flight.set_result(outcome)
