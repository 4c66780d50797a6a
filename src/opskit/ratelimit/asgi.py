"""Pure-ASGI rate limiting and IP filtering middleware (FastAPI, Starlette, Litestar, Django)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from opskit._core.asgi import ASGIApp, Message, Receive, Scope, Send, request_headers, send_problem
from opskit._core.clock import Clock
from opskit.ratelimit._limiter import ConcurrencyLimiter
from opskit.ratelimit._middleware import Core, HeaderStyle, IPFilter, Rule

__all__ = ["IPFilterMiddleware", "RateLimitMiddleware", "Rule"]


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]], seen: list[int] | None) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            if seen is not None:
                seen.append(int(message["status"]))
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
        method, path = scope["method"], scope["path"]
        index = core.match(method, path)
        if index is None:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        req = core.request(method, path, lambda: request_headers(scope),
                           client[0] if client else None, scope)  # fmt: skip
        rule = core.rules[index]
        key = rule.key(req)
        if key is None:
            await self.app(scope, receive, send)
            return
        limiter = core.limiters[index]
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
            d = limiter.hit(key) if core.sync[index] else await limiter.ahit(key)
            if not d.allowed:
                if rule.mode == "delay":
                    await self._sleep(core.next_delay(index, key))
                else:
                    hdrs, body = core.rejection(index, d, d.retry_after)
                    await send_problem(send, 429, headers=hdrs, **body)
                    return
            elif core.excess:
                core.allowed(index, key)
            extra = core.raw_rate_headers(index, d) if core.headers != "none" else []
            await self.app(scope, receive, _with_headers(send, extra, None) if extra else send)
            return
        d = limiter.peek(key) if core.sync[index] else await limiter.apeek(key)
        if not d.allowed:
            hdrs, body = core.rejection(index, d, d.retry_after)
            await send_problem(send, 429, headers=hdrs, **body)
            return
        seen: list[int] = []
        extra = core.raw_rate_headers(index, d) if core.headers != "none" else []
        try:
            await self.app(scope, receive, _with_headers(send, extra, seen))
        finally:
            if seen and core.counts_status(index, seen[0]):
                await limiter.ahit(key)

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
