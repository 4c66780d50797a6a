"""Through real servers: uvicorn (ASGI) and waitress (WSGI), concurrent clients, random
tenants, streaming, thread offloads and an outgoing call; zero mismatches, no leaks."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from flask import Flask
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from _servers import run_wsgi
from opskit.tenancy import (
    TenantThreadPoolExecutor,
    current_tenant,
    get_tenant,
    to_headers,
)
from opskit.tenancy.asgi import TenantMiddleware
from opskit.tenancy.wsgi import TenantMiddleware as WSGITenantMiddleware
from tenancy._tn import run_uvicorn

pytestmark = pytest.mark.timeout(300)

TENANTS = [f"t{i:03d}" for i in range(200)]
N_REQUESTS = 10_000


def who() -> str:
    t = current_tenant()
    return "-" if t is None else t.id


async def header_echo(scope: Any, receive: Any, send: Any) -> None:
    """The second local server: echoes the tenant header it received."""
    if scope["type"] != "http":
        return
    value = dict(scope["headers"]).get(b"x-opskit-tenant", b"-")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": value})


class LeakGuard:
    """Outside the middleware: no tenant before a request nor after it, on any task."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.violations: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if current_tenant() is not None:
            self.violations.append(f"before {scope.get('path')}: {who()}")
        try:
            await self.app(scope, receive, send)
        finally:
            if current_tenant() is not None:
                self.violations.append(f"after {scope.get('path')}: {who()}")


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    with run_uvicorn(header_echo) as url:
        yield url


def starlette_app(echo_url: str) -> tuple[Any, LeakGuard]:
    pool = TenantThreadPoolExecutor(max_workers=4)
    client = httpx.AsyncClient(base_url=echo_url, limits=httpx.Limits(max_connections=20))

    async def plain(request: Request) -> PlainTextResponse:
        await asyncio.sleep(0)
        return PlainTextResponse(get_tenant().id)

    async def stream(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for _ in range(4):
                await asyncio.sleep(0)
                yield f"{who()},".encode()

        return StreamingResponse(body())

    async def stream_sync(request: Request) -> StreamingResponse:
        def body() -> Iterator[bytes]:  # Starlette iterates it in its thread pool
            for _ in range(3):
                yield f"{who()},".encode()

        return StreamingResponse(body())

    async def in_pool(request: Request) -> PlainTextResponse:
        loop = asyncio.get_running_loop()
        return PlainTextResponse(await loop.run_in_executor(pool, who))

    async def to_thread(request: Request) -> PlainTextResponse:
        return PlainTextResponse(await asyncio.to_thread(who))

    async def outgoing(request: Request) -> PlainTextResponse:
        r = await client.get("/", headers=to_headers())
        return PlainTextResponse(r.text)

    async def boom(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"partial,"
            raise RuntimeError("mid-stream")

        return StreamingResponse(body())

    async def endless(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            while True:
                await asyncio.sleep(0.001)
                yield f"{who()},".encode()

        return StreamingResponse(body())

    async def probe(request: Request) -> PlainTextResponse:
        return PlainTextResponse(who())

    routes = [Route("/plain", plain), Route("/stream", stream), Route("/stream-sync", stream_sync),
              Route("/pool", in_pool), Route("/to-thread", to_thread),
              Route("/outgoing", outgoing), Route("/boom", boom), Route("/endless", endless),
              Route("/probe", probe)]  # fmt: skip
    inner = TenantMiddleware(Starlette(routes=routes), exempt=["/probe"],
                             registry=CollectorRegistry())  # fmt: skip
    guard = LeakGuard(inner)
    return guard, guard


KINDS = ["/plain", "/stream", "/stream-sync", "/pool", "/to-thread", "/outgoing"]


def expected(kind: str, tenant: str) -> str:
    if kind == "/stream":
        return f"{tenant}," * 4
    if kind == "/stream-sync":
        return f"{tenant}," * 3
    return tenant


async def test_uvicorn_10k_requests_zero_mismatches(echo_url: str) -> None:
    app, guard = starlette_app(echo_url)
    rng = random.Random(15)
    plan = [(rng.choice(KINDS), rng.choice(TENANTS)) for _ in range(N_REQUESTS)]
    mismatches: list[tuple[str, str, str]] = []
    with run_uvicorn(app) as url:
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
            sem = asyncio.Semaphore(16)

            async def one(kind: str, tenant: str) -> None:
                async with sem:
                    r = await client.get(kind, headers={"X-Tenant-ID": tenant})
                if r.status_code != 200 or r.text != expected(kind, tenant):
                    mismatches.append((kind, tenant, f"{r.status_code} {r.text[:80]}"))

            await asyncio.gather(*(one(k, t) for k, t in plan))

            # An app raising mid-stream, and clients leaving mid-stream.
            for _ in range(20):
                with pytest.raises(httpx.HTTPError):
                    await client.get("/boom", headers={"X-Tenant-ID": "acme"})
            for _ in range(20):
                async with client.stream("GET", "/endless",
                                         headers={"X-Tenant-ID": "globex"}) as r:  # fmt: skip
                    async for chunk in r.aiter_bytes():
                        assert b"globex," in chunk
                        break  # leave mid-stream: the connection is closed
            # The next requests (on every worker connection) see no tenant.
            probes = await asyncio.gather(*(client.get("/probe") for _ in range(50)))
            assert {p.text for p in probes} == {"-"}
            missing = await client.get("/plain")
            assert missing.status_code == 401
    assert mismatches == []
    assert guard.violations == []


def flask_app(echo_url: str) -> Any:
    app = Flask(__name__)
    pool = ThreadPoolExecutor(max_workers=4)
    tenant_pool = TenantThreadPoolExecutor(max_workers=4)
    client = httpx.Client(base_url=echo_url)

    @app.get("/plain")
    def plain() -> str:
        return get_tenant().id

    @app.get("/stream")
    def stream() -> Any:
        def body() -> Iterator[str]:
            for _ in range(4):
                yield f"{who()},"

        return app.response_class(body())

    @app.get("/pool")
    def in_pool() -> str:
        return tenant_pool.submit(who).result()

    @app.get("/plain-pool")  # the trap: a plain executor does not carry the tenant
    def plain_pool() -> str:
        return pool.submit(who).result()

    @app.get("/outgoing")
    def outgoing() -> str:
        return client.get("/", headers=to_headers()).text

    @app.get("/boom")
    def boom() -> Any:
        def body() -> Iterator[str]:
            yield "partial,"
            raise RuntimeError("mid-stream")

        return app.response_class(body())

    @app.get("/probe")
    def probe() -> str:
        return who()

    return WSGITenantMiddleware(app.wsgi_app, exempt=["/probe"], registry=CollectorRegistry())


def test_waitress_requests_zero_mismatches(echo_url: str) -> None:
    rng = random.Random(16)
    kinds = ["/plain", "/stream", "/pool", "/outgoing"]
    plan = [(rng.choice(kinds), rng.choice(TENANTS)) for _ in range(N_REQUESTS)]
    mismatches: list[tuple[str, str, str]] = []
    lock = threading.Lock()
    with run_wsgi(flask_app(echo_url)) as url:

        def worker(chunk: list[tuple[str, str]]) -> None:
            with httpx.Client(base_url=url, timeout=30) as client:
                for kind, tenant in chunk:
                    r = client.get(kind, headers={"X-Tenant-ID": tenant})
                    if r.status_code != 200 or r.text != expected(kind, tenant):
                        with lock:
                            mismatches.append((kind, tenant, f"{r.status_code} {r.text[:80]}"))

        chunks = [plan[i::8] for i in range(8)]
        threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
        for t in threads:
            t.start()
        for t in threads:
            t.join(240)
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(10):
                with pytest.raises(httpx.HTTPError):
                    client.get("/boom", headers={"X-Tenant-ID": "acme"}).read()
            # waitress's 4 threads: after all that, none of them sees a tenant.
            assert {client.get("/probe").text for _ in range(40)} == {"-"}
            assert client.get("/plain-pool", headers={"X-Tenant-ID": "acme"}).text == "-"
    assert mismatches == []


def ws_connect(url: str, headers: dict[str, str]) -> tuple[int | None, str | None]:
    """Open a websocket with wsproto over a socket: (HTTP status of a rejection or None,
    the first text message after an accept or None)."""
    import socket as socket_

    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, RejectConnection, Request, TextMessage

    host, port = url.removeprefix("http://").split(":")
    ws = WSConnection(ConnectionType.CLIENT)
    with socket_.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(ws.send(Request(host=host, target="/ws",
                                     extra_headers=[(k.encode(), v.encode())
                                                    for k, v in headers.items()])))  # fmt: skip
        while True:
            data = sock.recv(65536)
            if not data:
                return None, None
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, RejectConnection):
                    return event.status_code, None
                if isinstance(event, TextMessage):
                    return None, event.data
                if isinstance(event, AcceptConnection):
                    continue


def test_websockets_through_uvicorn() -> None:
    reached: list[str] = []

    async def ws_app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        reached.append(who())
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": who()})
        await send({"type": "websocket.close", "code": 1000})

    app = TenantMiddleware(ws_app, registry=CollectorRegistry())
    with run_uvicorn(app, ws="wsproto") as url:
        assert ws_connect(url, {"X-Tenant-ID": "acme"}) == (None, "acme")
        # Refused before websocket.accept: uvicorn answers the handshake with 403.
        assert ws_connect(url, {}) == (403, None)
        assert ws_connect(url, {"X-Tenant-ID": "bad id"}) == (403, None)
    assert reached == ["acme"]
