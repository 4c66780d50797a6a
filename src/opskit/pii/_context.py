"""Associated data from a ``context``, fixed so any language can reproduce it.

``None`` or an empty mapping is empty associated data; a mapping of str to str
is its JSON with sorted keys, no spaces and UTF-8 kept as is; ``bytes`` is the
associated data itself. Anything else is a ``TypeError``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TypeAlias, Union, cast

__all__ = ["Context", "aad"]

Context: TypeAlias = Union[Mapping[str, str], bytes, None]  # noqa: UP007 - py3.10 runtime alias

_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_BAD = "context must be None, bytes, or a mapping of str to str"


# Contexts repeat (a tenant and a field name): their encodings are remembered,
# keyed by the items as given. Bounded: the memo is emptied when full.
_memo: dict[tuple[tuple[object, object], ...], bytes] = {}
_MEMO_MAX = 4096


def aad(context: object) -> bytes:
    """The associated data for ``context`` (see the module docstring)."""
    if context is None:
        return b""
    cls = context.__class__
    if cls is dict:
        try:
            key = tuple(context.items())  # type: ignore[attr-defined]
            return _memo[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable value: not a str
            raise TypeError(_BAD) from None
        out = _encode(cast("dict[object, object]", context))
        if len(_memo) >= _MEMO_MAX:
            _memo.clear()
        _memo[key] = out
        return out
    if cls is bytes:
        return context  # type: ignore[return-value]
    if isinstance(context, bytes):
        return bytes(context)
    if isinstance(context, Mapping):
        return _encode(dict(context))
    raise TypeError(_BAD)


def _encode(context: Mapping[object, object]) -> bytes:
    if not context:
        return b""
    for k, v in context.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(_BAD)
    return _ENCODE(context).encode()
