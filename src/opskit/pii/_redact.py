"""Redaction for logs: ``Redacted`` values, a structlog processor and a stdlib
``logging.Filter``.

Named fields (matched case-insensitively, anywhere: nested dicts, lists and
tuples included) are masked (``"***"``), hashed (keyed HMAC-SHA256, truncated;
stable across processes when ``hash_key`` is given) or dropped. ``patterns``
also mask emails, phone numbers and Luhn-valid card numbers inside any string
value, keeping the text around them.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from hashlib import sha256
from typing import Any, Literal

__all__ = ["MASK", "Redacted", "RedactingFilter", "redact_processor", "redact_text"]

MASK = "***"
Mode = Literal["mask", "hash", "drop"]
_PATTERNS = ("email", "phone", "card")
_DROP = object()


class Redacted:
    """A value that prints as ``Redacted('***')``; :meth:`reveal` gives it back."""

    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    def reveal(self) -> Any:
        return self._value

    def __repr__(self) -> str:
        return "Redacted('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Redacted):
            return bool(hmac.compare_digest(repr(self._value), repr(other._value)))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(Redacted)

    def __reduce__(self) -> Any:
        raise TypeError("a Redacted value is not pickled")


# -- patterns -------------------------------------------------------------------------------

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# 13-19 digits, single spaces or dashes between them; kept only when Luhn-valid.
_CARD = re.compile(r"(?<![\w.+-])(?<!\d[ -])\d(?:[ -]?\d){12,18}(?!\w|[.-]\w|[ -]\d)")
# An optional + and 7-15 digits with single spaces, dots or dashes between them;
# not inside a longer word or number, not an ISO date or a dotted-quad address.
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_PHONE = re.compile(
    r"(?<![\w.+-])(?<!\d[ .-])"  # not inside a longer word or number
    r"(?!\d{4}-\d{2}-\d{2}(?!\d))"  # not an ISO date
    rf"(?!{_OCTET}(?:\.{_OCTET}){{3}}(?![\d.]))"  # not an IPv4 address
    r"\+?\d(?:[ .-]?\d){6,14}"
    r"(?!\w|[.-]\w|[ .-]\d)"
)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group())
    return MASK if _luhn(digits) else m.group()


def redact_text(text: str, patterns: Iterable[str] = _PATTERNS) -> str:
    """``text`` with emails, phone numbers and card numbers (as asked) masked."""
    chosen = set(patterns)
    if "card" in chosen:
        text = _CARD.sub(_card, text)
    if "email" in chosen:
        text = _EMAIL.sub(MASK, text)
    if "phone" in chosen:
        text = _PHONE.sub(MASK, text)
    return text


# -- the engine both adapters share ---------------------------------------------------------


class _Redactor:
    __slots__ = ("fields", "hash_key", "mode", "patterns")

    def __init__(
        self,
        fields: Iterable[str],
        mode: Mode,
        patterns: Iterable[str],
        hash_key: bytes | str | None,
    ) -> None:
        if isinstance(fields, str):
            raise TypeError("fields is a collection of names, not one str")
        if mode not in ("mask", "hash", "drop"):
            raise ValueError('mode is "mask", "hash" or "drop"')
        if isinstance(patterns, str):
            raise TypeError('patterns is a collection such as ("email", "phone", "card")')
        self.patterns = tuple(patterns)
        for p in self.patterns:
            if p not in _PATTERNS:
                raise ValueError(f"unknown pattern {p!r}; known: email, phone, card")
        if isinstance(hash_key, str):
            hash_key = hash_key.encode("utf-8")
        if hash_key is not None and not isinstance(hash_key, bytes):
            raise TypeError("hash_key is bytes, str or None")
        self.fields = frozenset(f.casefold() for f in fields)
        self.mode = mode
        # Without a key, hashes are stable within this process only.
        self.hash_key = hash_key if hash_key else secrets.token_bytes(32)

    def _hash(self, value: Any) -> str:
        if isinstance(value, Redacted):
            value = value.reveal()
        data = value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
        return "sha256:" + hmac.new(self.hash_key, data, sha256).hexdigest()[:16]

    def field(self, value: Any) -> Any:
        """What a named field's value becomes (``_DROP`` to drop it)."""
        if self.mode == "drop":
            return _DROP
        if self.mode == "hash" and not isinstance(value, (dict, list, tuple, set)):
            return self._hash(value)
        return MASK

    def value(self, value: Any, depth: int = 0) -> Any:
        """``value`` with named fields and patterns redacted, as a new object."""
        if isinstance(value, str):
            return redact_text(value, self.patterns) if self.patterns else value
        if isinstance(value, Redacted):
            return MASK
        if depth > 32:  # a cycle or a pathological nesting: give up safely
            return MASK
        if isinstance(value, Mapping):
            return self.mapping(value, depth + 1)
        if isinstance(value, (list, tuple)):
            out = [self.value(v, depth + 1) for v in value]
            return out if isinstance(value, list) else tuple(out)
        return value

    def mapping(self, data: Mapping[Any, Any], depth: int = 0) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for k, v in data.items():
            if isinstance(k, str) and k.casefold() in self.fields:
                new = self.field(v)
                if new is not _DROP:
                    out[k] = new
            else:
                out[k] = self.value(v, depth)
        return out


def redact_processor(
    fields: Iterable[str] = (),
    mode: Mode = "mask",
    patterns: Iterable[str] = (),
    hash_key: bytes | str | None = None,
) -> Callable[[Any, str, MutableMapping[str, Any]], MutableMapping[str, Any]]:
    """A structlog processor redacting ``fields`` (and ``patterns``) anywhere in the event.

    Place it before the renderer. Nested containers are copied, never changed
    in place, so objects the caller logged keep their values.
    """
    redactor = _Redactor(fields, mode, patterns, hash_key)

    def processor(
        logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for k in list(event_dict):
            v = event_dict[k]
            if isinstance(k, str) and k.casefold() in redactor.fields and k != "event":
                new = redactor.field(v)
                if new is _DROP:
                    del event_dict[k]
                else:
                    event_dict[k] = new
            else:
                event_dict[k] = redactor.value(v)
        return event_dict

    return processor


_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class RedactingFilter(logging.Filter):
    """A stdlib ``logging`` filter doing what :func:`redact_processor` does.

    Redacts the message, its args (a dict argument's fields included; any
    other object is replaced by its redacted ``str`` when patterns are set)
    and ``extra`` fields. It never drops a record.
    """

    def __init__(
        self,
        fields: Iterable[str] = (),
        patterns: Iterable[str] = (),
        mode: Mode = "mask",
        hash_key: bytes | str | None = None,
        name: str = "",
    ) -> None:
        super().__init__(name)
        self._r = _Redactor(fields, mode, patterns, hash_key)

    def _arg(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float, str, Mapping, list, tuple)):
            return self._r.value(value)
        if isinstance(value, Redacted):
            return MASK
        if self._r.patterns:
            return redact_text(str(value), self._r.patterns)
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        r = self._r
        if isinstance(record.msg, str):
            record.msg = r.value(record.msg)
        elif isinstance(record.msg, Redacted):
            record.msg = MASK
        args = record.args
        if isinstance(args, Mapping):
            record.args = r.mapping(args)
        elif isinstance(args, tuple):
            record.args = tuple(self._arg(a) for a in args)
        for key in [k for k in vars(record) if k not in _RECORD_ATTRS]:
            value = record.__dict__[key]
            if key.casefold() in r.fields:
                new = r.field(value)
                if new is _DROP:
                    del record.__dict__[key]
                else:
                    record.__dict__[key] = new
            else:
                record.__dict__[key] = self._arg(value)
        return True
