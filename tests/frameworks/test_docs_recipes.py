"""docs/frameworks.md shows the framework apps' code as the matrix runs it, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from frameworks._snippets import all_snippets

DOC = Path(__file__).parents[2] / "docs" / "frameworks.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def test_every_python_block_is_a_snippet_of_the_tested_apps() -> None:
    known = set(all_snippets().values())
    blocks = [b.strip("\n") for b in BLOCK.findall(DOC.read_text())]
    assert blocks, "no python block found"
    strays = [b.splitlines()[0] for b in blocks if b not in known]
    assert not strays, f"python blocks in docs/frameworks.md that no test runs: {strays}"


def test_every_recipe_is_in_the_docs() -> None:
    text = DOC.read_text()
    missing = [name for name, snippet in all_snippets().items() if snippet not in text]
    assert not missing, f"snippets missing from docs/frameworks.md: {missing}"
