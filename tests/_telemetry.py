"""Broken telemetry sinks for the tests that prove telemetry never changes an outcome."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any

import structlog

from opskit._core import telemetry
from opskit.observability import configure_logging

SINKS = ("closed_stream", "raising_processor")


def _raise(_logger: Any, _method: str, _event: Any) -> Any:
    raise RuntimeError("the log shipper is down")


@contextlib.contextmanager
def broken_logging(sink: str) -> Iterator[None]:
    """structlog bound to a stream closed after ``configure_logging()``, or a raising processor.

    Logs at DEBUG so that every opskit event reaches the broken sink.
    """
    if sink == "closed_stream":
        stream = io.StringIO()
        configure_logging(stream=stream, level="DEBUG")
        stream.close()
    elif sink == "raising_processor":
        structlog.configure(
            processors=[_raise],
            wrapper_class=structlog.make_filtering_bound_logger(0),
            cache_logger_on_first_use=False,
        )
    else:  # pragma: no cover - a typo in a test
        raise ValueError(sink)
    try:
        yield
    finally:
        structlog.reset_defaults()


def log_errors() -> int:
    return telemetry.telemetry_errors()["log"]
