"""Fixtures for opskit.http's tests: real upstreams, an ASGI app served by uvicorn, and a raw
TCP server that resets the connection after reading the request.

(Helpers live here, not in a module of their own: ``tests/http`` cannot be imported
as a package beside the standard library's ``http``.)

Real upstreams for opskit.http's tests: an ASGI app served by uvicorn, and a raw
TCP server that resets the connection after reading the request.

Every route counts the requests it saw, per key (the last path segment), so a
test can assert how many attempts reached the server.
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from _servers import run_asgi


class Upstream:
    """ASGI app. Routes (``key`` separates tests):

    - ``/ok/{key}``: 200 ``ok``.
    - ``/flaky/{key}?fail=N&status=503&retry_after=S&date=T``: ``status`` the first
      N times (with ``Retry-After: S`` seconds, or the HTTP date of Unix time
      ``T``), then 200.
    - ``/hang/{key}?fail=N&seconds=S``: the first N requests get no answer until
      the client goes away (or S seconds), then 200.
    - ``/slow/{key}?first=S``: the first request answers after S seconds, the
      others at once (``x-attempt`` says which one answered).
    - ``/stream/{key}?chunks=N&pause=S``: N chunks, S seconds apart.
    - ``/headers/{key}``: the request's headers as JSON.
    """

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.methods: dict[str, list[str]] = collections.defaultdict(list)
        self.headers: dict[str, list[dict[str, str]]] = collections.defaultdict(list)
        self.open = 0  # requests being handled now
        self.disconnected: collections.Counter[str] = collections.Counter()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        parts = scope["path"].strip("/").split("/")
        route, key = parts[0], parts[-1]
        q = {k: v[0] for k, v in urllib.parse.parse_qs(scope["query_string"].decode()).items()}
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.counts[key] += 1
        n = self.counts[key]
        self.methods[key].append(scope["method"])
        self.headers[key].append({k.decode(): v.decode() for k, v in scope["headers"]})
        self.open += 1
        try:
            await self._route(route, key, n, q, body, receive, send)
        finally:
            self.open -= 1

    async def _route(
        self, route: str, key: str, n: int, q: dict[str, str], body: bytes, receive: Any, send: Any
    ) -> None:
        fail = int(q.get("fail", "0"))
        if route == "ok":
            await _respond(send, 200, b"ok")
        elif route == "flaky":
            if n <= fail:
                headers: list[tuple[bytes, bytes]] = []
                if "retry_after" in q:
                    headers.append((b"retry-after", q["retry_after"].encode()))
                if "date" in q:
                    when = formatdate(float(q["date"]), usegmt=True)
                    headers.append((b"retry-after", when.encode()))
                await _respond(send, int(q.get("status", "503")), b"failing", headers)
            else:
                await _respond(send, 200, b"ok after %d" % n)
        elif route == "hang":
            if n <= fail:
                try:
                    await asyncio.wait_for(_disconnect(receive), float(q.get("seconds", "10")))
                    self.disconnected[key] += 1
                    return
                except asyncio.TimeoutError:
                    pass
            await _respond(send, 200, b"ok after %d" % n)
        elif route == "slow":
            if n == 1:
                try:
                    await asyncio.wait_for(_disconnect(receive), float(q.get("first", "2")))
                    self.disconnected[key] += 1
                    return
                except asyncio.TimeoutError:
                    pass
            await _respond(send, 200, b"attempt %d" % n, [(b"x-attempt", str(n).encode())])
        elif route == "stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for i in range(int(q.get("chunks", "3"))):
                await send({"type": "http.response.body", "body": b"chunk%d;" % i,
                            "more_body": True})  # fmt: skip
                await asyncio.sleep(float(q.get("pause", "0")))
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        elif route == "headers":
            await _respond(send, 200, json.dumps(self.headers[key][-1]).encode())
        else:
            await _respond(send, 404, b"no such route")


async def _disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _respond(
    send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), *(headers or [])]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class ResetServer:
    """A raw TCP server: reads a request, then resets the connection (RST) for
    the first ``fail`` requests of each key (from ``?fail=N``); answers 200 after."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.counts: collections.Counter[str] = collections.Counter()
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            while True:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                while len(rest) < length:
                    rest += conn.recv(65536)
                target = lines[0].split(" ")[1]
                url = urllib.parse.urlsplit(target)
                key = url.path.strip("/").split("/")[-1]
                q = dict(urllib.parse.parse_qsl(url.query))
                self.counts[key] += 1
                if self.counts[key] <= int(q.get("fail", "1")):
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                    return  # close with linger 0: the client sees a reset
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    def __enter__(self) -> ResetServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self.sock.close()


def busy_connections(transport: Any) -> int:
    """Connections of the innermost httpx transport's pool still serving a request."""
    inner = getattr(transport, "transport", transport)
    pool = getattr(inner, "_pool", None)
    if pool is None:
        return 0
    return sum(1 for c in pool.connections if not (c.is_idle() or c.is_closed()))


def pool_requests(transport: Any) -> int:
    """Requests queued or assigned in the innermost transport's pool."""
    inner = getattr(transport, "transport", transport)
    return len(getattr(inner._pool, "_requests", ()))


@dataclass
class Served:
    app: Upstream
    url: str


@pytest.fixture(scope="module")
def upstream() -> Iterator[Served]:
    app = Upstream()
    with run_asgi(app) as url:
        yield Served(app, url)


@pytest.fixture(scope="module")
def reset_server() -> Iterator[ResetServer]:
    with ResetServer() as server:
        yield server


@pytest.fixture
def key() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def drained() -> Any:
    """``drained(transport)`` asserts the pool holds no busy connection or request."""

    def check(transport: Any) -> None:
        assert busy_connections(transport) == 0
        assert pool_requests(transport) == 0

    return check


class Caller:
    """Builds a transport and a client of one mode (``"sync"`` or ``"async"``), and
    makes requests through them; async requests run on a loop of the caller's own
    so the connection pool lives across requests."""

    def __init__(self, mode: str, registry: CollectorRegistry) -> None:
        self.mode = mode
        self.registry = registry
        self.transports: list[Any] = []
        self._clients: dict[int, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def transport(self, inner: Any = None, **kw: Any) -> Any:
        from opskit.http import AsyncResilientTransport, ResilientTransport

        kw.setdefault("registry", self.registry)
        cls = ResilientTransport if self.mode == "sync" else AsyncResilientTransport
        t = self._run(self._make(cls, inner, kw)) if self.mode == "async" else cls(inner, **kw)
        self.transports.append(t)
        return t

    @staticmethod
    async def _make(cls: Any, inner: Any, kw: dict[str, Any]) -> Any:
        return cls(inner, **kw)

    def _run(self, coro: Any) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
            self._thread.start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    def client(self, transport: Any) -> Any:
        c = self._clients.get(id(transport))
        if c is None:
            if self.mode == "sync":
                c = httpx.Client(transport=transport, timeout=10)
            else:
                c = httpx.AsyncClient(transport=transport, timeout=10)
            self._clients[id(transport)] = c
        return c

    def request(self, transport: Any, method: str, url: str, **kw: Any) -> httpx.Response:
        """The response, its body read (the error, raised)."""
        c = self.client(transport)
        if self.mode == "sync":
            r = c.request(method, url, **kw)
            return r  # type: ignore[no-any-return]

        async def go() -> httpx.Response:
            return await c.request(method, url, **kw)  # type: ignore[no-any-return]

        return self._run(go())  # type: ignore[no-any-return]

    def close(self) -> None:
        for c in self._clients.values():
            if self.mode == "sync":
                c.close()
            else:
                self._run(c.aclose())
        for t in self.transports:
            t.close()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            assert self._thread is not None
            self._thread.join(10)
            self._loop.close()


@pytest.fixture(params=["sync", "async"])
def caller(request: Any, registry: CollectorRegistry) -> Iterator[Caller]:
    c = Caller(request.param, registry)
    yield c
    c.close()
