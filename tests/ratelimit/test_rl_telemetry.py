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
from opskit.ratelimit import ConcurrencyLimiter, RateLimiter, RedisStore


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


def fail_open(reg: CollectorRegistry, name: str) -> float | None:
    return reg.get_sample_value("opskit_ratelimit_fail_open_total", {"name": name})


def test_fail_open_decisions_are_counted_per_limiter() -> None:
    reg = CollectorRegistry()
    store = RedisStore(down_client(), on_error="allow")
    login = RateLimiter("login", "1/minute", registry=reg, store=store)
    api = RateLimiter("api", ["1/second", "5/minute"], registry=reg, store=store)
    exports = ConcurrencyLimiter("exports", limit=1, registry=reg, store=store)
    assert [login.hit("k").allowed for _ in range(3)] == [True, True, True]  # over its limit
    assert api.hit("k").allowed
    assert exports.try_acquire("k") is not None
    assert fail_open(reg, "login") == 3
    assert fail_open(reg, "api") == 1
    assert fail_open(reg, "exports") == 1
    # fail-open hits are still allowed decisions; the store errors count every failure
    assert reg.get_sample_value("opskit_ratelimit_decisions_total",
                                {"name": "login", "decision": "allowed"}) == 3  # fmt: skip
    assert reg.get_sample_value("opskit_ratelimit_store_errors_total", {"name": "login"}) == 5


@pytest.mark.parametrize("policy", ["local", "deny"])
def test_other_outage_policies_are_not_fail_open(policy: str) -> None:
    reg = CollectorRegistry()
    limiter = RateLimiter("t", "1/minute", registry=reg,
                          store=RedisStore(down_client(), on_error=policy))  # fmt: skip
    limiter.hit("k")
    limiter.hit("k")
    assert fail_open(reg, "t") == 0
    assert reg.get_sample_value("opskit_ratelimit_store_errors_total", {"name": "t"}) == 2


def test_fail_open_is_zero_without_a_shared_store() -> None:
    reg = CollectorRegistry()
    RateLimiter("m", "1/minute", registry=reg).hit("k")
    assert fail_open(reg, "m") == 0


async def test_async_fail_open_decisions_are_counted() -> None:
    reg = CollectorRegistry()
    client = redis.asyncio.Redis(port=free_port(), retry=AsyncRetry(NoBackoff(), 0))
    limiter = RateLimiter("t", "1/minute", registry=reg,
                          store=RedisStore(client, on_error="allow"))  # fmt: skip
    assert [(await limiter.ahit("k")).allowed for _ in range(2)] == [True, True]
    assert fail_open(reg, "t") == 2
    await client.aclose()
