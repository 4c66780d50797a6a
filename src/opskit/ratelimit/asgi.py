"""Pure-ASGI rate limiting and IP filtering middleware (FastAPI, Starlette, Litestar, Django)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import MethodType
from typing import Any

from prometheus_client import CollectorRegistry

from opskit._core.asgi import ASGIApp, Message, Receive, Scope, Send, request_headers, send_problem
from opskit._core.clock import Clock
from opskit.ratelimit._keys import IP_PREFIX
from opskit.ratelimit._limiter import ConcurrencyLimiter
from opskit.ratelimit._middleware import Core, HeaderStyle, IPFilter, Rule

__all__ = ["IPFilterMiddleware", "RateLimitMiddleware", "Rule"]

_MISSING: Any = object()


def _counting_send(
    send: Send, extra: list[tuple[bytes, bytes]], count: Callable[[int], Awaitable[None]]
) -> Send:
    """``send`` for rules that count by status: ``count(status)`` is awaited when the
    response starts, before the start goes out, and ``extra`` headers are added to a
    copy of the start message.

    Counting before the response leaves (not after the app returns) matters:
    frameworks that finish work after sending (Django's ASGI handler closes the
    response in a thread) would otherwise let the client's next request be
    decided before this one was counted.
    """

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            await count(int(message["status"]))
            if extra:
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
        await send(message)

    return wrapped


class RateLimitMiddleware:
    """Limits requests by ``rules`` (first match wins); 429 problem+json when over."""

    def __init__(
        self,
        app: ASGIApp,
        rules: Sequence[Rule],
        *,
        store: Any = None,
        trusted_proxies: Iterable[str] = (),
        headers: HeaderStyle = "ietf",
        exempt: Sequence[str] = (),
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.app = app
        self.core = Core(rules, store=store, trusted_proxies=trusted_proxies, headers=headers,
                         exempt=exempt, clock=clock, registry=registry)  # fmt: skip
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        core = self.core
        path = scope["path"]
        route = core.routes.get(path if core.by_path else (scope["method"], path), _MISSING)
        if route is _MISSING:
            route = core.route(scope["method"], path)
        if route is None:
            await self.app(scope, receive, send)
            return
        index, hit, _, peer_keyed, sender = route
        client = scope.get("client")
        peer = client[0] if client else None
        if peer_keyed:
            key = None if peer is None else IP_PREFIX + peer  # ip_key(peer), inlined
        else:
            key = core.key(index, scope["method"], path, peer, lambda: request_headers(scope),
                           scope)  # fmt: skip
        if key is None:
            await self.app(scope, receive, send)
        elif hit is None:
            await self._limit(index, key, scope, receive, send)
        else:  # the plain case, kept short: every request counts, over the limit is 429
            d = hit(key)  # a plain tuple in Decision's order
            if not d[0]:  # d.allowed
                hdrs, body = core.rejection(index, d, d[4])  # d.retry_after
                await send_problem(send, 429, headers=hdrs, **body)
            elif sender is None:
                await self.app(scope, receive, send)
            else:
                await self.app(scope, receive, MethodType(sender, (send, d)))

    async def _limit(self, index: int, key: str, scope: Scope, receive: Receive, send: Send
                     ) -> None:  # fmt: skip
        """Concurrency limits, asynchronous stores, delay mode, counting by status."""
        core = self.core
        rule, limiter = core.rules[index], core.limiters[index]
        route = core.rule_routes[index]
        headers, sender = route.headers, route.sender
        if isinstance(limiter, ConcurrencyLimiter):
            slot = await limiter.atry_acquire(key)
            if slot is None:
                limiter.counts.add("limited")
                hdrs, body = core.rejection(index, None, 1.0)
                await send_problem(send, 429, headers=hdrs, **body)
                return
            try:
                await self.app(scope, receive, send)
            finally:
                await limiter.arelease(key, slot)
            return
        if rule.count == "all":
            d = await limiter.ahit(key)
            if not d.allowed:
                if rule.mode == "delay":
                    await self._sleep(core.next_delay(index, key))
                else:
                    hdrs, body = core.rejection(index, d, d.retry_after)
                    await send_problem(send, 429, headers=hdrs, **body)
                    return
            elif core.excess:
                core.allowed(index, key)
            await self.app(
                scope, receive, send if sender is None else MethodType(sender, (send, d))
            )
            return
        d = await limiter.apeek(key)
        if not d.allowed:  # a peek counts nothing: this 429 is counted here
            limiter.counts.add("limited")
            hdrs, body = core.rejection(index, d, d.retry_after)
            await send_problem(send, 429, headers=hdrs, **body)
            return

        async def count(status: int) -> None:
            if core.counts_status(index, status):
                await limiter.ahit(key)

        await self.app(scope, receive, _counting_send(send, headers(d) if headers else [], count))

    async def _sleep(self, seconds: float) -> None:
        if self.clock is not None:
            await self.clock.asleep(seconds)
        else:
            await asyncio.sleep(seconds)


class IPFilterMiddleware:
    """Allow/deny client networks (CIDR), globally and per path glob; 403 problem+json."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allow: Iterable[str] = (),
        deny: Iterable[str] = (),
        rules: Mapping[str, Iterable[str]] | None = None,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.filter = IPFilter(allow=allow, deny=deny, rules=rules, trusted_proxies=trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            client = scope.get("client")
            if not self.filter.permits(scope["path"], lambda: request_headers(scope),
                                       client[0] if client else None):  # fmt: skip
                await send_problem(send, 403, detail="your network may not use this resource")
                return
        await self.app(scope, receive, send)
