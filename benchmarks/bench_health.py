"""opskit.health vs py-healthcheck and fastapi-health 0.4.0, in one run.

1. Ten checks of 100 ms each (asyncio.sleep for async checks, time.sleep for
   sync ones), uncached: opskit's run (async checks, and sync checks on its
   thread pool) vs the same checks run one after another by py-healthcheck's
   ``HealthCheck.run()`` vs fastapi-health 0.4.0's ``health()`` endpoint (ten
   async conditions) called as an ASGI app; each against the slowest single
   check run alone. Five rounds; medians.
2. A cached hit: ``await health.run()`` and ``health.run_sync()`` on a fresh
   cache vs a bare dict lookup; the ASGI ``/health`` endpoint served from the
   cache (called in process, as the peer is) vs fastapi-health's endpoint,
   which never caches, with ten instant conditions (sync, which it runs in
   Starlette's thread pool, and async) and with one; a bare ASGI app shows
   what the in-process call itself costs. Seven rounds; each ratio the median
   of the rounds' own ratios.
Targets: the ten-check run within 1.2x of the slowest single check; a cached
endpoint hit at least 50x faster than fastapi-health's uncached endpoint.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi_health import health as fastapi_health
from healthcheck import HealthCheck
from prometheus_client import CollectorRegistry

from _bench import aby_round, by_round, paired_ratio
from opskit.health import HealthRegistry
from opskit.health.asgi import HealthEndpoints

N = 10
DELAY = 0.1


async def _asgi_get(app: Any, path: str = "/health") -> int:
    """One in-process GET of ``app`` (no server, no socket): the endpoint's own cost."""
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": b"", "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80)}  # fmt: skip
    await app(scope, receive, send)
    return status


def _fastapi_app(conditions: list[Callable[..., Any]]) -> FastAPI:
    app = FastAPI()
    app.add_api_route("/health", fastapi_health(conditions))
    return app


def _named(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    fn.__name__ = name
    return fn


def ten_checks() -> float:
    print(f"{N} checks of {DELAY * 1000:.0f} ms each, uncached (ms per run; median of 5 rounds)")

    async def asleep() -> bool:
        await asyncio.sleep(DELAY)
        return True

    def ssleep() -> bool:
        time.sleep(DELAY)
        return True

    def hc_check() -> tuple[bool, str]:
        time.sleep(DELAY)
        return True, "ok"

    a = HealthRegistry(cache_ttl=0, registry=CollectorRegistry())
    s = HealthRegistry(cache_ttl=0, registry=CollectorRegistry())
    for i in range(N):
        a.add(f"c{i}", asleep)
        s.add(f"c{i}", ssleep)
    hc = HealthCheck(success_ttl=0, failed_ttl=0)
    for i in range(N):
        hc.add_check(_named(lambda: hc_check(), f"c{i}"))

    async def cond() -> bool:
        await asyncio.sleep(DELAY)
        return True

    def make_cond(i: int) -> Callable[..., Any]:
        async def c() -> bool:
            return await cond()

        return _named(c, f"c{i}")

    fh = _fastapi_app([make_cond(i) for i in range(N)])

    async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
        t0 = time.perf_counter()
        await fn()
        return (time.perf_counter() - t0) * 1000

    async def run_hc() -> Any:
        return hc.run()

    async def single() -> Any:
        return await asleep()

    cases: dict[str, Callable[[], Awaitable[Any]]] = {
        "slowest single check alone": single,
        "opskit run, 10 async checks": a.run,
        "opskit run, 10 sync checks (thread pool)": s.run,
        "py-healthcheck HealthCheck.run() (one after another)": run_hc,
        "fastapi-health 0.4.0 health() endpoint (ASGI)": lambda: _asgi_get(fh),
    }

    async def main() -> dict[str, list[float]]:
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(5):
            for name, fn in cases.items():
                times[name].append(await timed(fn))
        return times

    times = asyncio.run(main())
    base = statistics.median(times["slowest single check alone"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:<56} {med:8.1f} ms  {med / base:5.2f}x the slowest check")
    ratio = statistics.median(times["opskit run, 10 async checks"]) / base
    sratio = statistics.median(times["opskit run, 10 sync checks (thread pool)"]) / base
    print(f"  target: within 1.2x -> async {ratio:.2f}x {'met' if ratio <= 1.2 else 'MISSED'}, "
          f"sync {sratio:.2f}x {'met' if sratio <= 1.2 else 'MISSED'}")  # fmt: skip
    a.close()
    s.close()
    return statistics.median(times["fastapi-health 0.4.0 health() endpoint (ASGI)"]) * 1e6


def cached(fastapi_ten_ns: float) -> None:
    print("cached hits (ns per call; best run of each round, median over 7 rounds)")
    h = HealthRegistry(cache_ttl=3600, registry=CollectorRegistry())
    for i in range(N):
        h.add(f"c{i}", lambda: True)
    endpoints = HealthEndpoints(h, show_details="always")
    h.run_sync()
    cache = {"all": object()}

    def bare() -> Any:
        return cache["all"]

    sync_times = by_round({"bare dict lookup": (bare, 200_000),
                           "opskit run_sync() cached": (h.run_sync, 100_000)}, 7)  # fmt: skip

    async def instant() -> bool:
        return True

    fh10 = _fastapi_app([_named(lambda: True, f"c{i}") for i in range(N)])
    fh10a = _fastapi_app([_named(instant, "a0")] + [
        _named(_instant_factory(), f"a{i}") for i in range(1, N)])  # fmt: skip
    fh1 = _fastapi_app([_named(instant, "one")])

    async def amain() -> dict[str, list[float]]:
        await h.run()
        await _asgi_get(endpoints)
        for app in (fh10, fh10a, fh1):
            assert await _asgi_get(app) == 200

        async def abare() -> Any:
            return cache["all"]

        return await aby_round({
            "bare dict lookup (awaited)": (abare, 100_000),
            "opskit await run() cached": (h.run, 50_000),
            "bare ASGI app (the harness's floor)": (lambda: _asgi_get(_bare_app), 20_000),
            "opskit ASGI /health cached": (lambda: _asgi_get(endpoints), 20_000),
            "fastapi-health, 10 sync conditions": (lambda: _asgi_get(fh10), 300),
            "fastapi-health, 10 async conditions": (lambda: _asgi_get(fh10a), 300),
            "fastapi-health, 1 async condition": (lambda: _asgi_get(fh1), 1_000),
        }, 7)  # fmt: skip

    async_times = asyncio.run(amain())
    for times in (sync_times, async_times):
        for name, ts in times.items():
            print(f"  {name:<44} {statistics.median(ts):10.0f} ns")
    print(
        f"  run_sync() cached / bare lookup: "
        f"{paired_ratio(sync_times, 'opskit run_sync() cached', 'bare dict lookup')}"
    )
    print(
        f"  await run() cached / awaited bare lookup: "
        f"{paired_ratio(async_times, 'opskit await run() cached', 'bare dict lookup (awaited)')}"
    )
    for peer in (
        "fastapi-health, 10 sync conditions",
        "fastapi-health, 10 async conditions",
        "fastapi-health, 1 async condition",
    ):
        ratios = sorted(
            p / o
            for p, o in zip(
                async_times[peer], async_times["opskit ASGI /health cached"], strict=True
            )
        )
        med = statistics.median(ratios)
        print(f"  {peer} / opskit cached endpoint: {med:.1f}x faster "
              f"(rounds {ratios[0]:.1f}-{ratios[-1]:.1f}) target >= 50x "
              f"{'met' if med >= 50 else 'MISSED'}")  # fmt: skip
    mine = statistics.median(async_times["opskit ASGI /health cached"])
    print(f"  fastapi-health with the ten 100 ms checks of part 1 / opskit cached endpoint: "
          f"{fastapi_ten_ns / mine:,.0f}x faster")  # fmt: skip
    h.close()


async def _bare_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"a", b"b")]})
    await send({"type": "http.response.body", "body": b"{}"})


def _instant_factory() -> Callable[..., Any]:
    async def c() -> bool:
        return True

    return c


if __name__ == "__main__":
    cached(ten_checks())
