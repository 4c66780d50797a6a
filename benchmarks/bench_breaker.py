"""opskit.breaker vs pybreaker, circuitbreaker (fabfuel) and purgatory, in one process.

Prints ns per call on the closed path (the call succeeds), sync and async, and
with shared state in Redis (opskit's RedisBreakerStore vs pybreaker's
CircuitRedisStorage) on a real redis-server started here (or REDIS_URL).
Targets from the breaker issue: opskit in-process >= 3x faster than
pybreaker, decorated and through ``call()`` alike (issue 14), on the default
window (``TimeWindow(60)``); opskit's Redis store closed path within 2x of
in-process.

The in-process sync figures are paired: each round times every case in turn,
and a ratio is the median over rounds of the ratio within each round, so a
neighbour's load shifting between rounds moves both sides of a ratio together.
Like is measured against like: a decorated function against pybreaker's
decorated function, ``breaker.call(fn)`` against ``pybreaker.call(fn)`` (both
called from a lambda). Where valgrind is installed, the same four cases are
also counted in instructions per call, which the neighbours cannot move.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import circuitbreaker
import pybreaker
import redis
from prometheus_client import CollectorRegistry
from purgatory import AsyncCircuitBreakerFactory, SyncCircuitBreakerFactory

from _bench import (
    REPEAT,
    abench,
    aok,
    bench,
    by_round,
    count_instructions,
    ok,
    paired_ratio,
    redis_url,
)
from opskit.breaker import CircuitBreaker, CountWindow, RedisBreakerStore, TimeWindow

N = 100_000
ROUNDS = 7


def opskit_breaker(**kw: Any) -> CircuitBreaker:
    return CircuitBreaker("bench", registry=CollectorRegistry(), **kw)


def in_process() -> dict[str, float]:
    """The sync closed path, in paired rounds; prints the ratios, returns the medians."""
    count = opskit_breaker(window=CountWindow(100))
    timew = opskit_breaker(window=TimeWindow(60))
    default = opskit_breaker()
    assert default.window == timew.window  # the default window is the one measured
    pb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
    cases: dict[str, tuple[Callable[[], Any], int]] = {
        "bare call": (ok, N),
        "bare call from a lambda": (lambda: ok(), N),
        "opskit CountWindow(100)": (count(ok), N),
        "opskit CountWindow(100) call()": (lambda: count.call(ok), N),
        "opskit TimeWindow(60)": (timew(ok), N),
        "opskit TimeWindow(60) call()": (lambda: timew.call(ok), N),
        "pybreaker": (pb(ok), N),
        "pybreaker call()": (lambda: pb.call(ok), N),
        "circuitbreaker (fabfuel)": (circuitbreaker.circuit(failure_threshold=5)(ok), N),
        "purgatory": (SyncCircuitBreakerFactory()("bench")(ok), N // 5),
    }
    times = by_round(cases, ROUNDS)
    sync = {name: statistics.median(ns) for name, ns in times.items()}
    print(f"sync, ns per call (median of {ROUNDS} rounds, each the best of {REPEAT} runs)")
    for name, ns in sync.items():
        print(f"  {name:34} {ns:9.0f}")
    print("\nratios (in-process): median over rounds of the ratio within each round")
    for window in ("CountWindow(100)", "TimeWindow(60)"):
        for peer in ("circuitbreaker (fabfuel)", "purgatory"):
            print(f"  {peer} / opskit {window}: {paired_ratio(times, peer, f'opskit {window}')}")
    print("  target: >= 3x faster than pybreaker on the default window, TimeWindow(60)")
    for window in ("TimeWindow(60)", "CountWindow(100)"):
        dec = paired_ratio(times, "pybreaker", f"opskit {window}")
        call = paired_ratio(times, "pybreaker call()", f"opskit {window} call()")
        print(f"  pybreaker / opskit, {window}: decorator {dec}")
        print(f"  {'':28} call()    {call}")
    return sync


def main() -> None:
    print(f"opskit.breaker benchmark: closed path, ns per call (best of {REPEAT})\n")
    sync = in_process()

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

    print("\nasync, ns per awaited call (best of 5 runs)")
    for name, ns in asyn.items():
        print(f"  {name:34} {ns:9.0f}")
    best = sync["opskit CountWindow(100)"]
    timew = sync["opskit TimeWindow(60)"]

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


COUNTED = ("opskit decorator", "opskit call()", "pybreaker decorator", "pybreaker call()")


def counted_case(kind: str) -> Callable[[], Any]:
    """One of the cases :func:`instructions` counts, on the default window."""
    b = opskit_breaker()
    pb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
    return {
        "opskit decorator": b(ok),
        "opskit call()": lambda: b.call(ok),
        "pybreaker decorator": pb(ok),
        "pybreaker call()": lambda: pb.call(ok),
    }[kind]


def instructions(counts: tuple[int, int] = (2_000, 12_000)) -> None:
    """Instructions per call counted by valgrind (cachegrind): a whole run of this
    script making ``n`` calls, for two ``n``, the difference over the calls between."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("\n(valgrind not installed: instructions per call not counted)")
        return
    per: dict[str, float] = {}
    for kind in COUNTED:
        low, high = (_instructions(valgrind, kind, n) for n in counts)
        per[kind] = (high - low) / (counts[1] - counts[0])
    print("\ninstructions per call (valgrind), default window TimeWindow(60)")
    for kind in COUNTED:
        print(f"  {kind:22} {per[kind]:9.0f}")
    for how in ("decorator", "call()"):
        ratio = per[f"pybreaker {how}"] / per[f"opskit {how}"]
        print(f"  pybreaker / opskit, {how:9}: {ratio:.2f}x")


def _instructions(valgrind: str, kind: str, n: int) -> int:
    return count_instructions(valgrind, __file__, "--count", kind, str(n))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--count"]:
        fn = counted_case(sys.argv[2])
        for _ in range(int(sys.argv[3])):
            fn()
    else:
        main()
        instructions()
