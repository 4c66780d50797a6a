"""opskit.ratelimit vs limits and slowapi, in one run.

1. Memory decisions: opskit (GCRA, fixed, sliding window) vs limits' MemoryStorage
   fixed and moving window, and a bare dict increment.
2. Redis decisions on a real redis-server started here (or REDIS_URL): opskit
   RedisStore vs limits' Redis fixed window vs a raw EVALSHA round trip.
3. Requests per second of a small Starlette app under uvicorn (its own process),
   bare, with opskit's RateLimitMiddleware (memory), and with slowapi; the load
   is two keep-alive connections sending pipelined-free GETs for a few seconds.
Targets: memory >= 4x faster than limits' fixed window; Redis within 1.25x of a
raw EVALSHA and faster than limits; middleware >= 85% of the bare app's
throughput and faster than slowapi.
"""

from __future__ import annotations

import multiprocessing as mp
import socket
import threading
import time
from typing import Any

import limits
import limits.storage
import limits.strategies
import redis
from prometheus_client import CollectorRegistry

from _bench import bench, free_port, redis_url
from opskit.ratelimit import RateLimiter, RedisStore, by_ip
from opskit.ratelimit.asgi import RateLimitMiddleware, Rule

BIG = "1000000000/hour"  # never limits: measures the decision, not the rejection


def memory() -> None:
    print("memory decisions (ns per decision)")
    n = 50_000
    counter: dict[str, int] = {}

    def bare() -> None:
        counter["k"] = counter.get("k", 0) + 1

    res = {"bare dict increment": bench(bare, n)}
    for alg in ("gcra", "fixed_window", "sliding_window"):
        r = RateLimiter("b", BIG, algorithm=alg, registry=CollectorRegistry())
        res[f"opskit {alg}"] = bench(lambda r=r: r.hit("user:42"), n)
    item = limits.parse(BIG)
    storage = limits.storage.MemoryStorage()
    fixed = limits.strategies.FixedWindowRateLimiter(storage)
    moving = limits.strategies.MovingWindowRateLimiter(limits.storage.MemoryStorage())
    res["limits fixed window"] = bench(lambda: fixed.hit(item, "user:42"), n)
    res["limits moving window (10k live)"] = bench(lambda: moving.hit(item, "user:42"), 10_000)
    for name, ns in res.items():
        print(f"  {name:34} {ns:9.0f}")
    base = res["limits fixed window"]
    for alg in ("gcra", "fixed_window", "sliding_window"):
        ratio = base / res[f"opskit {alg}"]
        print(f"  limits fixed / opskit {alg:15} {ratio:5.1f}x (target >= 4x)")


def on_redis() -> None:
    with redis_url() as url:
        client = redis.Redis.from_url(url)
        client.flushdb()
        n = 3000
        sha = client.script_load("return 1")
        res = {"raw EVALSHA round trip": bench(lambda: client.evalsha(sha, 1, "k"), n)}
        for alg in ("gcra", "fixed_window"):
            r = RateLimiter("b", BIG, algorithm=alg, store=RedisStore(client),
                            registry=CollectorRegistry())  # fmt: skip
            res[f"opskit RedisStore {alg}"] = bench(lambda r=r: r.hit("user:42"), n)
        two = RateLimiter("b2", [BIG, "1000000000/day"], store=RedisStore(client),
                          registry=CollectorRegistry())  # fmt: skip
        res["opskit RedisStore gcra, 2 rates"] = bench(lambda: two.hit("user:42"), n)
        lstorage = limits.storage.RedisStorage(url)
        lfixed = limits.strategies.FixedWindowRateLimiter(lstorage)
        item = limits.parse(BIG)
        res["limits Redis fixed window"] = bench(lambda: lfixed.hit(item, "user:42"), n)
        print("\nRedis decisions (ns per decision, loopback)")
        for name, ns in res.items():
            print(f"  {name:34} {ns:9.0f}")
        raw = res["raw EVALSHA round trip"]
        g = res["opskit RedisStore gcra"]
        print(f"  opskit gcra / raw EVALSHA: {g / raw:.2f}x (target <= 1.25x)")
        print(f"  limits / opskit gcra: {res['limits Redis fixed window'] / g:.2f}x (target > 1x)")


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


def serve(kind: str, port: int) -> None:
    import uvicorn

    uvicorn.run(make_app(kind), host="127.0.0.1", port=port, log_level="error",
                access_log=False, lifespan="off")  # fmt: skip


def load(port: int, seconds: float, connections: int = 2) -> float:
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
    return sum(counts) / seconds


def throughput() -> None:
    ctx = mp.get_context("spawn")
    print("\nrequests per second under uvicorn (2 keep-alive connections, 3 s each)")
    res: dict[str, float] = {}
    for kind in ("bare", "opskit", "slowapi"):
        port = free_port()
        proc = ctx.Process(target=serve, args=(kind, port), daemon=True)
        proc.start()
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.02)
        load(port, 0.5)  # warm up
        res[kind] = load(port, 3.0)
        proc.terminate()
        proc.join()
    for kind, rps in res.items():
        print(f"  {kind:10} {rps:9.0f} req/s")
    print(f"  opskit / bare: {res['opskit'] / res['bare'] * 100:.0f}% (target >= 85%)")
    print(f"  opskit / slowapi: {res['opskit'] / res['slowapi']:.2f}x (target > 1x)")


if __name__ == "__main__":
    memory()
    on_redis()
    throughput()
