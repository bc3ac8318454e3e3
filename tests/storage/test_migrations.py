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
