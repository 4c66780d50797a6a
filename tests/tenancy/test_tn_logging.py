"""Log lines carry tenant_id: structlog through contextvars, stdlib through the filter."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from opskit.tenancy import TenantLogFilter, tenant_scope


@pytest.fixture
def structlog_json() -> Iterator[io.StringIO]:
    out = io.StringIO()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars,
                    structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )  # fmt: skip
    try:
        yield out
    finally:
        structlog.reset_defaults()


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_structlog_lines_carry_tenant_id(structlog_json: io.StringIO) -> None:
    log = structlog.get_logger("app")
    log.info("before")
    with tenant_scope("acme"):
        log.info("inside")
        with tenant_scope("globex"):
            log.info("nested")
        with tenant_scope(None):
            log.info("none")
    log.info("after")
    got = [(line["event"], line.get("tenant_id")) for line in lines(structlog_json)]
    assert got == [("before", None), ("inside", "acme"), ("nested", "globex"),
                   ("none", None), ("after", None)]  # fmt: skip


def test_structlog_bind_contextvars_shares_the_key(structlog_json: io.StringIO) -> None:
    """The scope uses structlog's own variable: clear_contextvars clears it too, and
    there are never two tenant_id values."""
    log = structlog.get_logger("app")
    with tenant_scope("acme"):
        structlog.contextvars.clear_contextvars()
        log.info("cleared")
    log.info("after")
    assert [line.get("tenant_id") for line in lines(structlog_json)] == [None, None]


def test_stdlib_filter_sets_record_tenant_id() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(TenantLogFilter())
    handler.setFormatter(logging.Formatter("%(tenant_id)s %(message)s"))
    logger = logging.getLogger("opskit.tests.tenancy")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.info("outside")
        with tenant_scope("acme"):
            logger.info("inside")
            logger.info("explicit", extra={"tenant_id": "given"})
    finally:
        logger.removeHandler(handler)
    assert out.getvalue().splitlines() == ["None outside", "acme inside", "given explicit"]


def test_filter_never_drops_a_record() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    assert TenantLogFilter().filter(record) is True and record.tenant_id is None  # type: ignore[attr-defined]
