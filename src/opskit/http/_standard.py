from __future__ import annotations

from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from opskit._core.clock import Clock
from opskit.breaker import CircuitBreaker, TimeWindow
from opskit.retry import Retry, backoff

__all__ = ["standard"]


def standard(
    name: str, *, registry: CollectorRegistry | None = None, clock: Clock | None = None
) -> dict[str, Any]:
    """Keyword arguments for either transport, after .NET's standard resilience handler.

    Total timeout 30 s; retry up to 4 attempts on ``httpx.TransportError``
    (and the transport's retry statuses), exponential backoff from 2 s with
    full jitter; a breaker opening at a 10% failure rate over 30 s once 100
    calls were seen, open 5 s; attempt timeout 10 s; no limiter. ``registry``
    and ``clock`` go to every part built here.
    """
    return {
        "name": name,
        "total_timeout": 30.0,
        "attempt_timeout": 10.0,
        "limiter": None,
        "retry": Retry(
            name,
            on=httpx.TransportError,
            attempts=4,
            backoff=backoff.exponential(initial=2.0, maximum=30.0, jitter="full"),
            clock=clock,
            registry=registry,
        ),
        "breaker": CircuitBreaker(
            name,
            failure_rate=0.1,
            minimum_calls=100,
            window=TimeWindow(30),
            open_for=5.0,
            clock=clock,
            registry=registry,
        ),
        "registry": registry,
        "clock": clock,
    }
