"""Built-in checks. Each returns a :class:`~opskit.health.Check` for ``HealthRegistry.add``.

``redis_ping`` (sync, asyncio and Cluster clients), ``sqlalchemy`` (sync and
async engines; the ``[sqlalchemy]`` extra), ``http`` (httpx; the ``[httpx]``
extra), ``tcp``, ``disk_free``, ``breaker`` (any object with ``.state``) and
``call`` (any sync or async callable). Each reports a response time unless it
measures something else (``disk_free``: utilization).
"""

from __future__ import annotations

from typing import Any

from opskit.health._check import Check
from opskit.health.checks._local import breaker, call, disk_free
from opskit.health.checks._net import http, tcp
from opskit.health.checks._redis import redis_ping

__all__ = [
    "Check",
    "redis_ping",
    "sqlalchemy",
    "http",
    "tcp",
    "disk_free",
    "breaker",
    "call",
]


def sqlalchemy(engine: Any, query: str = "SELECT 1") -> Check:
    """``query`` on a connection from ``engine`` (``Engine`` or ``AsyncEngine``), then closed.

    Needs the ``[sqlalchemy]`` extra; see :mod:`opskit.health.sqlalchemy`.
    """
    # The integration imports SQLAlchemy, an optional extra: only when asked for.
    from opskit.health.sqlalchemy import check

    return check(engine, query)
