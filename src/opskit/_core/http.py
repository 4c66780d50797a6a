"""Framework-free HTTP pieces shared by the ASGI and WSGI adapters.

:class:`Headers` gives case-insensitive access to request headers that may be
repeated, from ASGI raw pairs, a WSGI environ, or any mapping (a dict, a
Starlette ``Headers``, a Werkzeug ``EnvironHeaders``, an ``email.Message``).
:func:`problem_json` builds RFC 9457 ``application/problem+json`` bodies.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import Any

from opskit import OpskitError

__all__ = ["PROBLEM_CONTENT_TYPE", "BodyTooLarge", "Headers", "problem_json", "status_line"]

PROBLEM_CONTENT_TYPE = "application/problem+json"


class BodyTooLarge(OpskitError):
    """The request body is larger than the adapter's cap."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


class Headers:
    """Read-only, case-insensitive, multi-valued request headers.

    ``get(name)`` joins repeated headers with ``", "`` (RFC 9110 list semantics);
    ``getall(name)`` returns each occurrence.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: dict[str, list[str]] = {}
        for name, value in items:
            self._items.setdefault(name.lower(), []).append(value)

    @classmethod
    def from_asgi(cls, raw: Iterable[tuple[bytes, bytes]]) -> Headers:
        return cls((_text(k), _text(v)) for k, v in raw)

    @classmethod
    def from_environ(cls, environ: Mapping[str, Any]) -> Headers:
        items: list[tuple[str, str]] = []
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                items.append((key[5:].replace("_", "-"), str(value)))
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
                items.append((key.replace("_", "-"), str(value)))
        return cls(items)

    @classmethod
    def of(cls, headers: Any) -> Headers:
        """Wrap anything header-like: ``Headers``, a mapping, pairs, or ASGI raw pairs."""
        if isinstance(headers, Headers):
            return headers
        if headers is None:
            return cls()
        getlist = getattr(headers, "getlist", None) or getattr(headers, "get_all", None)
        if callable(getlist) and hasattr(headers, "keys"):
            items: list[tuple[str, str]] = []
            # .keys(): iterating a Werkzeug EnvironHeaders yields pairs, not names.
            for k in {str(_text(k)).lower() for k in headers.keys()}:  # noqa: SIM118
                items.extend((k, _text(v)) for v in (getlist(k) or []))
            return cls(items)
        if isinstance(headers, Mapping):
            return cls((_text(k), _text(v)) for k, v in headers.items())
        return cls((_text(k), _text(v)) for k, v in headers)

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._items.get(name.lower())
        if not values:
            return default
        return values[0] if len(values) == 1 else ", ".join(values)

    def getall(self, name: str) -> list[str]:
        return list(self._items.get(name.lower(), ()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> Iterator[tuple[str, str]]:
        for name, values in self._items.items():
            for v in values:
                yield name, v

    def __repr__(self) -> str:
        # Names only: values may carry secrets (Authorization, signatures).
        return f"Headers({sorted(self._items)!r})"


def status_line(status: int) -> str:
    """``"429 Too Many Requests"`` for WSGI ``start_response``."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def problem_json(
    status: int,
    title: str | None = None,
    *,
    detail: str | None = None,
    type: str = "about:blank",
    instance: str | None = None,
    **extensions: Any,
) -> bytes:
    """An RFC 9457 problem document, UTF-8 encoded."""
    if title is None:
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "Error"
    doc: dict[str, Any] = {"type": type, "title": title, "status": status}
    if detail is not None:
        doc["detail"] = detail
    if instance is not None:
        doc["instance"] = instance
    doc.update(extensions)
    return json.dumps(doc, separators=(",", ":")).encode()
