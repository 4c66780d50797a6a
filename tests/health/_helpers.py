"""Real local servers for the health checks: an ASGI upstream under uvicorn, a TCP listener."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from _servers import run_asgi, run_uvicorn


class Upstream:
    """``/ok`` 200 "OK", ``/err`` 500, ``/hang`` answers only once ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.hanging = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/hang":
            self.hanging.set()
            await asyncio.to_thread(self.release.wait, 30)  # until the test releases it
        status, body = {"/ok": (200, b"OK"), "/err": (500, b"oops"), "/hang": (200, b"late")}.get(
            path, (404, b"no")
        )
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


@contextmanager
def upstream() -> Iterator[tuple[str, Upstream]]:
    app = Upstream()
    with run_asgi(app) as base:
        try:
            yield base, app
        finally:
            app.release.set()


@contextmanager
def tcp_listener() -> Iterator[int]:
    """A plain listening socket on 127.0.0.1 that accepts and closes connections."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def run_asgi_lifespan(app: Any) -> Iterator[tuple[str, Any]]:
    """uvicorn with the lifespan protocol on; yields the base URL and the server."""
    with run_uvicorn(app, lifespan="on") as (url, server, thread):
        yield url, (server, thread)
