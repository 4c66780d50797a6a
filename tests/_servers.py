"""Real servers for end-to-end adapter tests: uvicorn (ASGI) and waitress (WSGI)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
import waitress
from waitress import wasyncore


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def run_uvicorn(app: Any, **config: Any) -> Iterator[tuple[str, uvicorn.Server, threading.Thread]]:
    """Serve ``app`` with uvicorn on a free loopback port; yield its base URL, the server
    and its thread. ``config`` overrides uvicorn.Config's options (``lifespan="on"``,
    ``timeout_keep_alive=...``, ``ws=...``)."""
    port = free_port()
    # proxy_headers=False: uvicorn would otherwise rewrite the client address from
    # X-Forwarded-For itself (it trusts 127.0.0.1 by default), before any middleware.
    options: dict[str, Any] = {"log_level": "warning", "lifespan": "off", "proxy_headers": False}
    options.update(config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:  # polling a real server's start-up, not waiting for time
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", server, thread
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def run_asgi(app: Any, **config: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yield its base URL."""
    with run_uvicorn(app, **config) as (url, _server, _thread):
        yield url


@contextmanager
def run_wsgi(app: Any) -> Iterator[str]:
    """Serve ``app`` with waitress on a free loopback port; yield its base URL."""
    port = free_port()
    # Pass X-Forwarded-* through (waitress strips them from untrusted peers by default):
    # the middleware under test decides whom to trust.
    server = waitress.create_server(app, host="127.0.0.1", port=port, threads=4,
                                    clear_untrusted_proxy_headers=False)  # fmt: skip
    stop = threading.Event()

    def serve() -> None:
        # waitress's own run() loops until its sockets are closed, and closing them from
        # another thread races its select() (EBADF). This loop checks ``stop`` between
        # polls and closes every socket itself, from this thread; the test thread never
        # touches the server's descriptors.
        while not stop.is_set():
            wasyncore.loop(timeout=0.05, map=server._map, count=1)
        wasyncore.close_all(server._map)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.task_dispatcher.shutdown()  # workers first: a finishing one wakes the loop
        stop.set()
        thread.join(10)
