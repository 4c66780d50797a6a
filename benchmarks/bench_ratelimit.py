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
import multiprocessing as mp
import os
import resource
import shutil
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import limits
import limits.storage
import limits.strategies
import redis
import redis.asyncio
from prometheus_client import CollectorRegistry

from _bench import aby_round, by_round, count_instructions, free_port, paired_ratio, redis_url
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


STATS = "/__bench_stats"


def pin(cpus: set[int] | None) -> None:
    """Keep this process on ``cpus`` (Linux; None or elsewhere: no change)."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)


def split_cpus() -> tuple[set[int] | None, set[int] | None]:
    """(the server's CPU, the load generator's CPUs), or (None, None) when not possible."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    return ({cpus[0]}, set(cpus[1:])) if len(cpus) >= 2 else (None, None)


def serve(kind: str, port: int, http: str, loop: str, cpus: set[int] | None) -> None:
    """Run the app; ``GET /__bench_stats`` answers the server's CPU seconds so far."""
    import uvicorn

    pin(cpus)
    app = make_app(kind)

    async def with_stats(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == STATS:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            body = repr(usage.ru_utime + usage.ru_stime).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(len(body)).encode())]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    uvicorn.run(with_stats, host="127.0.0.1", port=port, log_level="error", access_log=False,
                lifespan="off", http=http, loop=loop)  # fmt: skip


def cpu_seconds(port: int) -> float:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"GET {STATS} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return float(data.partition(b"\r\n\r\n")[2])


def load(port: int, seconds: float, connections: int = 2) -> int:
    """Requests completed in ``seconds`` by ``connections`` keep-alive clients."""
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    counts = [0] * connections
    stop = time.perf_counter() + seconds

    def worker(i: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            buf = b""
            while time.perf_counter() < stop:
                s.sendall(request)
                while True:
                    head, sep, rest = buf.partition(b"\r\n\r\n")
                    if sep:
                        length = 0
                        for line in head.split(b"\r\n"):
                            if line.lower().startswith(b"content-length:"):
                                length = int(line.split(b":")[1])
                        if len(rest) >= length:
                            buf = rest[length:]
                            break
                    buf += s.recv(65536)
                counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def run_server(kind: str, http: str, loop: str, seconds: float, cpus: set[int] | None
               ) -> tuple[float, float]:  # fmt: skip
    """(requests per second, server CPU microseconds per request) for one run."""
    ctx = mp.get_context("spawn")
    port = free_port()
    proc = ctx.Process(target=serve, args=(kind, port, http, loop, cpus), daemon=True)
    proc.start()
    try:
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.02)
        load(port, 0.5)  # warm up
        cpu0 = cpu_seconds(port)
        n = load(port, seconds)
        cpu = cpu_seconds(port) - cpu0
    finally:
        proc.terminate()
        proc.join()
    return n / seconds, cpu / n * 1e6


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
                r, c = run_server(kind, http, loop, seconds, server_cpus)
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
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("\n(valgrind not installed: instructions per request not counted)")
        return
    try:
        import httptools  # noqa: F401
        import uvloop  # noqa: F401
    except ImportError:
        return
    per = {}
    for kind in KINDS:
        low, high = (_instructions(valgrind, kind, n) for n in counts)
        per[kind] = (high - low) / (counts[1] - counts[0])
    print("\nuvicorn (httptools, uvloop) in process: instructions per request (valgrind)")
    for kind in KINDS:
        print(f"  {kind:10} {per[kind]:9.0f}")
    print(f"  bare / opskit: {per['bare'] / per['opskit']:.1%} (target >= 85%);"
          f" opskit adds {per['opskit'] - per['bare']:.0f}")  # fmt: skip
    print(f"  slowapi / opskit: {per['slowapi'] / per['opskit']:.2f}x")


def _instructions(valgrind: str, kind: str, n: int) -> int:
    """Instructions of a whole run of this script serving ``n`` requests of ``kind``."""
    return count_instructions(valgrind, __file__, "--in-process", kind, str(n))


class _Sink(asyncio.Transport):
    """A transport that drops what is written and wakes the waiter when a response
    (its head, then its body: two writes) is complete."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.done: asyncio.Future[None] | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def write(self, data: Any) -> None:
        self.writes += 1
        if self.writes % 2 == 0 and self.done is not None:
            self.done.set_result(None)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def in_process(kind: str, n: int) -> None:
    """Serve ``n`` GET requests of ``kind`` through uvicorn's httptools protocol."""
    import uvloop
    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    config = Config(make_app(kind), http="httptools", loop="uvloop", lifespan="off",
                    access_log=False, log_level="error")  # fmt: skip
    config.load()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        protocol = HttpToolsProtocol(config, ServerState(), {}, loop)
        sink = _Sink()
        protocol.connection_made(sink)
        for _ in range(n):
            sink.done = loop.create_future()
            protocol.data_received(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            await sink.done

    uvloop.run(run())


if __name__ == "__main__":
    if sys.argv[1:2] == ["--in-process"]:
        in_process(sys.argv[2], int(sys.argv[3]))
    else:
        memory()
        on_redis()
        throughput()
        instructions()
