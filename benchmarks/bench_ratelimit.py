"""opskit.ratelimit vs limits and slowapi, in one run.

1. Memory decisions: opskit (GCRA, fixed, sliding window) vs limits' MemoryStorage
   fixed and moving window, and a bare dict increment; seven rounds, each ratio
   the median of the rounds' own ratios.
2. Redis decisions on a real redis-server started here (or REDIS_URL): opskit
   RedisStore vs limits' Redis fixed window (and sliding window counter) vs a raw
   EVALSHA round trip, with the server's own time per decision beside each (on a
   VM the loopback round trip itself swings between two levels, by scheduling);
   then GCRA through a redis.asyncio client against a raw awaited EVALSHA.
3. Requests per second of a small Starlette app under uvicorn (its own process),
   bare, with opskit's RateLimitMiddleware (memory), and with slowapi; the load
   is two keep-alive connections sending GETs one at a time, from this process.
   Both uvicorn stacks: h11 on asyncio, and httptools on uvloop (uvicorn[standard]).
   On Linux with two or more CPUs the server is pinned to one CPU and the load
   generator to the others, so the scheduler never puts them on one core. Each
   app still runs several times, interleaved: the best req/s of each, the median
   of the rounds' own opskit / bare ratios, and the server's CPU time per request
   (read from the server process itself).
4. Instructions per request (valgrind, where installed) of each app served in
   process by uvicorn's httptools protocol: the middleware's cost counted, free
   of the machine's speed and its neighbours.
Targets: memory >= 4x faster than limits' fixed window; Redis within 1.25x of a
raw EVALSHA and faster than limits; middleware >= 85% of the bare app's
throughput and faster than slowapi.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
from collections.abc import Callable
from typing import Any

import limits
import limits.storage
import limits.strategies
import redis
import redis.asyncio
from prometheus_client import CollectorRegistry

from _bench import (
    aby_round,
    by_round,
    instructions_per_op,
    paired_ratio,
    pin,
    redis_url,
    run_server,
    serve_in_process,
    split_cpus,
    with_stats,
)
from opskit.ratelimit import RateLimiter, RedisStore, by_ip
from opskit.ratelimit.asgi import RateLimitMiddleware, Rule

BIG = "1000000000/hour"  # never limits: measures the decision, not the rejection
KINDS = ("bare", "opskit", "slowapi")  # the apps under uvicorn


def memory() -> None:
    print("memory decisions (ns per decision, best round)")
    n = 20_000
    counter: dict[str, int] = {}

    def bare() -> None:
        counter["k"] = counter.get("k", 0) + 1

    cases: dict[str, tuple[Callable[[], Any], int]] = {"bare dict increment": (bare, n)}
    for alg in ("gcra", "fixed_window", "sliding_window"):
        r = RateLimiter("b", BIG, algorithm=alg, registry=CollectorRegistry())
        cases[f"opskit {alg}"] = (lambda r=r: r.hit("user:42"), n)
    item = limits.parse(BIG)
    storage = limits.storage.MemoryStorage()
    fixed = limits.strategies.FixedWindowRateLimiter(storage)
    moving = limits.strategies.MovingWindowRateLimiter(limits.storage.MemoryStorage())
    sliding = limits.strategies.SlidingWindowCounterRateLimiter(limits.storage.MemoryStorage())
    cases["limits fixed window"] = (lambda: fixed.hit(item, "user:42"), n)
    cases["limits sliding window counter"] = (lambda: sliding.hit(item, "user:42"), n)
    cases["limits moving window (10k live)"] = (lambda: moving.hit(item, "user:42"), 2_000)
    times = by_round(cases, rounds=7)
    for name, ns in times.items():
        print(f"  {name:34} {min(ns):9.0f}")
    print("  ratios: median over rounds of the ratio within each round")
    for alg in ("gcra", "fixed_window", "sliding_window"):
        ratio = paired_ratio(times, "limits fixed window", f"opskit {alg}")
        print(f"  limits fixed / opskit {alg:15} {ratio} (target >= 4x)")
    same = paired_ratio(times, "limits sliding window counter", "opskit sliding_window")
    print(f"  limits sliding / opskit sliding_window {same} (like for like)")


def on_redis() -> None:
    with redis_url() as url:
        client = redis.Redis.from_url(url)
        client.flushdb()
        n = 500
        sha = client.script_load("return 1")
        cases: dict[str, tuple[Callable[[], Any], int]] = {
            "raw EVALSHA round trip": (lambda: client.evalsha(sha, 1, "k"), n)
        }
        for alg in ("gcra", "fixed_window", "sliding_window"):
            r = RateLimiter("b", BIG, algorithm=alg, store=RedisStore(client),
                            registry=CollectorRegistry())  # fmt: skip
            cases[f"opskit RedisStore {alg}"] = (lambda r=r: r.hit("user:42"), n)
        two = RateLimiter("b2", [BIG, "1000000000/day"], store=RedisStore(client),
                          registry=CollectorRegistry())  # fmt: skip
        cases["opskit RedisStore gcra, 2 rates"] = (lambda: two.hit("user:42"), n)
        lstorage = limits.storage.RedisStorage(url)
        lfixed = limits.strategies.FixedWindowRateLimiter(lstorage)
        lsliding = limits.strategies.SlidingWindowCounterRateLimiter(lstorage)
        item = limits.parse(BIG)
        cases["limits Redis fixed window"] = (lambda: lfixed.hit(item, "user:42"), n)
        cases["limits Redis sliding window counter"] = (lambda: lsliding.hit(item, "user:42"), n)
        times = by_round(cases, rounds=10)
        print("\nRedis decisions (ns per decision, loopback, best round; the server's own time)")
        for name, ns in times.items():
            spent = server_us(client, cases[name][0])
            print(f"  {name:36} {min(ns):9.0f}   server {spent:5.2f} us")
        print("  ratios: median over rounds of the ratio within each round")
        raw, lim = "raw EVALSHA round trip", "limits Redis fixed window"
        for alg in ("gcra", "fixed_window", "sliding_window"):
            ours = f"opskit RedisStore {alg}"
            print(f"  opskit {alg:14} / raw EVALSHA: {paired_ratio(times, ours, raw)}"
                  " (target <= 1.25x)")  # fmt: skip
            print(f"  limits fixed / opskit {alg:14}: {paired_ratio(times, lim, ours)}"
                  " (target > 1x)")  # fmt: skip
        two_rates = paired_ratio(times, "opskit RedisStore gcra, 2 rates", raw)
        same = paired_ratio(times, "limits Redis sliding window counter",
                            "opskit RedisStore sliding_window")  # fmt: skip
        print(f"  opskit gcra, 2 rates / raw EVALSHA: {two_rates}")
        print(f"  limits sliding / opskit sliding_window: {same} (like for like)")
        asyncio.run(on_async_redis(url))


async def on_async_redis(url: str, rounds: int = 10, n: int = 300) -> None:
    """The same GCRA decision through a ``redis.asyncio`` client (what an ASGI app
    uses), against a raw awaited EVALSHA, paired round by round."""
    client = redis.asyncio.Redis.from_url(url)
    sha = await client.script_load("return 1")
    r = RateLimiter("b-async", BIG, store=RedisStore(client), registry=CollectorRegistry())
    times = await aby_round({
        "raw awaited EVALSHA": (lambda: client.evalsha(sha, 1, "k"), n),
        "opskit RedisStore gcra, ahit": (lambda: r.ahit("user:42"), n),
    }, rounds)  # fmt: skip
    await client.aclose()
    print("\nRedis decisions through redis.asyncio (ns per decision, best round)")
    for name, ns in times.items():
        print(f"  {name:36} {min(ns):9.0f}")
    ratio = paired_ratio(times, "opskit RedisStore gcra, ahit", "raw awaited EVALSHA")
    print(f"  opskit ahit / raw awaited EVALSHA: {ratio}")


def server_us(client: redis.Redis, fn: Callable[[], Any], n: int = 2000) -> float:
    """Microseconds the Redis server spends per call of ``fn`` (its scripts' time, read
    from INFO commandstats): unlike the round trip, free of the loopback's scheduling."""
    client.config_resetstat()
    for _ in range(n):
        fn()
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{c}", {}).get("usec", 0) for c in ("evalsha", "eval")) / n


def make_app(kind: str) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    if kind == "slowapi":
        from slowapi import Limiter
        from slowapi.util import get_remote_address

        limiter = Limiter(key_func=get_remote_address)

        @limiter.limit(BIG)
        async def limited(request: Request) -> PlainTextResponse:
            return PlainTextResponse("ok")

        app = Starlette(routes=[Route("/", limited)])
        app.state.limiter = limiter
        return app

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", hello)])
    if kind == "opskit":
        return RateLimitMiddleware(app, [Rule("/*", rates=BIG, key=by_ip)],
                                   registry=CollectorRegistry())  # fmt: skip
    return app


def serve(kind: str, port: int, http: str, loop: str, cpus: set[int] | None) -> None:
    """Run the app under uvicorn; ``GET /__bench_stats`` answers its CPU seconds so far."""
    import uvicorn

    pin(cpus)
    uvicorn.run(with_stats(make_app(kind)), host="127.0.0.1", port=port, log_level="error",
                access_log=False, lifespan="off", http=http, loop=loop)  # fmt: skip


def throughput(rounds: int = 8, seconds: float = 1.5) -> None:
    """Each server stack, each app, ``rounds`` times interleaved: the best req/s of
    each (runs on a shared machine are noisy), and the server's median CPU time per
    request (what the middleware costs)."""
    server_cpus, load_cpus = split_cpus()
    before = os.sched_getaffinity(0) if load_cpus else None
    pin(load_cpus)
    try:
        _throughput(rounds, seconds, server_cpus)
    finally:
        pin(before)
    where = f"server on CPU {min(server_cpus)}, load on the others" if server_cpus else "unpinned"
    print(f"\n({where})")


def _throughput(rounds: int, seconds: float, server_cpus: set[int] | None) -> None:
    stacks = [("h11", "asyncio")]
    try:
        import httptools  # noqa: F401
        import uvloop  # noqa: F401

        stacks.append(("httptools", "uvloop"))  # what uvicorn[standard] runs
    except ImportError:
        print("\n(httptools/uvloop not installed: uvicorn[standard] not measured)")
    kinds = KINDS
    for http, loop in stacks:
        rps: dict[str, list[float]] = {k: [] for k in kinds}
        cpu: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(rounds):
            for kind in kinds:
                r, c = run_server(serve, kind, http, loop, seconds, server_cpus)
                rps[kind].append(r)
                cpu[kind].append(c)
        print(f"\nuvicorn ({http}, {loop}): 2 connections, best of {rounds} x {seconds:g} s")
        best = {k: max(v) for k, v in rps.items()}
        per = {k: statistics.median(v) for k, v in cpu.items()}
        for kind in kinds:
            print(f"  {kind:10} {best[kind]:9.0f} req/s   server CPU {per[kind]:6.1f} us/request")
        kept, by_cpu = best["opskit"] / best["bare"], per["bare"] / per["opskit"]
        paired = sorted(o / b for o, b in zip(rps["opskit"], rps["bare"], strict=True))
        print(f"  opskit / bare: {kept:.0%} of req/s (best rounds), {by_cpu:.0%} by server CPU"
              " (target >= 85%)")  # fmt: skip
        print(f"    round by round: median {statistics.median(paired):.0%}"
              f" (rounds {paired[0]:.0%}-{paired[-1]:.0%})")  # fmt: skip
        print(f"  opskit / slowapi: {best['opskit'] / best['slowapi']:.2f}x req/s (target > 1x)")


def instructions(counts: tuple[int, int] = (500, 1500)) -> None:
    """The server's work per request, counted rather than timed: the instructions
    valgrind counts while uvicorn's httptools protocol serves each app in process
    (uvloop, a transport that drops what it is given; no sockets), for two numbers
    of requests, the difference divided by the requests between them. A machine's
    speed and its neighbours change the timings above; not this count. When the
    server's CPU is what limits throughput, bare / opskit is the share kept."""
    try:
        import httptools  # noqa: F401
        import uvloop  # noqa: F401
    except ImportError:
        return
    per = instructions_per_op(__file__, KINDS, counts, "--in-process")
    if per is None:
        return
    print("\nuvicorn (httptools, uvloop) in process: instructions per request (valgrind)")
    for kind in KINDS:
        print(f"  {kind:10} {per[kind]:9.0f}")
    print(f"  bare / opskit: {per['bare'] / per['opskit']:.1%} (target >= 85%);"
          f" opskit adds {per['opskit'] - per['bare']:.0f}")  # fmt: skip
    print(f"  slowapi / opskit: {per['slowapi'] / per['opskit']:.2f}x")


def in_process(kind: str, n: int) -> None:
    """Serve ``n`` GET requests of ``kind`` through uvicorn's httptools protocol."""
    serve_in_process(make_app(kind), n)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--in-process"]:
        in_process(sys.argv[2], int(sys.argv[3]))
    else:
        memory()
        on_redis()
        throughput()
        instructions()
