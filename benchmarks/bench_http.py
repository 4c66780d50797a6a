"""opskit.http vs the bare httpx transport and a tenacity + pybreaker hand-stack.

Two measurements, one run, one process for the clients:

1. Requests per second over keep-alive connections to a local uvicorn server
   (its own process, so it does not share the clients' GIL): the bare
   ``httpx.AsyncHTTPTransport``, ``AsyncResilientTransport`` with every part on
   (total timeout, limiter, retry, hedging, breaker, attempt timeout, tenant
   propagation) on the success path, and the same protection hand-stacked
   around ``client.get`` from tenacity (retry), pybreaker (breaker) and
   ``asyncio.timeout`` (total and attempt timeouts; the stack has no limiter).
   Target: opskit >= 95% of the bare transport's requests per second.
2. Client instructions per request (valgrind, where installed) over one
   keep-alive connection to the same server: the client's CPU is what limits
   the requests per second here, and this count is free of the machine's
   speed and its neighbours (2 shared cores: the timings above are noisy).
3. In-process overhead per request on ``httpx.MockTransport`` (time per request
   minus the bare transport's), async and sync. Target: opskit's overhead below
   the hand-stack's.

Ratios are medians of paired rounds (each round's cases against each other).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import httpx
import pybreaker
import tenacity
from prometheus_client import CollectorRegistry

from _bench import aby_round, by_round, free_port, instructions_per_op
from opskit.breaker import CircuitBreaker
from opskit.http import AsyncResilientTransport, Hedge, ResilientTransport
from opskit.ratelimit import RateLimiter
from opskit.retry import Retry, backoff

ROUNDS = 9
N_NET = 1_500
N_MOCK = 4_000
CONNECTIONS = 8  # concurrent keep-alive connections for the req/s run

SERVER = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
kw = {}
try:
    import httptools  # noqa: F401
    kw["http"] = "httptools"
except ImportError:
    pass
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error",
            access_log=False, lifespan="off", **kw)
"""


def parts(registry: CollectorRegistry) -> dict[str, Any]:
    """Every part on, for the success path."""
    return {
        "name": "bench",
        "total_timeout": 20.0,
        "limiter": RateLimiter("bench-out", rates=["1000000/second"], registry=registry),
        "retry": Retry("bench", on=httpx.TransportError, attempts=3,
                       backoff=backoff.exponential(), registry=registry),
        "hedge": Hedge(after=2.0),
        "breaker": CircuitBreaker("bench", registry=registry),
        "attempt_timeout": 5.0,
        "propagate_tenant": True,
        "registry": registry,
    }  # fmt: skip


def hand_stack(
    get: Callable[[str], Awaitable[httpx.Response]],
) -> Callable[[str], Awaitable[httpx.Response]]:
    """tenacity + pybreaker + asyncio.timeout around ``client.get``, as call sites do."""
    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(3),
        wait=tenacity.wait_exponential_jitter(initial=0.1, max=10),
        retry=tenacity.retry_if_exception_type(httpx.TransportError),
        reraise=True,
    )

    async def attempt(url: str) -> httpx.Response:
        with breaker.calling():
            async with asyncio.timeout(5.0):
                return await get(url)

    async def call(url: str) -> httpx.Response:
        async with asyncio.timeout(20.0):
            return await retrying(attempt, url)  # type: ignore[no-any-return]

    return call


def sync_hand_stack(
    get: Callable[[str], httpx.Response],
) -> Callable[[str], httpx.Response]:
    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(3),
        wait=tenacity.wait_exponential_jitter(initial=0.1, max=10),
        retry=tenacity.retry_if_exception_type(httpx.TransportError),
        reraise=True,
    )

    def call(url: str) -> httpx.Response:
        return retrying(breaker.call, get, url)  # type: ignore[no-any-return]

    return call


def ratio_line(label: str, ratios: list[float]) -> str:
    r = sorted(ratios)
    return f"  {label}: {statistics.median(r):.3f} (rounds {r[0]:.3f}-{r[-1]:.3f})"


# -- 1. requests per second over keep-alive ---------------------------------------------


async def net_round(get: Callable[[str], Awaitable[httpx.Response]], url: str) -> float:
    """Seconds for N_NET requests over CONNECTIONS concurrent keep-alive connections."""

    async def worker(n: int) -> None:
        for _ in range(n):
            r = await get(url)
            assert r.status_code == 200

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(N_NET // CONNECTIONS) for _ in range(CONNECTIONS)))
    return time.perf_counter() - t0


async def keep_alive(url: str) -> None:
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    reg = CollectorRegistry()
    bare = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(limits=limits))
    opskit = httpx.AsyncClient(transport=AsyncResilientTransport(
        httpx.AsyncHTTPTransport(limits=limits), **parts(reg)))  # fmt: skip
    stacked_client = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(limits=limits))
    cases: dict[str, Callable[[str], Awaitable[httpx.Response]]] = {
        "bare": bare.get,
        "opskit": opskit.get,
        "tenacity+pybreaker": hand_stack(stacked_client.get),
    }
    for get in cases.values():  # warm the connections
        await net_round(get, url)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, get in cases.items():
            times[name].append(await net_round(get, url))
    print(f"keep-alive, {CONNECTIONS} connections, {N_NET} requests a round, {ROUNDS} rounds")
    for name, ts in times.items():
        print(f"  {name:20s} {N_NET / statistics.median(ts):8.0f} req/s (median round)")
    print("share of the bare transport's req/s (paired rounds; target opskit >= 0.95):")
    for name in ("opskit", "tenacity+pybreaker"):
        print(ratio_line(name, [b / o for b, o in zip(times["bare"], times[name], strict=True)]))
    for c in (bare, opskit, stacked_client):
        await c.aclose()


# -- 2. client instructions per request (valgrind) ---------------------------------------

COUNTED = ("bare", "opskit", "tenacity+pybreaker")


async def _count_run(case: str, n: int, url: str) -> None:
    reg = CollectorRegistry()
    if url == "mock":  # in process, on httpx.MockTransport
        if case == "opskit":
            client = httpx.AsyncClient(
                transport=AsyncResilientTransport(httpx.MockTransport(_aok), **parts(reg))
            )
        else:
            client = httpx.AsyncClient(transport=httpx.MockTransport(_aok))
        get = hand_stack(client.get) if case == "tenacity+pybreaker" else client.get
        url = "http://upstream.test/v1/x"
    elif case == "opskit":
        client = httpx.AsyncClient(transport=AsyncResilientTransport(**parts(reg)))
        get = client.get
    else:
        client = httpx.AsyncClient()
        get = client.get if case == "bare" else hand_stack(client.get)
    for _ in range(n + 1):
        await get(url)
    await client.aclose()


def instructions(url: str, counts: tuple[int, int] = (50, 550)) -> None:
    """Instructions per request (valgrind), over the network (``url``) or in process
    on MockTransport (``"mock"``): two runs of different lengths, the difference
    divided by the requests between them."""
    per = instructions_per_op(__file__, COUNTED, counts, "--count", url)
    if per is None:
        return
    if url == "mock":
        print("in-process, httpx.MockTransport, async: instructions per request (valgrind)")
    else:
        print("client instructions per request, one keep-alive connection (valgrind)")
    for case in COUNTED:
        print(f"  {case:20s} {per[case]:10.0f}  (+{per[case] - per['bare']:.0f})")
    if url == "mock":
        ours, theirs = (per[c] - per["bare"] for c in ("opskit", "tenacity+pybreaker"))
        print(f"  opskit overhead / hand-stack overhead: {ours / theirs:.2f} (target < 1)")
        return
    for case in ("opskit", "tenacity+pybreaker"):
        print(f"  bare / {case}: {per['bare'] / per[case]:.1%}"
              + (" (target >= 95%)" if case == "opskit" else ""))  # fmt: skip


# -- 3. in-process overhead on MockTransport -----------------------------------------------


def _ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"ok")


async def _aok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"ok")


async def mock_async() -> dict[str, list[float]]:
    reg = CollectorRegistry()
    bare = httpx.AsyncClient(transport=httpx.MockTransport(_aok))
    opskit = httpx.AsyncClient(transport=AsyncResilientTransport(
        httpx.MockTransport(_aok), **parts(reg)))  # fmt: skip
    stacked = hand_stack(httpx.AsyncClient(transport=httpx.MockTransport(_aok)).get)
    cases = {"bare": bare.get, "opskit": opskit.get, "tenacity+pybreaker": stacked}
    url = "http://upstream.test/v1/x"
    ns = await aby_round({name: (partial(get, url), N_MOCK) for name, get in cases.items()}, ROUNDS)
    return _us(ns)


def mock_sync() -> dict[str, list[float]]:
    reg = CollectorRegistry()
    sync_parts = parts(reg)
    del sync_parts["hedge"]  # sync hedging runs attempts on threads; measured apart below
    bare = httpx.Client(transport=httpx.MockTransport(_ok))
    opskit = httpx.Client(transport=ResilientTransport(httpx.MockTransport(_ok), **sync_parts))
    stacked = sync_hand_stack(httpx.Client(transport=httpx.MockTransport(_ok)).get)
    cases = {"bare": bare.get, "opskit": opskit.get, "tenacity+pybreaker": stacked}
    url = "http://upstream.test/v1/x"
    return _us(by_round({name: (partial(get, url), N_MOCK) for name, get in cases.items()}, ROUNDS))


def _us(ns: dict[str, list[float]]) -> dict[str, list[float]]:
    return {name: [t / 1000 for t in ts] for name, ts in ns.items()}


def report_overhead(title: str, times: dict[str, list[float]]) -> None:
    print(title)
    for name, ts in times.items():
        print(f"  {name:20s} {statistics.median(ts):7.2f} us per request (median round)")
    over = {
        name: [t - b for t, b in zip(times[name], times["bare"], strict=True)]
        for name in ("opskit", "tenacity+pybreaker")
    }
    for name, o in over.items():
        s = sorted(o)
        print(f"  overhead {name:20s} {statistics.median(s):7.2f} us "
              f"(rounds {s[0]:.2f}-{s[-1]:.2f})")  # fmt: skip
    ratios = [o / s for o, s in zip(over["opskit"], over["tenacity+pybreaker"], strict=True)]
    print(ratio_line("opskit overhead / hand-stack overhead (target < 1)", ratios))


def main() -> None:
    if sys.argv[1:2] == ["--count"]:
        asyncio.run(_count_run(sys.argv[3], int(sys.argv[4]), sys.argv[2]))  # URL CASE N
        return
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    try:
        url = f"http://127.0.0.1:{port}/v1/ping"
        for _ in range(500):
            try:
                httpx.get(url)
                break
            except httpx.TransportError:
                time.sleep(0.02)
        asyncio.run(keep_alive(url))
        instructions(url)
    finally:
        server.terminate()
        server.wait()
    report_overhead("in-process, httpx.MockTransport, async:", asyncio.run(mock_async()))
    report_overhead("in-process, httpx.MockTransport, sync (no hedge):", mock_sync())
    instructions("mock")


if __name__ == "__main__":
    main()
