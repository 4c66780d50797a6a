"""The marked parts of the framework apps (``# --8<-- [start:NAME]`` ... ``[end:NAME]``),
which docs/frameworks.md shows verbatim."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

APPS = Path(__file__).parent / "apps"
_MARK = re.compile(r"^\s*# --8<-- \[(start|end):([\w-]+)\]\s*$")


def snippets(path: Path) -> dict[str, str]:
    """NAME -> the dedented lines between its markers, without blank edges."""
    out: dict[str, str] = {}
    open_: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        m = _MARK.match(line)
        if m is None:
            for lines in open_.values():
                lines.append(line)
        elif m[1] == "start":
            open_[m[2]] = []
        else:
            out[m[2]] = textwrap.dedent("\n".join(open_.pop(m[2]))).strip("\n")
    assert not open_, f"{path.name}: unclosed snippet(s) {sorted(open_)}"
    return out


def all_snippets() -> dict[str, str]:
    """``"<file stem>:<name>"`` -> text, for every app module."""
    return {
        f"{path.stem}:{name}": text
        for path in sorted(APPS.glob("*.py"))
        for name, text in snippets(path).items()
    }
