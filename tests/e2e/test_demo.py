"""The demo shell: in-process, and as a real `opskit demo` process behind uvicorn."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry

from _redis import free_port
from opskit import __version__
from opskit.demo import Part, build_app

OPSKIT = [sys.executable, "-m", "opskit.cli"]


async def test_demo_app_in_process_index_metrics_parts_and_404() -> None:
    async def hello(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    app = build_app([Part("/hello", "says hello", hello, [("GET", "/hello/x", 200)])],
                    CollectorRegistry())  # fmt: skip
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        index = await client.get("/")
        assert index.status_code == 200
        assert "/hello" in index.text and "GET /hello/x" in index.text
        assert (await client.get("/hello/x")).text == "/hello/x"
        assert (await client.get("/hello")).text == "/hello"
        assert (await client.get("/metrics")).status_code == 200
        missing = await client.get("/helloworld")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"


async def test_demo_app_forwards_lifespan() -> None:
    app = build_app([], CollectorRegistry())
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, str]] = []

    async def receive():  # type: ignore[no-untyped-def]
        return messages.pop(0)

    async def send(m):  # type: ignore[no-untyped-def]
        sent.append(m)

    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_version_flag() -> None:
    out = subprocess.run([*OPSKIT, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"opskit {__version__}"


def test_demo_check_passes_against_a_real_server() -> None:
    out = subprocess.run(
        [*OPSKIT, "demo", "--check"], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FAIL" not in out.stdout
    assert "ok   GET /metrics -> 200" in out.stdout
    assert ", 0 failed" in out.stdout


def test_opskit_demo_serves_until_stopped() -> None:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*OPSKIT, "demo", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=Path(__file__).parent,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                resp = httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, "opskit demo exited"
                assert time.monotonic() < deadline, "opskit demo did not start"
                time.sleep(0.05)  # polling a real process's startup, not waiting for time
        assert resp.status_code == 200
        assert "opskit" in resp.text
    finally:
        proc.terminate()
        proc.wait(timeout=15)
