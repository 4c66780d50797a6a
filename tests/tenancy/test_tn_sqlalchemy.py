"""tenant_engine on real SQLite: one attached database per tenant."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from opskit.tenancy import NoTenant, Tenant, TenantError, tenant_scope
from opskit.tenancy.sqlalchemy import tenant_engine

TENANTS = {name: Tenant(name, schema=f"tenant_{name}") for name in ("acme", "globex", "initech")}

metadata = MetaData()
notes = Table("notes", metadata, Column("id", Integer, primary_key=True),
              Column("body", String(100)))  # fmt: skip
shared = Table("plans", metadata, Column("id", Integer, primary_key=True),
               Column("name", String(20)), schema="main")  # fmt: skip


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str] = mapped_column(String(50))


@pytest.fixture
def dbdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def base(dbdir: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{dbdir / 'main.db'}")

    @event.listens_for(engine, "connect")
    def attach(dbapi_conn: Any, record: Any) -> None:
        for t in TENANTS.values():
            dbapi_conn.execute(f"ATTACH DATABASE '{dbdir / (t.id + '.db')}' AS {t.schema}")

    with engine.begin() as conn:
        shared.create(conn)
    for t in TENANTS.values():
        # DDL on the base engine with an explicit map, as a migration would run it.
        with engine.begin() as conn:
            ddl = conn.execution_options(schema_translate_map={None: t.schema})
            metadata.create_all(ddl, tables=[notes])
            Base.metadata.create_all(ddl)
    yield engine
    engine.dispose()


def rows_in_file(path: Path, table: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(path)
    try:
        return sorted(con.execute(f"SELECT * FROM {table}").fetchall())  # noqa: S608 - test names
    finally:
        con.close()


def test_core_rows_land_in_the_right_tenant_only(base: Engine, dbdir: Path) -> None:
    engine = tenant_engine(base)
    for name in TENANTS:
        with tenant_scope(TENANTS[name]), engine.begin() as conn:
            conn.execute(insert(notes), [{"body": f"{name}-1"}, {"body": f"{name}-2"}])
    for name in TENANTS:
        with tenant_scope(TENANTS[name]), engine.connect() as conn:
            got = sorted(conn.execute(select(notes.c.body)).scalars())
        assert got == [f"{name}-1", f"{name}-2"]
        assert rows_in_file(dbdir / f"{name}.db", "notes") == [(1, f"{name}-1"), (2, f"{name}-2")]
    assert "notes" not in {r[0] for r in sqlite3.connect(dbdir / "main.db").execute(
        "SELECT name FROM sqlite_master")}  # fmt: skip


def test_one_connection_follows_the_scope(base: Engine) -> None:
    engine = tenant_engine(base)
    with engine.connect() as conn:
        with tenant_scope(TENANTS["acme"]):
            conn.execute(insert(notes).values(body="a"))
        with tenant_scope(TENANTS["globex"]):
            conn.execute(insert(notes).values(body="g"))
            assert list(conn.execute(select(notes.c.body)).scalars()) == ["g"]
        with tenant_scope(TENANTS["acme"]):
            assert list(conn.execute(select(notes.c.body)).scalars()) == ["a"]
        conn.commit()


def test_orm_rows_land_in_the_right_tenant(base: Engine, dbdir: Path) -> None:
    engine = tenant_engine(base)
    for name in ("acme", "globex"):
        with tenant_scope(TENANTS[name]), Session(engine) as session:
            session.add_all([Order(item=f"{name}-book"), Order(item=f"{name}-pen")])
            session.commit()
    with tenant_scope(TENANTS["globex"]), Session(engine) as session:
        items = sorted(o.item for o in session.scalars(select(Order)))
        assert items == ["globex-book", "globex-pen"]
        assert session.get(Order, 1) is not None
    assert rows_in_file(dbdir / "acme.db", "orders") == [(1, "acme-book"), (2, "acme-pen")]
    assert rows_in_file(dbdir / "initech.db", "orders") == []


def test_outside_a_scope_raises_no_tenant_and_writes_nothing(base: Engine, dbdir: Path) -> None:
    engine = tenant_engine(base)
    with engine.connect() as conn:
        with pytest.raises(NoTenant) as info:
            conn.execute(insert(notes).values(body="x"))
        assert not isinstance(info.value, StatementError)
        with pytest.raises(NoTenant):
            conn.execute(select(notes))
        with pytest.raises(NoTenant):
            conn.execute(text("SELECT 1"))  # fails closed, though not translated
        with tenant_scope(None), pytest.raises(NoTenant):
            conn.execute(select(notes))
    with Session(engine) as session:
        session.add(Order(item="orphan"))
        with pytest.raises(NoTenant):
            session.commit()
    for name in TENANTS:
        assert rows_in_file(dbdir / f"{name}.db", "notes") == []
        assert rows_in_file(dbdir / f"{name}.db", "orders") == []


def test_default_schema_outside_a_scope_only(base: Engine, dbdir: Path) -> None:
    engine = tenant_engine(base, default_schema="tenant_initech")
    with engine.begin() as conn:
        conn.execute(insert(notes).values(body="default"))
    with tenant_scope(TENANTS["acme"]), engine.begin() as conn:
        conn.execute(insert(notes).values(body="acme"))
    # A tenant without a schema fails closed: never the default, never another tenant's.
    with tenant_scope(Tenant("nameless")), engine.begin() as conn, pytest.raises(TenantError):
        conn.execute(insert(notes).values(body="lost"))
    assert rows_in_file(dbdir / "initech.db", "notes") == [(1, "default")]
    assert rows_in_file(dbdir / "acme.db", "notes") == [(1, "acme")]


def test_explicit_schema_and_driver_sql_are_not_translated(base: Engine) -> None:
    engine = tenant_engine(base, schema=lambda t: t.schema)
    with tenant_scope(TENANTS["acme"]), engine.begin() as conn:
        conn.execute(insert(shared).values(name="pro"))
        conn.execute(insert(notes).values(body="n"))
        assert conn.exec_driver_sql("SELECT name FROM main.plans").scalar() == "pro"
    with tenant_scope(TENANTS["globex"]), engine.connect() as conn:
        # Hand-written SQL is not translated: SQLite looks an unqualified name up in
        # main, then in the attached databases in order, so globex reads acme's table.
        assert conn.exec_driver_sql("SELECT body FROM notes").scalars().all() == ["n"]
        assert conn.execute(select(notes.c.body)).scalars().all() == []
    with tenant_scope(TENANTS["globex"]), engine.connect() as conn:
        assert list(conn.execute(select(shared.c.name)).scalars()) == ["pro"]


def test_imports_without_sqlalchemy_and_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['sqlalchemy'] = None\n"
        "import opskit.tenancy.sqlalchemy as m\n"
        "try:\n    m.tenant_engine(object())\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "opskit[sqlalchemy]" in out.stdout


async def test_async_engine_follows_the_scope(dbdir: Path) -> None:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

    base = create_async_engine(f"sqlite+aiosqlite:///{dbdir / 'main.db'}")

    @event.listens_for(base.sync_engine, "connect")
    def attach(dbapi_conn: Any, record: Any) -> None:
        for t in TENANTS.values():
            dbapi_conn.execute(f"ATTACH DATABASE '{dbdir / (t.id + '.db')}' AS {t.schema}")

    engine = tenant_engine(base)
    assert isinstance(engine, AsyncEngine)
    try:
        for name in ("acme", "globex"):
            async with tenant_scope(TENANTS[name]), engine.begin() as conn:
                await conn.run_sync(metadata.create_all, tables=[notes])
                await conn.execute(insert(notes).values(body=name))
        async with tenant_scope(TENANTS["globex"]), AsyncSession(engine) as session:
            assert (await session.scalars(select(notes.c.body))).all() == ["globex"]
        async with engine.connect() as conn:
            with pytest.raises(NoTenant):
                await conn.execute(select(notes))
    finally:
        await base.dispose()
    assert rows_in_file(dbdir / "acme.db", "notes") == [(1, "acme")]
