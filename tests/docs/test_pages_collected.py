"""The Sybil configuration (the root conftest.py) runs every Python block of every page.

A block Sybil does not see would pass silently: a fence spelled ``py``, a page left out
of the patterns. These tests count the fences themselves and compare.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).parents[2]
FENCE = re.compile(r"^[ \t]*```[ \t]*(\w+)", re.M)
PYTHON_SPELLINGS = {"py", "py3", "python3", "pycon", "ipython"}


def _conftest() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_docs_conftest", ROOT / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONF = _conftest()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _sybil_for(page: Path) -> object | None:
    for sybil in (CONF.pages, CONF.frameworks):
        if sybil.should_parse(page):
            return sybil
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_fence_is_an_example(page: Path) -> None:
    rel = str(page.relative_to(ROOT))
    langs = FENCE.findall(page.read_text())
    odd = sorted({lang for lang in langs if lang in PYTHON_SPELLINGS})
    assert not odd, f"{rel}: spell Python fences ```python (Sybil runs only those): {odd}"
    fences = langs.count("python")
    sybil = _sybil_for(page)
    if sybil is None:
        assert rel in CONF.IN_PROGRESS, f"{rel} is not collected by conftest.py"
        return
    document = sybil.parse(page)  # type: ignore[attr-defined]
    shown = [
        e
        for e in document.examples()
        if e.region.lexemes.get("arguments") == "python" and "directive" not in e.region.lexemes
    ]
    assert len(shown) == fences, f"{rel}: {fences} python fences, Sybil runs {len(shown)}"


def test_the_in_progress_list_only_holds_pages() -> None:
    for rel in CONF.IN_PROGRESS:
        assert rel.startswith("docs/") and rel.endswith(".md")
