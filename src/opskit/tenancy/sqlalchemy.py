"""Schema per tenant with SQLAlchemy: ``tenant_engine`` (extra ``opskit[sqlalchemy]``).

::

    from opskit.tenancy.sqlalchemy import tenant_engine

    engine = tenant_engine(create_engine(url), schema=lambda t: t.schema)
    with tenant_scope(Tenant("acme", schema="tenant_acme")):
        with Session(engine) as session: ...     # tables without a schema: tenant_acme

The returned engine shares the base engine's pool and dialect. Every Core and
ORM statement it runs on a table without an explicit schema is rendered in
``schema(current tenant)``, looked up when the statement executes, through
SQLAlchemy's ``schema_translate_map`` (its ``None`` key: PostgreSQL schemas and
SQLite attached databases alike). So one connection follows the scope it is
used in. Outside a scope every statement raises :class:`~opskit.tenancy.NoTenant`
before anything reaches the database, unless ``default_schema`` is given; a
tenant whose ``schema(...)`` fails never falls back to another schema.

Not translated: ``text()`` and ``exec_driver_sql()`` (their SQL is written by
hand; outside a scope they raise ``NoTenant`` all the same), and tables
declared with an explicit ``schema=`` (shared tables stay where they are).
``tenant_engine(async_engine)`` works the same for ``AsyncEngine`` /
``AsyncSession``. An ORM ``Session``'s identity map is not keyed by tenant: open one session per
scope (per request or job), never one across scopes.

On SQLite the application ATTACHes each tenant's database in a ``connect``
event (SQLite allows 10 attached databases per connection by default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, overload

from opskit.tenancy._context import _TENANT
from opskit.tenancy._errors import NoTenant, TenantError
from opskit.tenancy._tenant import Tenant

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

try:
    from sqlalchemy import event as _event
except ImportError:  # the extra is not installed; tenant_engine says so
    _event = None  # type: ignore[assignment]

try:
    from sqlalchemy.ext.asyncio import AsyncEngine as _AsyncEngine
except ImportError:  # no asyncio support in this SQLAlchemy: sync engines only
    _AsyncEngine = None  # type: ignore[assignment,misc]

__all__ = ["tenant_engine"]

_EXTRA = "opskit.tenancy.sqlalchemy needs SQLAlchemy: pip install 'opskit[sqlalchemy]'"


def _default_schema(tenant: Tenant) -> Any:
    return tenant.schema


class _TenantSchemas(dict[Any, Any]):
    """A ``schema_translate_map`` whose ``None`` entry is the current tenant's schema.

    SQLAlchemy reads the map each time it renders a compiled statement, so the
    schema is looked up per statement. It also writes a ``"_none"`` alias into
    the map while rendering; that write is ignored (the map is shared).
    """

    __slots__ = ("_resolve",)

    def __init__(self, resolve: Callable[[], str]) -> None:
        super().__init__({None: "<the current tenant's schema>"})
        self._resolve = resolve

    def __contains__(self, key: object) -> bool:
        return key is None or key == "_none"

    def __getitem__(self, key: Any) -> Any:
        if key is None or key == "_none":
            return self._resolve()
        raise KeyError(key)

    def get(self, key: Any, default: Any = None) -> Any:
        if key is None or key == "_none":
            return self._resolve()
        return default

    def __setitem__(self, key: Any, value: Any) -> None:
        return None

    def __repr__(self) -> str:
        return "{None: <the current tenant's schema>}"


@overload
def tenant_engine(
    base_engine: AsyncEngine,
    schema: Callable[[Tenant], str] = ...,
    default_schema: str | None = ...,
) -> AsyncEngine: ...


@overload
def tenant_engine(
    base_engine: Engine,
    schema: Callable[[Tenant], str] = ...,
    default_schema: str | None = ...,
) -> Engine: ...


def tenant_engine(
    base_engine: Engine | AsyncEngine,
    schema: Callable[[Tenant], str] = _default_schema,
    default_schema: str | None = None,
) -> Engine | AsyncEngine:
    """An engine on ``base_engine``'s pool whose unqualified tables live in
    ``schema(current tenant)``; see the module docs. An ``AsyncEngine`` gives an
    ``AsyncEngine`` (its statements run in greenlets that see the caller's scope)."""
    if _event is None:
        raise ImportError(_EXTRA)
    if _AsyncEngine is not None and isinstance(base_engine, _AsyncEngine):
        return _AsyncEngine(_sync_tenant_engine(base_engine.sync_engine, schema, default_schema))
    return _sync_tenant_engine(base_engine, schema, default_schema)  # type: ignore[arg-type]


def _sync_tenant_engine(
    base_engine: Engine, schema: Callable[[Tenant], str], default_schema: str | None
) -> Engine:

    def resolve() -> str:
        tenant = _TENANT.get()
        if tenant is None:
            if default_schema is None:
                raise NoTenant("tenant_engine")
            return default_schema
        try:
            name = schema(tenant)
        except Exception as exc:
            raise TenantError(f"no schema for tenant {tenant.id!r}: {exc}") from exc
        if not isinstance(name, str) or not name:
            raise TenantError(f"no schema for tenant {tenant.id!r}")
        return name

    engine = base_engine.execution_options(schema_translate_map=_TenantSchemas(resolve))

    def before_execute(conn: Any, clause: Any, multiparams: Any, params: Any, options: Any
                       ) -> None:  # fmt: skip
        # Raised here, before SQLAlchemy's execution machinery (which would wrap it
        # in StatementError) and before anything is sent.
        resolve()

    _event.listen(engine, "before_execute", before_execute)
    return engine
