"""PEP 3333 rate limiting and IP filtering middleware (Flask, Django WSGI, any WSGI app)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from opskit._core.clock import MONOTONIC, Clock
from opskit._core.wsgi import Environ, StartResponse, WSGIApp, problem_response, request_headers
from opskit.ratelimit._keys import ip_key
from opskit.ratelimit._limiter import ConcurrencyLimiter
from opskit.ratelimit._middleware import Core, HeaderStyle, IPFilter, Rule

__all__ = ["IPFilterMiddleware", "RateLimitMiddleware", "Rule"]


class RateLimitMiddleware:
    """Limits requests by ``rules`` (first match wins); 429 problem+json when over."""

    def __init__(
        self,
        app: WSGIApp,
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
        self.clock = clock or MONOTONIC

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        core = self.core
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "") or "/"
        route = core.route(method, path)
        if route is None:
            return self.app(environ, start_response)
        index, peer = route.rule_index, environ.get("REMOTE_ADDR")
        if route.peer_keyed:
            key = ip_key(peer)
        else:
            key = core.key(index, method, path, peer, lambda: request_headers(environ), environ)
        if key is None:
            return self.app(environ, start_response)
        rule, limiter = core.rules[index], core.limiters[index]
        if isinstance(limiter, ConcurrencyLimiter):
            slot = limiter.try_acquire(key)
            if slot is None:
                limiter.counts.add("limited")
                hdrs, body = core.rejection(index, None, 1.0)
                return problem_response(start_response, 429, headers=hdrs, **body)
            try:
                return list(self.app(environ, start_response))
            finally:
                limiter.release(key, slot)
        if rule.count == "all":
            d = limiter.hit(key)
            if not d.allowed:
                if rule.mode == "delay":
                    self.clock.sleep(core.next_delay(index, key))
                else:
                    hdrs, body = core.rejection(index, d, d.retry_after)
                    return problem_response(start_response, 429, headers=hdrs, **body)
            elif core.excess:
                core.allowed(index, key)
            extra = core.rate_headers(index, d)
            return self.app(
                environ, _start(start_response, extra, None) if extra else start_response
            )
        d = limiter.peek(key)
        if not d.allowed:  # a peek counts nothing: this 429 is counted here
            limiter.counts.add("limited")
            hdrs, body = core.rejection(index, d, d.retry_after)
            return problem_response(start_response, 429, headers=hdrs, **body)
        seen: list[int] = []
        try:
            return list(
                self.app(environ, _start(start_response, core.rate_headers(index, d), seen))
            )
        finally:
            if seen and core.counts_status(index, seen[0]):
                limiter.hit(key)


def _start(start_response: StartResponse, extra: list[tuple[str, str]], seen: list[int] | None
           ) -> StartResponse:  # fmt: skip
    def wrapped(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if seen is not None:
            seen.append(int(status.split(" ", 1)[0]))
        return start_response(status, [*headers, *extra], exc_info)

    return wrapped


class IPFilterMiddleware:
    """Allow/deny client networks (CIDR), globally and per path glob; 403 problem+json."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        allow: Iterable[str] = (),
        deny: Iterable[str] = (),
        rules: Mapping[str, Iterable[str]] | None = None,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.filter = IPFilter(allow=allow, deny=deny, rules=rules, trusted_proxies=trusted_proxies)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if not self.filter.permits(environ.get("PATH_INFO", "") or "/",
                                   lambda: request_headers(environ),
                                   environ.get("REMOTE_ADDR")):  # fmt: skip
            return problem_response(start_response, 403,
                                    detail="your network may not use this resource")  # fmt: skip
        return self.app(environ, start_response)
