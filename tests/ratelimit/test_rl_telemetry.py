"""A broken log sink never changes a limiter's decision, even during a Redis outage."""

from __future__ import annotations

import pytest
import redis
from prometheus_client import CollectorRegistry
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from _redis import free_port
from _telemetry import SINKS, broken_logging, log_errors
from opskit.ratelimit import RateLimiter, RedisStore


def down_client() -> redis.Redis:
    # a real client on a port where no server listens: every call is refused
    return redis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))


@pytest.mark.parametrize("sink", SINKS)
def test_outage_policies_hold_when_the_outage_log_fails(sink: str) -> None:
    limiters = {
        policy: RateLimiter(
            "t",
            "2/minute",
            registry=CollectorRegistry(),
            store=RedisStore(down_client(), on_error=policy),
        )
        for policy in ("allow", "deny", "local", "raise")
    }
    before = log_errors()
    with broken_logging(sink):
        assert limiters["allow"].hit("k").allowed
        assert not limiters["deny"].hit("k").allowed
        assert [limiters["local"].hit("k").allowed for _ in range(3)] == [True, True, False]
        with pytest.raises(redis.ConnectionError):
            limiters["raise"].hit("k")
    assert log_errors() >= before + 4  # one store_unavailable per store, each failed


@pytest.mark.parametrize("sink", SINKS)
async def test_async_outage_policy_holds_when_the_outage_log_fails(sink: str) -> None:
    client = redis.asyncio.Redis(port=free_port(), retry=AsyncRetry(NoBackoff(), 0))
    limiter = RateLimiter("t", "1/minute", registry=CollectorRegistry(),
                          store=RedisStore(client, on_error="local"))  # fmt: skip
    with broken_logging(sink):
        assert [(await limiter.ahit("k")).allowed for _ in range(2)] == [True, False]
    await client.aclose()
