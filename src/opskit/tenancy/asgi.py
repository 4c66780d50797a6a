"""``TenantMiddleware`` for ASGI: one tenant scope per request, gone when it ends.

Pure ASGI (no Starlette ``BaseHTTPMiddleware``). The scope is entered in the
middleware's own call, around ``await app(...)``, and left in its ``finally``:
the app's coroutine returns only after the last body chunk was sent (streamed
bodies included), and the ``finally`` runs as well when the app raises, the
client disconnects or the task is cancelled. Entry and exit happen in the same
task, so ``ContextVar.reset`` never crosses contexts, and the request's task is
the only context that ever saw the tenant.

::

    from opskit.tenancy import resolvers
    from opskit.tenancy.asgi import TenantMiddleware

    app = TenantMiddleware(app, resolver=resolvers.header("X-Tenant-ID"),
                           exempt=["/health*", "/metrics"])
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry

from opskit._core.asgi import ASGIApp, Receive, Scope, Send, send_problem
from opskit._core.clock import Clock
from opskit.tenancy import _gate
from opskit.tenancy._context import _LOG_ID, _TENANT, _restore
from opskit.tenancy._errors import InvalidTenant
from opskit.tenancy._tenant import Tenant
from opskit.tenancy.resolvers import Found, Resolver, _Header

__all__ = ["TenantMiddleware"]

_RESOLVED = _gate.RESOLVED
_EXEMPT = _gate.EXEMPT
_MISSING = _gate.MISSING


class TenantMiddleware:
    """Resolve each HTTP and websocket request's tenant and run the app in its scope.

    Answers ``application/problem+json``: a malformed id 400, no tenant (when
    ``required``) 401 "no tenant context", an id ``lookup`` does not know 404,
    ``lookup`` raising or slower than ``lookup_timeout`` 503. A websocket
    without a valid tenant is closed with code 1008 before it is accepted.
    ``exempt`` path globs (fnmatch: ``*`` crosses ``/``) pass with no tenant and
    are not resolved. ``lookup`` (sync, run in a thread, or async) maps an id to
    a ``Tenant`` or ``None``; its answers, misses too, are cached ``lookup_ttl``
    seconds on ``clock`` in a cache of ``cache_size`` ids, and concurrent
    requests for one uncached id share one call. Lifespan scopes pass untouched.
    """

    def __init__(
        self,
        app: ASGIApp,
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
        self.app = app
        self._gate = gate = _gate.Gate(
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
        self._resolve = gate.resolver.asgi
        self._mutates = gate.resolver.mutates
        self._exempt = gate.exempt
        self._decide = gate.decide
        # The fast path's state (a header resolver only): the header's raw name and
        # the Tenant for each raw value seen: for good without a lookup, else until
        # the lookup's cache entry expires (known tenants only; misses go the full way).
        resolver_ = gate.resolver
        self._fast_header: bytes | None = (
            resolver_.raw_name if isinstance(resolver_, _Header) else None
        )
        self._by_raw: dict[bytes, Tenant] = {}
        self._by_raw_get: Callable[[Any], Tenant | None] = self._by_raw.get
        self._by_raw_ttl: dict[bytes, tuple[float, Tenant]] = {}
        self._ttl_get: Callable[[Any], tuple[float, Tenant] | None] | None = (
            None if lookup is None else self._by_raw_ttl.get
        )
        self._monotonic = gate.clock.monotonic
        self._counts = gate.counts
        self._required = required
        self._async_lookup = lookup is not None and _gate.is_async(lookup)
        self._inflight: dict[str, asyncio.Future[Tenant | int]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        want = self._fast_header
        if want is not None and scope["type"] == "http":
            # The common case, with the fewest operations: a header resolver, no
            # lookup, and an id this middleware has seen before. Anything else
            # (a new id, a repeated header, an exempt path) takes the full path.
            raw = None
            for key, value in scope.get("headers", ()):
                if key == want:
                    if raw is not None:
                        raw = None
                        break
                    raw = value
            tenant = self._by_raw_get(raw)
            if tenant is None and self._ttl_get is not None:
                entry = self._ttl_get(raw)
                if entry is not None and entry[0] > self._monotonic():
                    tenant = entry[1]
            if tenant is not None and (
                self._exempt is None or not self._exempt(scope.get("path", ""))
            ):
                self._counts[0] += 1  # RESOLVED
                t_token = _TENANT.set(tenant)
                l_token = _LOG_ID.set(tenant.id)
                try:
                    await self.app(scope, receive, send)
                finally:
                    try:
                        _TENANT.reset(t_token)
                        _LOG_ID.reset(l_token)
                    except (ValueError, RuntimeError):  # pragma: no cover - same task
                        _restore(t_token, l_token)
                return
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        await self._full(kind, scope, receive, send)

    async def _full(self, kind: str, scope: Scope, receive: Receive, send: Send) -> None:
        counts = self._counts
        exempt = self._exempt
        if exempt is not None and exempt(scope.get("path") or ""):
            counts[_EXEMPT] += 1
            await self.app(scope, receive, send)
            return
        if self._mutates:
            scope = dict(scope)
        found: Found = None
        try:
            found = self._resolve(scope)
        except InvalidTenant:
            decided: Tenant | str | int = _gate.INVALID
        except Exception as exc:
            decided = self._gate.resolver_failed(exc)
        else:
            decided = self._decide(found)
        if isinstance(decided, str):
            decided = await self._lookup(decided)
        if not isinstance(decided, Tenant):
            if decided == _MISSING and not self._required:
                counts[_MISSING] += 1
                await self.app(scope, receive, send)
                return
            await self._reject(decided, kind, receive, send)
            return
        if self._fast_header is not None and isinstance(found, str):
            self._remember(found, decided)
        counts[_RESOLVED] += 1
        t_token = _TENANT.set(decided)
        l_token = _LOG_ID.set(decided.id)
        try:
            await self.app(scope, receive, send)
        finally:
            try:
                _TENANT.reset(t_token)
                _LOG_ID.reset(l_token)
            except (ValueError, RuntimeError):  # pragma: no cover - the same task
                _restore(t_token, l_token)

    def _remember(self, found: str, tenant: Tenant) -> None:
        """Let the fast path find ``tenant`` from the raw header value next time."""
        raw = found.encode("latin-1")
        gate = self._gate
        if self._ttl_get is None:
            by_raw = self._by_raw
            if len(by_raw) >= gate.cache_size:
                by_raw.clear()
            by_raw[raw] = tenant
            return
        entry = gate.cached(found)
        if entry is not None and entry[1] is tenant:
            by_ttl = self._by_raw_ttl
            if len(by_ttl) >= gate.cache_size:
                by_ttl.clear()
            by_ttl[raw] = (entry[0], tenant)

    async def _reject(self, outcome: int, kind: str, receive: Receive, send: Send) -> None:
        status, detail = self._gate.reject(outcome)
        try:
            if kind == "websocket":
                # Take the connect message so the app never sees this socket, then
                # refuse it before websocket.accept: policy violation.
                message = await receive()
                if message.get("type") == "websocket.connect":
                    await send({"type": "websocket.close", "code": 1008, "reason": detail})
                return
            await send_problem(send, status, detail=detail)
        except Exception:  # noqa: S110 - the client went away; nothing the middleware does raises
            pass

    async def _lookup(self, tenant_id: str) -> Tenant | int:
        loop = asyncio.get_running_loop()
        flight = self._inflight.get(tenant_id)
        if flight is None or flight.get_loop() is not loop:
            flight = loop.create_task(self._fetch(tenant_id))
            self._inflight[tenant_id] = flight
            flight.add_done_callback(lambda f: self._drop(tenant_id, f))
        # shield: a request cancelled while waiting does not cancel the shared call.
        return await asyncio.shield(flight)

    def _drop(self, tenant_id: str, flight: asyncio.Future[Tenant | int]) -> None:
        if self._inflight.get(tenant_id) is flight:
            del self._inflight[tenant_id]

    async def _call(self, tenant_id: str) -> object:
        lookup = self._gate.lookup
        assert lookup is not None
        if self._async_lookup:
            result = lookup(tenant_id)
        else:
            result = await asyncio.to_thread(lookup, tenant_id)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _fetch(self, tenant_id: str) -> Tenant | int:
        gate = self._gate
        try:
            result = await asyncio.wait_for(self._call(tenant_id), gate.lookup_timeout)
        except asyncio.TimeoutError:
            return gate.failed("timeout")
        except Exception as exc:
            return gate.failed("error", exc)
        return gate.settle(tenant_id, result)
