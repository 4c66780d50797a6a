"""Pure-ASGI plumbing: typed callables, body buffering and replay, problem responses.

No framework is imported. Middleware built on this passes every scope it does
not handle (``lifespan``, ``websocket``) through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from opskit._core.http import PROBLEM_CONTENT_TYPE, BodyTooLarge, Headers, problem_json

__all__ = [
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "buffered_receive",
    "read_body",
    "request_headers",
    "send_problem",
    "send_response",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def request_headers(scope: Scope) -> Headers:
    return Headers.from_asgi(scope.get("headers") or ())


async def read_body(scope: Scope, receive: Receive, max_bytes: int | None = None) -> bytes:
    """Read every ``http.request`` message into one ``bytes``.

    Raises :class:`BodyTooLarge` as soon as the declared ``content-length`` or the
    bytes received exceed ``max_bytes``, without reading the rest. A client that
    disconnects mid-body yields what arrived so far.
    """
    if max_bytes is not None:
        declared = request_headers(scope).get("content-length")
        declared = declared.strip() if declared is not None else None
        # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
        if declared and declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
            raise BodyTooLarge(max_bytes)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # http.disconnect
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise BodyTooLarge(max_bytes)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def buffered_receive(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that first hands the app the whole ``body``, then relays ``receive``.

    Relaying afterwards keeps ``http.disconnect`` reaching the app.
    """
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    headers: Iterable[tuple[str, str]] = (),
) -> None:
    raw = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode()),
    ]
    raw.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_problem(
    send: Send,
    status: int,
    title: str | None = None,
    *,
    detail: str | None = None,
    type: str = "about:blank",
    headers: Iterable[tuple[str, str]] = (),
    **extensions: Any,
) -> None:
    """Send an RFC 9457 ``application/problem+json`` response with extra headers."""
    body = problem_json(status, title, detail=detail, type=type, **extensions)
    await send_response(send, status, body, content_type=PROBLEM_CONTENT_TYPE, headers=headers)
