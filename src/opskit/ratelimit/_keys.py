from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from opskit._core.http import Headers


class Request:
    """What a key function sees of a request, whatever the framework.

    ``client_ip`` is the socket peer, or the client behind trusted proxies; ``raw``
    the ASGI scope or the WSGI environ. ``headers`` may be given as a function
    making them: they are then built on first use (most keys never read them).
    """

    __slots__ = ("_headers", "client_ip", "method", "path", "raw")

    def __init__(self, method: str, path: str, headers: Headers | Callable[[], Headers],
                 client_ip: str | None, raw: Any = None) -> None:  # fmt: skip
        self.method = method
        self.path = path
        self._headers = headers
        self.client_ip = client_ip
        self.raw = raw

    @property
    def headers(self) -> Headers:
        headers = self._headers
        if not isinstance(headers, Headers):
            headers = self._headers = headers()
        return headers

    def __repr__(self) -> str:
        return f"Request({self.method!r}, {self.path!r}, client_ip={self.client_ip!r})"


KeyFunc = Callable[[Request], "str | None"]


def by_ip(request: Request) -> str | None:
    """The client address (through ``trusted_proxies`` only: forged headers change nothing)."""
    return ip_key(request.client_ip)


IP_PREFIX = "ip:"


def ip_key(ip: str | None) -> str | None:
    """The key :func:`by_ip` makes of a client address."""
    return None if ip is None else IP_PREFIX + ip


def by_header(name: str) -> KeyFunc:
    """The value of header ``name``, hashed before it becomes a key (API keys are secrets).

    A request without the header is not limited by the rule (the key is None).
    """
    label = name.lower()

    def key(request: Request) -> str | None:
        value = request.headers.get(name)
        if not value:
            return None
        digest = hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        return f"h:{label}:{digest}"

    key.__name__ = f"by_header({name!r})"
    return key
