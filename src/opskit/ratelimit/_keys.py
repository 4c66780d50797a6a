from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opskit._core.http import Headers


@dataclass(frozen=True)
class Request:
    """What a key function sees of a request, whatever the framework."""

    method: str
    path: str
    headers: Headers
    client_ip: str | None  # the socket peer, or the client behind trusted proxies
    raw: Any = None  # the ASGI scope or the WSGI environ


KeyFunc = Callable[[Request], "str | None"]


def by_ip(request: Request) -> str | None:
    """The client address (through ``trusted_proxies`` only: forged headers change nothing)."""
    return None if request.client_ip is None else f"ip:{request.client_ip}"


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
