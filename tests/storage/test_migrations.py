"""The Alembic migrations build exactly the schema that ``parley.storage.tables`` declares,
on SQLite and on PostgreSQL, and they can be undone and replayed."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from parley.storage.db import MIGRATIONS_DIR, head_revision, run_migrations
from parley.storage.tables import SEARCH_INDEX_PREFIX, Base
from tests.conftest import DATABASE_URL, IN_CI, need_service


@contextmanager
def fresh_postgres_database(base_url: str, prefix: str = "parley_test") -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of ``base_url``, dropped afterwards.

    The shared test database is reset by the session fixtures, so anything that needs a
    database of its own (an un-migrated one, say) gets one here.
    """
    name = f"{prefix}_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        engine = create_async_engine(base_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(sa.text(sql))
        finally:
            await engine.dispose()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except OSError as exc:
        if IN_CI:
            raise
        pytest.skip(f"PostgreSQL at {base_url} unreachable: {exc}")
    try:
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["database_url"] = url
    return cfg


def _inspect(url: str, fn: Any) -> Any:
    """Run ``fn(sync_connection)`` on a fresh engine for ``url``."""

    async def go() -> Any:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(fn)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _schema_diff(url: str) -> list[Any]:
    """What autogenerate would write to turn the database into ``Base.metadata``."""

    def diff(conn: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "include_name": _outside_search_index,
            },
        )
        return list(compare_metadata(context, Base.metadata))

    return list(_inspect(url, diff))


def _outside_search_index(name: str | None, kind: str, _parents: Any) -> bool:
    """The full-text index is built by SQL of its own (migration 0005), not the models."""
    if kind == "table":
        return not (name or "").startswith(SEARCH_INDEX_PREFIX)
    return name != "ix_messages_search"


def table_names(url: str) -> set[str]:
    names = _inspect(url, lambda conn: sa.inspect(conn).get_table_names())
    return {n for n in names if not n.startswith(SEARCH_INDEX_PREFIX)}


def _revision(url: str) -> str | None:
    return _inspect(url, lambda conn: MigrationContext.configure(conn).get_current_revision())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'schema.db'}"
        return
    if not DATABASE_URL:
        need_service("PostgreSQL (PARLEY_TEST_DATABASE_URL)")
    with fresh_postgres_database(DATABASE_URL, "parley_schema") as url:
        yield url


def test_migrations_build_exactly_the_declared_schema(empty_database: str) -> None:
    run_migrations(empty_database)
    assert _revision(empty_database) == head_revision()
    assert table_names(empty_database) == set(Base.metadata.tables) | {"alembic_version"}
    assert _schema_diff(empty_database) == []


def test_migrating_twice_changes_nothing(empty_database: str) -> None:
    run_migrations(empty_database)
    run_migrations(empty_database)  # `parley run` migrates SQLite on every start
    assert _revision(empty_database) == head_revision()
    assert _schema_diff(empty_database) == []


def test_downgrade_to_base_and_upgrade_again(empty_database: str) -> None:
    run_migrations(empty_database)
    command.downgrade(_alembic_config(empty_database), "base")
    assert table_names(empty_database) == {"alembic_version"}
    assert _revision(empty_database) is None

    run_migrations(empty_database)
    assert _revision(empty_database) == head_revision()
    assert _schema_diff(empty_database) == []


def _insert_filled(conn: sa.Connection, table: str, values: dict[str, Any]) -> None:
    """A row of ``table`` (as the database has it now): ``values``, and a plain value of
    the right type for every other column that takes no NULL."""
    fillers = {sa.Integer: 0, sa.BigInteger: 0, sa.Boolean: False, sa.String: "x", sa.Text: "x"}
    row = dict(values)
    for column in sa.inspect(conn).get_columns(table):
        if column["name"] in row or column["nullable"]:
            continue
        kind = column["type"]
        row[column["name"]] = next(
            (v for t, v in fillers.items() if isinstance(kind, t)),
            "{}" if "JSON" in type(kind).__name__.upper() else 0,
        )
    names = ", ".join(row)
    marks = ", ".join(f":{k}" for k in row)
    conn.execute(sa.text(f"INSERT INTO {table} ({names}) VALUES ({marks})"), row)  # noqa: S608


def test_0012_turns_each_unread_counter_into_the_count_it_has_seen(empty_database: str) -> None:
    """Unread counts survive the move from a counter per member (0011) to the room's
    message count less the member's ``seen`` (0012), and back."""
    command.upgrade(_alembic_config(empty_database), "0011")

    def fill(conn: sa.Connection) -> None:
        _insert_filled(conn, "apps", {"id": "app"})
        _insert_filled(conn, "rooms", {"app_id": "app", "id": "r", "message_count": 7})
        for user, badge in (("ann", 0), ("bob", 3), ("cy", 7), ("dee", 9)):  # 9: past count
            _insert_filled(
                conn,
                "room_members",
                {"app_id": "app", "room_id": "r", "user_id": user, "badge": badge},
            )
        conn.commit()

    def read(column: str) -> Any:
        def go(conn: sa.Connection) -> dict[str, int]:
            rows = conn.execute(sa.text(f"SELECT user_id, {column} FROM room_members"))  # noqa: S608
            return {user: int(n) for user, n in rows}

        return go

    _inspect(empty_database, fill)
    run_migrations(empty_database)
    assert _inspect(empty_database, read("seen")) == {"ann": 7, "bob": 4, "cy": 0, "dee": 0}
    command.downgrade(_alembic_config(empty_database), "0011")
    assert _inspect(empty_database, read("badge")) == {"ann": 0, "bob": 3, "cy": 7, "dee": 7}
