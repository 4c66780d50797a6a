"""A small YAML writer for the rule file: mappings, lists, strings and numbers.

Strings are written as JSON strings, which are YAML double-quoted scalars, so
PromQL and Go templates (``{{ $labels.name }}``) need no further escaping.
The core install has no YAML library; reading a ``--config`` file needs the
``[ops]`` extra (PyYAML), writing the rules does not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["dump"]


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        out: list[str] = []
        for key, item in value.items():
            k = _scalar(str(key)) if not str(key).isidentifier() else str(key)
            if isinstance(item, (Mapping, list, tuple)) and item:
                out.append(f"{pad}{k}:")
                out.extend(_lines(item, indent + 2))
            else:
                out.append(f"{pad}{k}: {_empty(item) or _scalar(item)}")
        return out
    if isinstance(value, Sequence) and not isinstance(value, str):
        out = []
        for item in value:
            inner = _lines(item, indent + 2)
            if isinstance(item, (Mapping, list, tuple)) and item:
                out.append(f"{pad}- {inner[0].lstrip()}")
                out.extend(inner[1:])
            else:
                out.append(f"{pad}- {_empty(item) or _scalar(item)}")
        return out
    return [pad + _scalar(value)]


def _empty(value: Any) -> str:
    if isinstance(value, Mapping) and not value:
        return "{}"
    if isinstance(value, (list, tuple)) and not value:
        return "[]"
    return ""


def dump(doc: Mapping[str, Any]) -> str:
    """``doc`` as YAML text (block style), ending in a newline."""
    return "\n".join(_lines(doc, 0)) + "\n"
