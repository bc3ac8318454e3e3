"""SQLite's WAL is checkpointed by a thread of its own, not inline in the writer's commits
(parley.storage.db.CHECKPOINT_SECONDS): committed pages reach the database file soon
after the commit, while the writer's own inline checkpoint waits for a far larger WAL."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from pathlib import Path

from sqlalchemy import Connection

from parley.storage import db as storage
from parley.storage.db import Database


def rows_in_main_file(path: Path, copy: Path) -> int:
    """Rows of table t in the database file alone, as if the WAL were lost."""
    shutil.copyfile(path, copy)
    with sqlite3.connect(copy) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
        except sqlite3.DatabaseError:  # not in the file yet, or copied mid-checkpoint
            return 0


def test_commits_reach_the_database_file_without_an_inline_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "parley.db"

    async def go() -> tuple[int, int]:
        database = Database(f"sqlite+aiosqlite:///{path}")
        try:

            def create(conn: Connection) -> None:
                conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")

            def add(conn: Connection) -> int:
                conn.exec_driver_sql("INSERT INTO t VALUES (1)")
                return int(conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())

            await database.run_in_transaction(create)
            limits = {await database.run_in_transaction(add) for _ in range(5)}
            # The writer's own checkpoint is far off: only the other thread can have
            # copied these few pages into the file.
            assert limits == {storage.WRITER_WAL_AUTOCHECKPOINT_PAGES}
            start = time.monotonic()
            while (found := rows_in_main_file(path, tmp_path / "copy.db")) < 5:
                assert time.monotonic() - start < 5, "no checkpoint reached the file"
                await asyncio.sleep(storage.CHECKPOINT_SECONDS)
                await database.run_in_transaction(lambda conn: None)  # a commit asks again
            return found, limits.pop()
        finally:
            await database.close()

    found, limit = asyncio.run(go())
    assert found == 5 and limit > 1000
