"""The SQLite hot paths (parley.storage.driver): statements handed straight to sqlite3 on
the writer's and the reader's threads, each keeping its connection between transactions.
What must hold: a driver error is SQLAlchemy's (so Database maps it as for any other
write), a failed transaction leaves nothing behind and the kept connection usable, and a
read sees every commit made before it began."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    insert,
    select,
)

from parley.services.errors import Conflict
from parley.storage.db import Database
from parley.storage.driver import execute_rows, fetch

META = MetaData()
T = Table("t", META, Column("k", Integer, primary_key=True), Column("v", String))
BY_KEY = select(T.c.k, T.c.v).where(T.c.k >= bindparam("low")).order_by(T.c.k)


def run(path: Path, steps: Any) -> Any:
    async def go() -> Any:
        database = Database(f"sqlite+aiosqlite:///{path}")
        try:
            await database.run_in_transaction(lambda conn: META.create_all(conn))
            return await steps(database)
        finally:
            await database.close()

    return asyncio.run(go())


def rows(conn: Connection) -> list[tuple[int, str]]:
    return [tuple(r) for r in fetch(conn, BY_KEY, {"low": 0})]


def test_a_driver_error_is_mapped_rolled_back_and_the_connection_kept(tmp_path: Path) -> None:
    async def steps(database: Database) -> list[Any]:
        await database.run_in_transaction(
            lambda conn: execute_rows(conn, insert(T), [{"k": 1, "v": "one"}])
        )

        # One statement of two rows, the second a duplicate key: the whole transaction
        # fails, its first statement included.
        def clash(conn: Connection) -> None:
            execute_rows(conn, insert(T), [{"k": 2, "v": "two"}])
            execute_rows(conn, insert(T), [{"k": 3, "v": "three"}, {"k": 1, "v": "again"}])

        with pytest.raises(Conflict):
            await database.run_in_transaction(clash)
        after_failure = await database.run_read(rows)
        # The writer's kept connection goes on.
        await database.run_in_transaction(
            lambda conn: execute_rows(conn, insert(T), [{"k": 4, "v": "four"}])
        )
        return [after_failure, await database.run_read(rows)]

    after_failure, after_next = run(tmp_path / "p.db", steps)
    assert after_failure == [(1, "one")]
    assert after_next == [(1, "one"), (4, "four")]


def test_a_read_sees_every_commit_made_before_it(tmp_path: Path) -> None:
    async def steps(database: Database) -> list[list[tuple[int, str]]]:
        seen = []
        for k in range(1, 6):
            await database.run_in_transaction(
                lambda conn, k=k: execute_rows(conn, insert(T), [{"k": k, "v": str(k)}])
            )
            # The reader's connection is kept too: it must not hold an old snapshot.
            seen.append(await database.run_read(rows))
        return seen

    seen = run(tmp_path / "p.db", steps)
    assert [len(s) for s in seen] == [1, 2, 3, 4, 5]
    assert seen[-1] == [(k, str(k)) for k in range(1, 6)]


def test_a_failing_read_leaves_the_reader_usable(tmp_path: Path) -> None:
    async def steps(database: Database) -> list[tuple[int, str]]:
        await database.run_in_transaction(
            lambda conn: execute_rows(conn, insert(T), [{"k": 7, "v": "seven"}])
        )

        def broken(conn: Connection) -> None:
            conn.exec_driver_sql("SELECT * FROM no_such_table")

        with pytest.raises(Exception, match="no_such_table"):
            await database.run_read(broken)
        result: list[tuple[int, str]] = await database.run_read(rows)
        return result

    assert run(tmp_path / "p.db", steps) == [(7, "seven")]
