"""PEP 3333 plumbing: body buffering with a cap, header access, problem responses."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, Protocol

from opskit._core.http import (
    PROBLEM_CONTENT_TYPE,
    BodyTooLarge,
    Headers,
    problem_json,
    status_line,
)

__all__ = [
    "Environ",
    "StartResponse",
    "WSGIApp",
    "problem_response",
    "read_body",
    "request_headers",
    "response",
]

Environ = MutableMapping[str, Any]


class StartResponse(Protocol):
    def __call__(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: Any = ...,
        /,
    ) -> Callable[[bytes], object]: ...


WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_CHUNK = 65536


def request_headers(environ: Environ) -> Headers:
    return Headers.from_environ(environ)


def read_body(environ: Environ, max_bytes: int | None = None) -> bytes:
    """Read the request body once and put a fresh ``wsgi.input`` back for the app.

    Reads exactly ``CONTENT_LENGTH`` bytes; without one it reads to the end only
    when the server says the input is terminated (``wsgi.input_terminated``),
    else the body is empty (PEP 3333). Raises :class:`BodyTooLarge` past
    ``max_bytes`` without reading the rest.
    """
    stream = environ.get("wsgi.input")
    raw_length = str(environ.get("CONTENT_LENGTH") or "").strip()
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    length = int(raw_length) if raw_length.isascii() and raw_length.isdigit() else None
    if length is not None and max_bytes is not None and length > max_bytes:
        raise BodyTooLarge(max_bytes)
    chunks: list[bytes] = []
    size = 0
    if stream is not None and (length or environ.get("wsgi.input_terminated")):
        remaining = length
        while remaining is None or remaining > 0:
            want = _CHUNK if remaining is None else min(_CHUNK, remaining)
            chunk = stream.read(want)
            if not chunk:
                break
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise BodyTooLarge(max_bytes)
            chunks.append(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    body = b"".join(chunks)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


def response(
    start_response: StartResponse,
    status: int,
    body: bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    headers: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    all_headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    all_headers.extend(headers)
    start_response(status_line(status), all_headers)
    return [body]


def problem_response(
    start_response: StartResponse,
    status: int,
    title: str | None = None,
    *,
    detail: str | None = None,
    type: str = "about:blank",
    headers: Iterable[tuple[str, str]] = (),
    **extensions: Any,
) -> list[bytes]:
    """Start an RFC 9457 ``application/problem+json`` response; return its body iterable."""
    body = problem_json(status, title, detail=detail, type=type, **extensions)
    return response(
        start_response, status, body, content_type=PROBLEM_CONTENT_TYPE, headers=headers
    )
