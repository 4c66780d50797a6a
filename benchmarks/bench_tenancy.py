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
import multiprocessing as mp
import os
import resource
import shutil
import socket
import statistics
import sys
import threading
import time
import uuid
from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry

from _bench import aby_round, by_round, count_instructions, free_port, paired_ratio
from opskit.tenancy import Tenant, tenant_scope
from opskit.tenancy._context import _LOG_ID, _TENANT
from opskit.tenancy.asgi import TenantMiddleware

KINDS = ("bare", "opskit", "correlation-id")
REQUEST_ID = str(uuid.uuid4())
STATS = "/__bench_stats"


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


def pin(cpus: set[int] | None) -> None:
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)


def split_cpus() -> tuple[set[int] | None, set[int] | None]:
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    return ({cpus[0]}, set(cpus[1:])) if len(cpus) >= 2 else (None, None)


def serve(kind: str, port: int, http: str, loop: str, cpus: set[int] | None) -> None:
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
                lifespan="off", http=http, loop=loop, timeout_keep_alive=120)  # fmt: skip


def cpu_seconds(port: int) -> float:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"GET {STATS} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return float(data.partition(b"\r\n\r\n")[2])


def load(port: int, seconds: float, connections: int = 2) -> int:
    request = (f"GET / HTTP/1.1\r\nHost: bench\r\nX-Tenant-ID: acme\r\n"
               f"X-Request-ID: {REQUEST_ID}\r\n\r\n").encode()  # fmt: skip
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
                        if not head.startswith(b"HTTP/1.1 200"):
                            raise SystemExit(f"unexpected response: {head[:60]!r}")
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
                    r, c = run_server(kind, http, loop, seconds, server_cpus)
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
        print(f"  {kind:15} {per[kind]:9.0f}")
    print(f"  bare / opskit: {per['bare'] / per['opskit']:.1%} (target >= 95%);"
          f" opskit adds {per['opskit'] - per['bare']:.0f}")  # fmt: skip
    print(f"  correlation-id / opskit: {per['correlation-id'] / per['opskit']:.3f}x"
          f" (correlation-id adds {per['correlation-id'] - per['bare']:.0f})")  # fmt: skip


def _instructions(valgrind: str, kind: str, n: int) -> int:
    return count_instructions(valgrind, __file__, "--in-process", kind, str(n))


class _Sink(asyncio.Transport):
    """Drops what is written; wakes the waiter when a response (head, body) is complete."""

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


def serve_in_process(kind: str, n: int) -> None:
    """Serve ``n`` GET requests of ``kind`` through uvicorn's httptools protocol."""
    import uvloop
    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    config = Config(make_app(kind), http="httptools", loop="uvloop", lifespan="off",
                    access_log=False, log_level="error")  # fmt: skip
    config.load()
    request = (f"GET / HTTP/1.1\r\nHost: bench\r\nX-Tenant-ID: acme\r\n"
               f"X-Request-ID: {REQUEST_ID}\r\n\r\n").encode()  # fmt: skip

    async def run() -> None:
        loop = asyncio.get_running_loop()
        protocol = HttpToolsProtocol(config, ServerState(), {}, loop)
        sink = _Sink()
        protocol.connection_made(sink)
        for _ in range(n):
            sink.done = loop.create_future()
            protocol.data_received(request)
            await sink.done

    uvloop.run(run())


def main() -> None:
    if sys.argv[1:2] == ["--in-process"]:
        serve_in_process(sys.argv[2], int(sys.argv[3]))
        return
    quick = "--quick" in sys.argv
    print(f"python {sys.version.split()[0]}")
    scopes()
    in_process()
    throughput(rounds=3 if quick else 8, seconds=1.0 if quick else 1.5)
    instructions()


if __name__ == "__main__":
    main()
