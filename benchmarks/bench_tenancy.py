"""opskit.tenancy vs a bare ContextVar and asgi-correlation-id, in one run.

1. Entering and leaving a scope: ``with tenant_scope(t)`` (and by id, validated),
   the middleware's own enter/leave pair, against a bare ``ContextVar.set`` /
   ``reset`` pair; seven rounds, each ratio the median of the rounds' own ratios.
2. One request through each ASGI stack in process (no server, no socket): the
   bare app, behind ``TenantMiddleware`` (header resolver, no lookup), behind
   asgi-correlation-id's ``CorrelationIdMiddleware`` (the peer: it reads a
   header, validates it, sets a contextvar, adds a response header).
3. Requests per second of a small Starlette app under uvicorn (its own process),
   bare, behind TenantMiddleware, and behind CorrelationIdMiddleware; two
   keep-alive connections from this process send GETs one at a time, each with
   an ``X-Tenant-ID`` and an ``X-Request-ID``. On Linux with two or more CPUs
   the server is pinned to one CPU and the load to the others. Apps run
   interleaved, several rounds: the best req/s of each, the median of the
   rounds' own ratios, and the server's CPU time per request.
4. Instructions per request (valgrind, where installed) of each app served in
   process by uvicorn's httptools protocol: the middleware's cost counted, free
   of the machine's speed and its neighbours.
Targets: the middleware keeps >= 95% of the bare app's req/s and is faster than
asgi-correlation-id.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import uuid
from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry

from _bench import (
    aby_round,
    by_round,
    instructions_per_op,
    paired_ratio,
    pin,
    run_server,
    serve_in_process,
    split_cpus,
    with_stats,
)
from opskit.tenancy import Tenant, tenant_scope
from opskit.tenancy._context import _LOG_ID, _TENANT
from opskit.tenancy.asgi import TenantMiddleware

KINDS = ("bare", "opskit", "correlation-id")
REQUEST_ID = str(uuid.uuid4())
REQUEST = (f"GET / HTTP/1.1\r\nHost: bench\r\nX-Tenant-ID: acme\r\n"
           f"X-Request-ID: {REQUEST_ID}\r\n\r\n").encode()  # fmt: skip


def scopes() -> None:
    print("entering and leaving a scope (ns per enter+exit, paired rounds)")
    var: ContextVar[Any] = ContextVar("bench", default=None)
    tenant = Tenant("acme", plan="pro")

    def bare() -> None:
        var.reset(var.set(tenant))

    def scope_tenant() -> None:
        with tenant_scope(tenant):
            pass

    def scope_id() -> None:
        with tenant_scope("acme"):
            pass

    def middleware_pair() -> None:
        # What the middleware does per request: the tenant and structlog's tenant_id.
        _TENANT.reset(_TENANT.set(tenant))
        _LOG_ID.reset(_LOG_ID.set("acme"))

    cases = {"bare ContextVar set/reset": (bare, 200_000),
             "tenant_scope(Tenant)": (scope_tenant, 100_000),
             "tenant_scope('acme') (validates)": (scope_id, 100_000),
             "the middleware's two pairs": (middleware_pair, 100_000)}  # fmt: skip
    times = by_round(cases, rounds=7)
    base = "bare ContextVar set/reset"
    for name in cases:
        med = statistics.median(times[name])
        ratio = "" if name == base else f"   {paired_ratio(times, name, base)} the bare pair"
        print(f"  {name:34} {med:7.0f} ns{ratio}")


def make_app(kind: str) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", hello)])
    if kind == "opskit":
        return TenantMiddleware(app, registry=CollectorRegistry())
    if kind == "correlation-id":
        from asgi_correlation_id import CorrelationIdMiddleware

        return CorrelationIdMiddleware(app)
    return app


def in_process() -> None:
    print("\none request through the ASGI stack in process (us per request, paired rounds)")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": "/", "raw_path": b"/",
             "root_path": "", "query_string": b"", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 5000),
             "headers": [(b"host", b"bench"), (b"x-tenant-id", b"acme"),
                         (b"x-request-id", REQUEST_ID.encode())]}  # fmt: skip
    message = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> Any:
        return message

    async def send(message: Any) -> None:
        return None

    apps = {k: make_app(k) for k in KINDS}

    def runner(app: Any) -> Any:
        async def one() -> None:
            await app(dict(scope), receive, send)

        return one

    async def run() -> dict[str, list[float]]:
        return await aby_round({k: (runner(a), 3000) for k, a in apps.items()}, rounds=7)

    times = asyncio.run(run())
    for k in KINDS:
        med = statistics.median(times[k]) / 1000
        extra = "" if k == "bare" else f"   {paired_ratio(times, k, 'bare')} the bare app"
        print(f"  {k:15} {med:6.1f} us{extra}")
    added = {k: statistics.median(a - b for a, b in zip(times[k], times["bare"], strict=True))
             for k in KINDS if k != "bare"}  # fmt: skip
    print("  added per request: " + ", ".join(f"{k} {v / 1000:.2f} us" for k, v in added.items()))


def serve(kind: str, port: int, http: str, loop: str, cpus: set[int] | None) -> None:
    import uvicorn

    pin(cpus)
    uvicorn.run(with_stats(make_app(kind)), host="127.0.0.1", port=port, log_level="error",
                access_log=False, lifespan="off", http=http, loop=loop,
                timeout_keep_alive=120)  # fmt: skip


def throughput(rounds: int, seconds: float) -> None:
    server_cpus, load_cpus = split_cpus()
    before = os.sched_getaffinity(0) if load_cpus else None
    pin(load_cpus)
    try:
        stacks = [("h11", "asyncio")]
        try:
            import httptools  # noqa: F401
            import uvloop  # noqa: F401

            stacks.append(("httptools", "uvloop"))
        except ImportError:
            print("\n(httptools/uvloop not installed: uvicorn[standard] not measured)")
        for http, loop in stacks:
            rps: dict[str, list[float]] = {k: [] for k in KINDS}
            cpu: dict[str, list[float]] = {k: [] for k in KINDS}
            for _ in range(rounds):
                for kind in KINDS:
                    r, c = run_server(serve, kind, http, loop, seconds, server_cpus, REQUEST)
                    rps[kind].append(r)
                    cpu[kind].append(c)
            print(f"\nuvicorn ({http}, {loop}): 2 connections, {rounds} rounds x {seconds:g} s")
            best = {k: max(v) for k, v in rps.items()}
            per = {k: statistics.median(v) for k, v in cpu.items()}
            for kind in KINDS:
                med = statistics.median(rps[kind])
                print(f"  {kind:15} {best[kind]:8.0f} req/s (best)  median {med:8.0f}"
                      f"   server CPU {per[kind]:6.1f} us/request")  # fmt: skip
            for other, target in (("bare", "target >= 95%"), ("correlation-id", "target > 100%")):
                paired = sorted(o / b for o, b in zip(rps["opskit"], rps[other], strict=True))
                print(f"  opskit / {other}: median of rounds {statistics.median(paired):.1%}"
                      f" (rounds {paired[0]:.1%}-{paired[-1]:.1%}); best rounds "
                      f"{best['opskit'] / best[other]:.1%}; by server CPU "
                      f"{per[other] / per['opskit']:.1%} ({target})")  # fmt: skip
    finally:
        pin(before)
    where = f"server on CPU {min(server_cpus)}, load on the others" if server_cpus else "unpinned"
    print(f"\n({where}; a shared 2-CPU machine: figures are noisy)")


def instructions(counts: tuple[int, int] = (500, 1500)) -> None:
    """Instructions valgrind counts while uvicorn's httptools protocol serves each app
    in process (uvloop, a transport that drops what it is given; no sockets), for two
    numbers of requests: the difference divided by the requests between them. When
    the server's CPU limits throughput, bare / opskit is the share of req/s kept."""
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
        print(f"  {kind:15} {per[kind]:9.0f}")
    print(f"  bare / opskit: {per['bare'] / per['opskit']:.1%} (target >= 95%);"
          f" opskit adds {per['opskit'] - per['bare']:.0f}")  # fmt: skip
    print(f"  correlation-id / opskit: {per['correlation-id'] / per['opskit']:.3f}x"
          f" (correlation-id adds {per['correlation-id'] - per['bare']:.0f})")  # fmt: skip


def in_process_requests(kind: str, n: int) -> None:
    """Serve ``n`` GET requests of ``kind`` through uvicorn's httptools protocol."""
    serve_in_process(make_app(kind), n, REQUEST)


def main() -> None:
    if sys.argv[1:2] == ["--in-process"]:
        in_process_requests(sys.argv[2], int(sys.argv[3]))
        return
    quick = "--quick" in sys.argv
    print(f"python {sys.version.split()[0]}")
    scopes()
    in_process()
    throughput(rounds=3 if quick else 8, seconds=1.0 if quick else 1.5)
    instructions()


if __name__ == "__main__":
    main()
