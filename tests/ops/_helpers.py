"""Helpers for the ops tests: external tools that CI must have (promtool, chromium)."""

from __future__ import annotations

import os
import shutil

import pytest

#: CI (CI=true, or the Redis requirement .ci/run sets) must run these tests, never skip them.
REQUIRED = (
    os.environ.get("CI", "").lower() == "true" or os.environ.get("OPSKIT_REQUIRE_REDIS") == "1"
)


def require_tool(name: str, package: str) -> str:
    """The path of ``name``; a skip when it is missing locally, a failure in CI."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} not found (Debian package {package}; .ci/run installs it)"
        if REQUIRED:
            pytest.fail(f"CI requires it: {reason}", pytrace=False)
        pytest.skip(reason)
    return path
