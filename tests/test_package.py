from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import opskit


def test_public_api_is_pinned() -> None:
    assert opskit.__all__ == ["OpskitError", "__version__"]
    assert issubclass(opskit.OpskitError, Exception)
    assert opskit.__version__


def test_py_typed_ships() -> None:
    assert (Path(opskit.__file__).parent / "py.typed").exists()


def test_importing_opskit_imports_nothing_heavy() -> None:
    code = (
        "import sys, opskit; "
        "heavy = [m for m in ('redis', 'cryptography', 'tenacity', 'prometheus_client', "
        "'structlog', 'httpx') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
