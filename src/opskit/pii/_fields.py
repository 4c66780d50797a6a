"""Field-by-field encryption of a record, each field bound to its name."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opskit.pii._context import Context, aad

__all__ = ["decrypt_fields", "encrypt_fields"]

_Str = Callable[[str, Context], str]
_Bytes = Callable[[bytes, Context], bytes]


def _base(context: Context) -> dict[str, str]:
    if context is None:
        return {}
    if isinstance(context, Mapping):
        aad(context)  # the same TypeError for a bad mapping
        return dict(context)
    raise TypeError("field encryption needs a mapping context (or None)")


def _each(
    on_str: Callable[..., Any],
    on_bytes: Callable[..., Any],
    record: Mapping[str, Any],
    fields: Sequence[str],
    context: Context,
) -> dict[str, Any]:
    if isinstance(fields, str):
        raise TypeError("fields is a list of names, not one str")
    base = _base(context)
    out = dict(record)
    for name in fields:
        value = out.get(name)
        if value is None:
            continue
        ctx = {**base, "field": name}
        if isinstance(value, str):
            out[name] = on_str(value, ctx)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            out[name] = on_bytes(bytes(value), ctx)
        else:
            raise TypeError(f"field {name!r} is neither str nor bytes")
    return out


def encrypt_fields(
    encrypt: _Str, encrypt_bytes: _Bytes, record: Mapping[str, Any], fields: Sequence[str],
    context: Context,
) -> dict[str, Any]:  # fmt: skip
    """A copy of ``record``: str fields as tokens, bytes fields as wire bytes."""
    return _each(encrypt, encrypt_bytes, record, fields, context)


def decrypt_fields(
    decrypt: _Str, decrypt_bytes: _Bytes, record: Mapping[str, Any], fields: Sequence[str],
    context: Context,
) -> dict[str, Any]:  # fmt: skip
    """The inverse of :func:`encrypt_fields`."""
    return _each(decrypt, decrypt_bytes, record, fields, context)
