"""opskit.breaker vs pybreaker, circuitbreaker (fabfuel) and purgatory, in one process.

Prints ns per call on the closed path (the call succeeds), sync and async, and
with shared state in Redis (opskit's RedisBreakerStore vs pybreaker's
CircuitRedisStorage) on a real redis-server started here (or REDIS_URL).
Targets from the breaker issue: opskit in-process >= 3x faster than
pybreaker; opskit's Redis store closed path within 2x of in-process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import circuitbreaker
import pybreaker
import redis
from prometheus_client import CollectorRegistry
from purgatory import AsyncCircuitBreakerFactory, SyncCircuitBreakerFactory

from _bench import REPEAT, abench, aok, bench, ok, redis_url
from opskit.breaker import CircuitBreaker, CountWindow, RedisBreakerStore, TimeWindow

N = 100_000


def opskit_breaker(**kw: Any) -> CircuitBreaker:
    return CircuitBreaker("bench", registry=CollectorRegistry(), **kw)


def main() -> None:
    print(f"opskit.breaker benchmark: closed path, ns per call (best of {REPEAT})\n")
    sync: dict[str, float] = {"bare call": bench(ok, N)}
    sync["opskit CountWindow(100)"] = bench(opskit_breaker(window=CountWindow(100))(ok), N)
    sync["opskit TimeWindow(60)"] = bench(opskit_breaker(window=TimeWindow(60))(ok), N)
    sync["pybreaker"] = bench(pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)(ok), N)
    sync["circuitbreaker (fabfuel)"] = bench(circuitbreaker.circuit(failure_threshold=5)(ok), N)
    sync["purgatory"] = bench(SyncCircuitBreakerFactory()("bench")(ok), N // 5)

    async def purgatory_async() -> Callable[[], Awaitable[int]]:
        factory = AsyncCircuitBreakerFactory()
        await factory.initialize()
        return factory("bench")(aok)  # type: ignore[no-any-return]

    asyn: dict[str, float] = {"bare call": abench(aok, N)}
    asyn["opskit CountWindow(100)"] = abench(opskit_breaker(window=CountWindow(100))(aok), N)
    asyn["opskit TimeWindow(60)"] = abench(opskit_breaker(window=TimeWindow(60))(aok), N)
    asyn["circuitbreaker (fabfuel)"] = abench(circuitbreaker.circuit(failure_threshold=5)(aok), N)
    try:
        pa = asyncio.run(purgatory_async())
        asyn["purgatory"] = abench(pa, N // 5)
    except Exception as exc:
        print(f"(purgatory async skipped: {type(exc).__name__})")

    print(f"  {'':28} {'sync':>9} {'async':>9}")
    for name in sync:
        a = asyn.get(name)
        print(f"  {name:28} {sync[name]:9.0f} {a:9.0f}" if a else f"  {name:28} {sync[name]:9.0f}")
    best = sync["opskit CountWindow(100)"]
    timew = sync["opskit TimeWindow(60)"]
    print("\nratios (in-process)")
    for peer in ("pybreaker", "circuitbreaker (fabfuel)", "purgatory"):
        print(f"  {peer} / opskit: CountWindow {sync[peer] / best:5.1f}x, "
              f"TimeWindow {sync[peer] / timew:5.1f}x")  # fmt: skip
    print(f"  target: >= 3x faster than pybreaker -> {sync['pybreaker'] / best:.1f}x (count), "
          f"{sync['pybreaker'] / timew:.1f}x (time)")  # fmt: skip

    with redis_url() as url:
        client = redis.Redis.from_url(url)
        client.flushdb()
        store = RedisBreakerStore(client, prefix="bench:", sync_interval=0.5)
        r_count = bench(opskit_breaker(window=CountWindow(100), store=store)(ok), N)
        r_time = bench(opskit_breaker(window=TimeWindow(60), store=store)(ok), N)
        storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client, namespace="pb")
        pb_redis = bench(pybreaker.CircuitBreaker(state_storage=storage)(ok), N // 20)
        raw = bench(lambda: client.ping(), N // 50)
        print("\nshared state in Redis (ns per call)")
        print(f"  redis PING round trip          {raw:9.0f}")
        print(f"  opskit + RedisBreakerStore     {r_count:9.0f} (CountWindow), "
              f"{r_time:.0f} (TimeWindow)")  # fmt: skip
        print(f"  pybreaker + CircuitRedisStorage {pb_redis:8.0f}")
        print(f"  pybreaker-redis / opskit-redis: {pb_redis / r_count:.0f}x")
        print(f"  target: opskit Redis closed path within 2x of in-process -> "
              f"{r_count / best:.2f}x (count), {r_time / timew:.2f}x (time)")  # fmt: skip


if __name__ == "__main__":
    main()
