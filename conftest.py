"""Every Python block in docs/*.md and README.md runs as a test (Sybil).

- A page's blocks run in order in one namespace, as a reader pastes them. Top-level
  ``await`` / ``async with`` / ``async for`` work: such a block runs on the page's own event
  loop, so asyncio objects made in one block keep working in the next.
- ``<!-- invisible-code-block: python ... -->`` holds setup a reader does not need to see
  (a stand-in ``send_sms``, an app to wrap) and the checks that make an example prove
  something (an ``assert`` on what it returned).
- Blocks that are not Python to run use another fence language (``sh``, ``console``,
  ``text``, ``toml``), or ``<!-- skip: next "why" -->`` before them; keep that set small.
- docs/frameworks.md shows the framework test apps' code verbatim
  (``tests/frameworks/apps``): each of its blocks must be one of those snippets, which
  ``tests/frameworks/test_matrix.py`` runs behind real servers.
- The ``docs_env`` fixture gives every block a real redis-server (``REDIS_URL``; the db is
  flushed when a page starts, and a page's blocks share it) and the secrets the pages read
  with ``from_env``. Sybil puts the fixtures (``docs_env``, ``docs_redis_url``,
  ``monkeypatch``) into the page's namespace too.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import unittest
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from sybil import Example, Sybil
from sybil.evaluators.python import pad
from sybil.parsers.markdown import ClearNamespaceParser, PythonCodeBlockParser, SkipParser
from sybil.parsers.markdown.codeblock import CodeBlockParser

ROOT = Path(__file__).parent

# What the pages' from_env(...) calls read. Test values, not secrets.
DOCS_ENV = {
    "STRIPE_WEBHOOK_SECRET": "whsec_docs_test_secret",
    "GITHUB_WEBHOOK_SECRET": "docs-github-secret",
    "TWILIO_AUTH_TOKEN": "docs-twilio-auth-token",
    "CRON_SECRET": "docs-cron-secret",
    # opskit.pii's keyring JSON: one AES-256 key (32 zero bytes, a test key), primary.
    "OPSKIT_PII_KEYRING": '{"primary": 1, "keys": {"1": "' + "A" * 43 + '="}}',
}


def _evaluate(example: Example) -> None:
    """Sybil's PythonEvaluator, plus top-level await on the page's loop."""
    __tracebackhide__ = True
    ns = example.namespace
    missing = ns.get("_docs_redis_missing")
    if missing and "REDIS_URL" in example.document.text:
        raise unittest.SkipTest(missing)
    if ns.pop("_docs_new_page", False) and os.environ.get("REDIS_URL"):
        import redis

        with redis.Redis.from_url(os.environ["REDIS_URL"]) as client:
            client.flushdb()  # each page starts on an empty db; its blocks share it
    source = pad(example.parsed, example.line + example.parsed.line_offset)
    code = compile(
        source, example.path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    result = eval(code, ns)  # noqa: S307 - the page's own code, as exec would run it
    if inspect.iscoroutine(result):
        ns["_docs_loop"].run_until_complete(result)
    ns.pop("__builtins__", None)


class _Python(PythonCodeBlockParser):
    def __init__(self) -> None:
        super().__init__()
        self.codeblock_parser = CodeBlockParser("python", _evaluate)


def _snippet_of_the_tested_apps(example: Example) -> None:
    from frameworks._snippets import all_snippets

    block = str(example.parsed).strip("\n")
    if block not in set(all_snippets().values()):
        raise AssertionError(
            "docs/frameworks.md shows code that no framework test app runs:\n"
            + block.splitlines()[0]
        )


def _setup(namespace: dict[str, Any]) -> None:
    namespace["_docs_loop"] = asyncio.new_event_loop()
    namespace["_docs_new_page"] = True
    namespace["__name__"] = "__main__"  # as a pasted script runs (Flask(__name__) needs one)
    namespace["_docs_structlog"] = structlog.get_config()  # configure_logging() is global


def _teardown(namespace: dict[str, Any]) -> None:
    structlog.configure(**namespace.pop("_docs_structlog"))
    loop = namespace.pop("_docs_loop")
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


@pytest.fixture(scope="session")
def docs_redis_url() -> Iterator[str | None]:
    """A real redis-server for the pages (``REDIS_URL`` from outside wins)."""
    from _redis import REDIS_SERVER, RedisServer

    url = os.environ.get("REDIS_URL")
    if url or REDIS_SERVER is None:
        yield url
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def docs_env(docs_redis_url: str | None, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    # Sybil puts every fixture of the closure into the page's namespace: no `request` here
    # (it would shadow Flask's `request` in a page's views).
    from _redis import MISSING_REASON, REQUIRE

    env = dict(DOCS_ENV)
    if docs_redis_url is None:
        if REQUIRE:
            pytest.fail(f"OPSKIT_REQUIRE_REDIS=1 but {MISSING_REASON}", pytrace=False)
    else:
        env["REDIS_URL"] = docs_redis_url
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def _docs_redis_missing(docs_redis_url: str | None) -> str | None:
    from _redis import MISSING_REASON

    return MISSING_REASON if docs_redis_url is None else None


_FIXTURES = ["docs_env", "_docs_redis_missing"]

# Pages left out for a while (their module mid-change); every page runs today.
IN_PROGRESS: list[str] = []

pages = Sybil(
    parsers=[_Python(), SkipParser(), ClearNamespaceParser()],
    path=".",
    patterns=["README.md", "docs/*.md"],
    excludes=["docs/frameworks.md", *IN_PROGRESS],
    setup=_setup,
    teardown=_teardown,
    fixtures=_FIXTURES,
    name="docs",
)
frameworks = Sybil(
    parsers=[CodeBlockParser("python", _snippet_of_the_tested_apps)],
    path=".",
    patterns=["docs/frameworks.md"],
    name="frameworks",
)

pytest_collect_file = (pages + frameworks).pytest()
