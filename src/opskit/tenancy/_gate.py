"""The middleware's decisions, shared by the ASGI and WSGI adapters (which hold only I/O).

A request is exempt, or its resolver finds an id (or a ready ``Tenant``, or
nothing); an id is validated, then taken from the bounded cache or, on a miss,
from ``lookup`` (called by the adapter: a task under ASGI, a thread under
WSGI, one call per id however many requests wait for it). Every request ends
in exactly one outcome, counted in a plain integer per registry.
"""

from __future__ import annotations

import fnmatch
import inspect
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

from opskit._core.clock import Clock, resolve_clock
from opskit._core.telemetry import Metric, get_logger, publish
from opskit.tenancy._errors import InvalidTenant
from opskit.tenancy._tenant import Tenant, validate_id
from opskit.tenancy.resolvers import Found, Resolver, as_resolver, header

__all__ = ["OUTCOMES", "Gate", "is_async"]

log = get_logger("tenancy")

OUTCOMES = ("resolved", "missing", "unknown", "invalid", "lookup_failed", "exempt")
RESOLVED, MISSING, UNKNOWN, INVALID, LOOKUP_FAILED, EXEMPT = range(6)
#: Outcome -> (status, detail) of the problem response that answers it.
PROBLEMS: dict[int, tuple[int, str]] = {
    MISSING: (401, "no tenant context"),
    UNKNOWN: (404, "unknown tenant"),
    INVALID: (400, "malformed tenant id"),
    LOOKUP_FAILED: (503, "tenant lookup failed"),
}
#: A resolver that raised something else than InvalidTenant (a bug): 500, counted
#: as lookup_failed.
RESOLVER_FAILED = -1

_counts: weakref.WeakKeyDictionary[CollectorRegistry, list[int]] = weakref.WeakKeyDictionary()
_counts_lock = threading.Lock()


def is_async(fn: Any) -> bool:
    """``fn`` is a coroutine function, or a callable object with an async ``__call__``."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - a callable object's async __call__
    )


def counts_for(registry: CollectorRegistry | None) -> list[int]:
    """The one list of outcome counters for ``registry``: middlewares on one registry
    add to the same samples (a second family with equal labels would be a duplicate)."""
    reg = REGISTRY if registry is None else registry
    with _counts_lock:
        counts = _counts.get(reg)
        if counts is None:
            counts = _counts[reg] = [0] * len(OUTCOMES)
            publish(_source(counts), reg)
        return counts


def _source(counts: list[int]) -> Callable[[], Iterable[Metric]]:
    def samples() -> Iterator[Metric]:
        for i, outcome in enumerate(OUTCOMES):
            yield Metric(
                "opskit_tenancy_requests_total",
                "counter",
                "Requests seen by TenantMiddleware, by outcome.",
                counts[i],
                {"outcome": outcome},
            )

    return samples


def _exempt_matcher(exempt: Iterable[str]) -> Callable[[str], Any] | None:
    globs = [exempt] if isinstance(exempt, str) else list(exempt)
    if not globs:
        return None
    for g in globs:
        if not isinstance(g, str):
            raise TypeError("exempt takes path globs (strings)")
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs)).match


class Gate:
    """Configuration, cache and counters of one middleware."""

    def __init__(
        self,
        *,
        resolver: Resolver | Callable[..., Found] | None,
        lookup: Callable[[str], Any] | None,
        required: bool,
        exempt: Iterable[str],
        lookup_ttl: float,
        lookup_timeout: float,
        id_pattern: str | re.Pattern[str] | None,
        clock: Clock | None,
        registry: CollectorRegistry | None,
        cache_size: int,
    ) -> None:
        if lookup_ttl < 0 or lookup_timeout <= 0:
            raise ValueError("lookup_ttl must be >= 0 and lookup_timeout > 0")
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        if lookup is not None and not callable(lookup):
            raise TypeError("lookup must be a callable: id -> Tenant | None")
        self.resolver = as_resolver(header("X-Tenant-ID") if resolver is None else resolver)
        self.lookup = lookup
        self.required = required
        self.exempt = _exempt_matcher(exempt)
        self.lookup_ttl = float(lookup_ttl)
        self.lookup_timeout = float(lookup_timeout)
        self.id_pattern = (
            None
            if id_pattern is None
            else id_pattern
            if isinstance(id_pattern, re.Pattern)
            else re.compile(id_pattern)
        )
        self.clock = resolve_clock(clock)
        self.cache_size = cache_size
        self.counts = counts_for(registry)
        # id -> Tenant for lookup=None (no allocation per request for a known id);
        # id -> (expires, Tenant | None) with a lookup.
        self._plain: dict[str, Tenant] = {}
        self._cache: dict[str, tuple[float, Tenant | None]] = {}
        self._lock = threading.Lock()

    def decide(self, found: Found) -> Tenant | str | int:
        """A ``Tenant`` (resolved), an id to look up (``str``), or an outcome code."""
        if found is None:
            return MISSING
        if isinstance(found, Tenant):
            if self.id_pattern is not None and self.id_pattern.fullmatch(found.id) is None:
                return INVALID
            return found
        if self.lookup is None:
            tenant = self._plain.get(found)
            if tenant is not None:
                return tenant
            try:
                tenant = Tenant(validate_id(found, self.id_pattern))
            except InvalidTenant:
                return INVALID
            plain = self._plain
            if len(plain) >= self.cache_size:
                plain.clear()  # ids are cheap to rebuild; a bound is what matters
            plain[found] = tenant
            return tenant
        entry = self._cache.get(found)
        if entry is not None and entry[0] > self.clock.monotonic():
            return UNKNOWN if entry[1] is None else entry[1]
        try:
            return validate_id(found, self.id_pattern)
        except InvalidTenant:
            return INVALID

    def cached(self, tenant_id: str) -> tuple[float, Tenant | None] | None:
        """The lookup cache's entry for ``tenant_id``: (expires, tenant or None)."""
        return self._cache.get(tenant_id)

    def settle(self, tenant_id: str, result: object) -> Tenant | int:
        """Cache what ``lookup(tenant_id)`` returned (misses too); the request's answer."""
        if result is not None and not isinstance(result, Tenant):
            log.warning("tenancy.lookup_bad_result", result_type=type(result).__name__)
            return LOOKUP_FAILED
        expires = self.clock.monotonic() + self.lookup_ttl
        with self._lock:
            cache = self._cache
            if tenant_id not in cache and len(cache) >= self.cache_size:
                now = self.clock.monotonic()
                for key in [k for k, (exp, _) in cache.items() if exp <= now]:
                    del cache[key]
                while len(cache) >= self.cache_size:
                    del cache[next(iter(cache))]  # the oldest entry
            cache[tenant_id] = (expires, result)
        return UNKNOWN if result is None else result

    def failed(self, reason: str, exc: BaseException | None = None) -> int:
        log.warning(
            "tenancy.lookup_failed",
            reason=reason,
            error=None if exc is None else type(exc).__name__,
        )
        return LOOKUP_FAILED

    def resolver_failed(self, exc: BaseException) -> int:
        log.error("tenancy.resolver_failed", error=type(exc).__name__)
        return RESOLVER_FAILED

    def reject(self, outcome: int) -> tuple[int, str]:
        """Count a rejected request's outcome; the (status, detail) that answers it."""
        if outcome == RESOLVER_FAILED:
            self.counts[LOOKUP_FAILED] += 1
            return 500, "tenant resolution failed"
        self.counts[outcome] += 1
        return PROBLEMS[outcome]
