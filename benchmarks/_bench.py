"""Timing, instruction counts and a throwaway redis-server, shared by the benchmark scripts."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
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
