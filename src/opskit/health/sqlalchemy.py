"""SQLAlchemy check: ``SELECT 1`` on a connection that is returned to the pool at once.

Needs the ``[sqlalchemy]`` extra (``pip install 'opskit[sqlalchemy]'``); an
``AsyncEngine`` also needs its async driver (``aiosqlite``, ``asyncpg``...).
"""

from __future__ import annotations

from typing import Any

try:
    import sqlalchemy
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "opskit.health.sqlalchemy needs SQLAlchemy: pip install 'opskit[sqlalchemy]'"
    ) from exc

from opskit.health._check import Check
from opskit.health._status import CheckResult, Status

__all__ = ["check"]


def check(engine: Any, query: str = "SELECT 1") -> Check:
    """``query`` through ``engine`` (sync ``Engine`` or ``AsyncEngine``).

    The connection is closed (returned to the pool) however the query ends;
    a hung sync call returns its connection when it finally ends.
    """
    statement = sqlalchemy.text(query)
    try:
        from sqlalchemy.ext.asyncio import AsyncEngine
    except ImportError:  # pragma: no cover - SQLAlchemy < 1.4
        AsyncEngine = ()  # type: ignore[assignment,misc]

    if isinstance(engine, AsyncEngine):

        async def aselect() -> CheckResult:
            async with engine.connect() as conn:
                await conn.execute(statement)
            return CheckResult(Status.PASS)

        return Check(aselect, True, component_type="datastore")
    if not isinstance(engine, sqlalchemy.engine.Engine):
        raise TypeError(
            f"checks.sqlalchemy() needs an Engine or AsyncEngine, not {type(engine).__name__}"
        )

    def select() -> CheckResult:
        with engine.connect() as conn:
            conn.execute(statement)
        return CheckResult(Status.PASS)

    return Check(select, False, component_type="datastore")
