"""Associated data from a ``context``, fixed so any language can reproduce it.

``None`` or an empty mapping is empty associated data; a mapping of str to str
is its JSON with sorted keys, no spaces and UTF-8 kept as is; ``bytes`` is the
associated data itself. Anything else is a ``TypeError``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TypeAlias, Union

__all__ = ["Context", "aad"]

Context: TypeAlias = Union[Mapping[str, str], bytes, None]  # noqa: UP007 - py3.10 runtime alias

_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_BAD = "context must be None, bytes, or a mapping of str to str"


def aad(context: object) -> bytes:
    """The associated data for ``context`` (see the module docstring)."""
    if context is None:
        return b""
    if isinstance(context, bytes):
        return bytes(context)
    if isinstance(context, Mapping):
        if not context:
            return b""
        for k, v in context.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(_BAD)
        if type(context) is not dict:
            context = dict(context)
        return _ENCODE(context).encode()
    raise TypeError(_BAD)
