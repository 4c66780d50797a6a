"""Logging set-up and Prometheus endpoints for services that use opskit.

``configure_logging()`` makes structlog write one JSON object a line with an
ISO-8601 UTC timestamp, the level, the event, the logger name and any context
bound with ``structlog.contextvars``. ``metrics_asgi_app()`` and
``metrics_wsgi_app()`` serve the Prometheus text exposition of a registry.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, make_asgi_app, make_wsgi_app

__all__ = ["configure_logging", "metrics_asgi_app", "metrics_wsgi_app"]


def configure_logging(
    *, json: bool = True, level: int | str = "INFO", stream: TextIO | None = None
) -> None:
    """Configure structlog globally: JSON lines (or a console renderer when ``json=False``)."""
    lvl = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(lvl, int):
        raise ValueError(f"unknown log level: {level!r}")
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.WriteLoggerFactory(file=stream or sys.stdout),
        cache_logger_on_first_use=False,
    )


def metrics_asgi_app(registry: CollectorRegistry | None = None) -> Any:
    """An ASGI app serving the Prometheus exposition of ``registry`` (default: global)."""
    return make_asgi_app(registry=REGISTRY if registry is None else registry)


def metrics_wsgi_app(registry: CollectorRegistry | None = None) -> Any:
    """A WSGI app serving the Prometheus exposition of ``registry`` (default: global)."""
    return make_wsgi_app(registry=REGISTRY if registry is None else registry)
