"""Timing, instruction counts and a throwaway redis-server, shared by the benchmark scripts."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

REPEAT = 5


def bench(fn: Callable[[], Any], n: int) -> float:
    """ns per call of ``fn``, best of ``REPEAT`` runs of ``n`` calls."""
    best = float("inf")
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e9


def by_round(cases: dict[str, tuple[Callable[[], Any], int]], rounds: int
             ) -> dict[str, list[float]]:  # fmt: skip
    """ns per call of each case in each of ``rounds`` rounds (all cases in turn)."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (fn, n) in cases.items():
            times[name].append(bench(fn, n))
    return times


async def aby_round(cases: dict[str, tuple[Callable[[], Awaitable[Any]], int]], rounds: int
                    ) -> dict[str, list[float]]:  # fmt: skip
    """:func:`by_round` for awaited calls, inside the running event loop (one run of
    each case per round)."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (fn, n) in cases.items():
            t0 = time.perf_counter()
            for _ in range(n):
                await fn()
            times[name].append((time.perf_counter() - t0) / n * 1e9)
    return times


def paired_ratio(times: dict[str, list[float]], name: str, base: str) -> str:
    """``name``'s time over ``base``'s, each round against its own: the median over
    rounds, then the lowest and highest round. Pairing holds when the machine's
    speed shifts between rounds (a VM's loopback round trip swings between two
    levels as its CPUs are scheduled)."""
    ratios = sorted(a / b for a, b in zip(times[name], times[base], strict=True))
    return f"{statistics.median(ratios):.2f}x (rounds {ratios[0]:.2f}-{ratios[-1]:.2f})"


def abench(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    """ns per awaited call of ``fn``, best of ``REPEAT`` runs of ``n`` calls."""

    async def run() -> float:
        best = float("inf")
        for _ in range(REPEAT):
            t0 = time.perf_counter()
            for _ in range(n):
                await fn()
            best = min(best, time.perf_counter() - t0)
        return best / n * 1e9

    return asyncio.run(run())


def ok() -> int:
    return 1


async def aok() -> int:
    return 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_url() -> Iterator[str]:
    """``REDIS_URL``, or a redis-server of our own on a free port for the run."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server not found (or set REDIS_URL)")
    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", tempfile.mkdtemp()],
                            stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        with socket.socket() as probe:
            for _ in range(500):
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
                time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait()


def count_instructions(valgrind: str, script: str, *args: str) -> int:
    """Instructions of a whole run of ``python script *args`` under valgrind (cachegrind).

    Counted, not timed: the same for the same code and inputs whatever else the machine
    does. ``PYTHONHASHSEED=0`` keeps the dict and set layouts of two runs alike.
    """
    cmd = [valgrind, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
           sys.executable, script, *args]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "0"})  # fmt: skip
    for line in out.stderr.splitlines():
        if "I" in line and "refs:" in line:
            return int(line.rsplit(":", 1)[1].replace(",", ""))
    raise RuntimeError(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")


def instructions_per_op(
    script: str, cases: Sequence[str], counts: tuple[int, int], *args: str
) -> dict[str, float] | None:
    """Instructions per operation of each case: ``python script *args case n`` run under
    valgrind for the two ``counts``, the difference divided by the operations between
    them (start-up cancels out). ``None`` (and a line saying so) without valgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("\n(valgrind not installed: instructions per operation not counted)")
        return None
    low, high = counts
    return {
        case: (count_instructions(valgrind, script, *args, case, str(high))
               - count_instructions(valgrind, script, *args, case, str(low))) / (high - low)
        for case in cases
    }  # fmt: skip


# An app under uvicorn in its own process, and a load generator in this one.

STATS = "/__bench_stats"
GET = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


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


def with_stats(app: Any) -> Any:
    """``app``, where ``GET /__bench_stats`` answers the server's CPU seconds so far."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == STATS:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            body = repr(usage.ru_utime + usage.ru_stime).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(len(body)).encode())]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return wrapped


def cpu_seconds(port: int) -> float:
    """The CPU seconds the server on ``port`` has used (its :func:`with_stats` answer)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"GET {STATS} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return float(data.partition(b"\r\n\r\n")[2])


def load(port: int, seconds: float, request: bytes = GET, connections: int = 2) -> int:
    """Requests completed in ``seconds`` by ``connections`` keep-alive clients, each
    sending ``request`` one at a time; a response other than 200 stops the run."""
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


def run_server(serve: Callable[[str, int, str, str, set[int] | None], None], kind: str,
               http: str, loop: str, seconds: float, cpus: set[int] | None,
               request: bytes = GET) -> tuple[float, float]:  # fmt: skip
    """(requests per second, server CPU microseconds per request) for one run.

    ``serve(kind, port, http, loop, cpus)`` runs the app under uvicorn (behind
    :func:`with_stats`) in a spawned process: a module-level function, so it pickles.
    """
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
        load(port, 0.5, request)  # warm up
        cpu0 = cpu_seconds(port)
        n = load(port, seconds, request)
        cpu = cpu_seconds(port) - cpu0
    finally:
        proc.terminate()
        proc.join()
    return n / seconds, cpu / n * 1e6


# An app served in process by uvicorn's httptools protocol, for counting instructions.


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


def serve_in_process(app: Any, n: int, request: bytes = GET) -> None:
    """Serve ``n`` ``request``s to ``app`` through uvicorn's httptools protocol (uvloop;
    no socket)."""
    import uvloop
    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    config = Config(app, http="httptools", loop="uvloop", lifespan="off",
                    access_log=False, log_level="error")  # fmt: skip
    config.load()

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
