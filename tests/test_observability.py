from __future__ import annotations

import io
import json
import re
from typing import Any

import httpx
import pytest
import structlog
from prometheus_client import CollectorRegistry, Counter

from opskit._core.telemetry import get_logger
from opskit.observability import configure_logging, metrics_asgi_app, metrics_wsgi_app


@pytest.fixture(autouse=True)
def _restore_structlog() -> Any:
    yield
    structlog.reset_defaults()


def test_configure_logging_writes_json_lines_with_context() -> None:
    out = io.StringIO()
    configure_logging(json=True, level="INFO", stream=out)
    structlog.contextvars.bind_contextvars(request_id="r-1")
    try:
        get_logger("breaker").warning("breaker.opened", name="payments")
        get_logger("breaker").debug("breaker.noise")  # below the level: dropped
    finally:
        structlog.contextvars.clear_contextvars()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["event"] == "breaker.opened"
    assert rec["level"] == "warning"
    assert rec["logger"] == "opskit.breaker"
    assert rec["request_id"] == "r-1"
    assert rec["name"] == "payments"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", rec["timestamp"])


def test_configure_logging_applies_to_loggers_created_before_it() -> None:
    early = get_logger("ratelimit")  # as a module does at import time
    out = io.StringIO()
    configure_logging(json=True, level="WARNING", stream=out)
    early.info("ratelimit.ignored")
    early.warning("ratelimit.store_unavailable", policy="local")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["logger"] == "opskit.ratelimit"
    assert "opskit.ratelimit" in repr(early)
    bound = early.bind(instance="x")
    bound.warning("ratelimit.other")
    assert json.loads(out.getvalue().splitlines()[1])["instance"] == "x"


def test_configure_logging_console_and_bad_level() -> None:
    out = io.StringIO()
    configure_logging(json=False, level=10, stream=out)
    get_logger("retry").info("retry.scheduled", attempt=2)
    assert "retry.scheduled" in out.getvalue()
    assert "attempt=2" in out.getvalue()
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging(level="LOUD")


def _registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    Counter("opskit_test_things", "Things.", registry=reg).inc(3)
    return reg


async def test_metrics_asgi_app_serves_the_exposition() -> None:
    app = metrics_asgi_app(_registry())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert "opskit_test_things_total 3.0" in resp.text


def test_metrics_wsgi_app_serves_the_exposition() -> None:
    app = metrics_wsgi_app(_registry())
    transport = httpx.WSGITransport(app=app)
    with httpx.Client(transport=transport, base_url="http://t") as client:
        resp = client.get("/metrics")
    assert resp.status_code == 200
    assert "opskit_test_things_total 3.0" in resp.text
