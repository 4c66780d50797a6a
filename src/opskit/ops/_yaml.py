"""A small YAML writer for the rule file: mappings, lists, strings and numbers.

Strings are written as JSON strings, which are YAML double-quoted scalars, so
PromQL and Go templates (``{{ $labels.name }}``) need no further escaping.
The core install has no YAML library; reading a ``--config`` file needs the
``[ops]`` extra (PyYAML), writing the rules does not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["dump"]

# Left raw, a YAML reader folds these (line breaks inside a scalar) or refuses them (not
# printable); JSON's escapes leave them alone. Characters beyond U+FFFF stay raw: JSON
# would write a surrogate pair, which YAML reads as two characters.
_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")


# Keys written bare: lower-case names that YAML 1.1 does not read as a bool or a null.
_BARE = re.compile("[a-z_][a-z0-9_]*")
_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})


def _escape(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group()):04x}"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        text = repr(value)  # YAML 1.1 reads 1e-09 as a string: it wants 1.0e-09
        if "e" in text and "." not in text:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, str):
        return _UNSAFE.sub(_escape, json.dumps(value, ensure_ascii=False))
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        out: list[str] = []
        for key, item in value.items():
            k = str(key) if _BARE.fullmatch(str(key)) and key not in _WORDS else _scalar(str(key))
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
