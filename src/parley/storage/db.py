"""The database handle: engines, transactions and migrations.

``Database.read()`` and ``Database.write()`` each open one transaction. On SQLite all
writes go through a single connection that starts with ``BEGIN IMMEDIATE``: writers queue
in the pool instead of failing with "database is locked", and readers (WAL mode) never
wait for them. On PostgreSQL both use one pool.

On SQLite, new messages reach the full-text index after the transaction that stores them
(:class:`SearchBacklog`, migration 0008).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import orjson
import re2
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from parley.services.errors import Conflict, InvalidRequest, ServiceUnavailable

log = logging.getLogger("parley.storage")
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_REGEX_CACHE: dict[str, Any] = {}
# Longest a PostgreSQL statement may run: a slow query (say, a costly regular expression
# over many rows) fails alone instead of holding a connection and its caller forever.
STATEMENT_TIMEOUT_MS = 10_000


def _sqlite_regexp(pattern: str, value: Any) -> bool:
    """REGEXP for SQLite (PostgreSQL has ``~``). RE2 runs in time linear in the text, so a
    hostile pattern cannot stall the server the way a backtracking engine can."""
    if value is None:
        return False
    compiled = _REGEX_CACHE.get(pattern)
    if compiled is None:
        if len(_REGEX_CACHE) > 256:
            _REGEX_CACHE.clear()
        compiled = _REGEX_CACHE[pattern] = re2.compile(pattern)
    return compiled.search(str(value)) is not None


T = TypeVar("T")


def json_text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        # What orjson refuses (integers past 64 bits, say) the standard encoder writes,
        # as the columns did before.
        return json.dumps(value)


# JSON columns (message bodies, above all) through orjson: several times faster than the
# standard library's encoder, and the same text for the same value.
def _json_value(text: Any) -> Any:
    # SQLite gives JSON columns numeric affinity: a stored scalar such as "1" comes back
    # as the number itself, already decoded.
    if isinstance(text, str | bytes):
        return orjson.loads(text)
    return text


JSON_CODEC: dict[str, Any] = {"json_serializer": json_text, "json_deserializer": _json_value}


def _checkpoint_late(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA wal_autocheckpoint={WRITER_WAL_AUTOCHECKPOINT_PAGES:d}")


def _configure_sqlite(engine: AsyncEngine | Engine, *, writer: bool) -> None:
    target = engine.sync_engine if isinstance(engine, AsyncEngine) else engine

    @event.listens_for(target, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how transactions start.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()
        dbapi_conn.create_function("regexp", 2, _sqlite_regexp, deterministic=True)

    @event.listens_for(target, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")


# SQLite's WAL is copied back into the database file by checkpoints. By default the
# connection whose commit takes the WAL past 1000 pages runs one inline: for the writer
# thread, a pause of the send path (page copies and two fsyncs) every few dozen batches,
# which every sender waiting on the next batch shared. Instead a thread of its own runs
# a passive checkpoint at most every CHECKPOINT_SECONDS after writer commits (passive:
# it neither waits for nor blocks the writer). The writer keeps an inline checkpoint as a
# bound on the WAL's size, far later, and then finds most pages already copied.
# Durability does not change: a commit is in the WAL when it returns, checkpoint or not.
CHECKPOINT_SECONDS = 0.1
WRITER_WAL_AUTOCHECKPOINT_PAGES = 4000


class _Checkpointer:
    """Passive WAL checkpoints of one SQLite file, on a thread and connection of their
    own (see CHECKPOINT_SECONDS)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parley-checkpoint")
        self._conn: sqlite3.Connection | None = None
        self._busy = False
        self._last = 0.0

    def after_commit(self) -> None:
        """Called by the writer after each commit: queue a checkpoint unless one is
        running or ran less than CHECKPOINT_SECONDS ago."""
        now = time.monotonic()
        if self._busy or now - self._last < CHECKPOINT_SECONDS:
            return
        self._busy = True
        self._last = now
        self._thread.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False
                )
                self._conn.execute("PRAGMA busy_timeout=10000")
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            # The writer's own checkpoint (WRITER_WAL_AUTOCHECKPOINT_PAGES) still bounds
            # the WAL; the next commit tries again here.
            log.exception("a WAL checkpoint failed")
        finally:
            self._busy = False

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        if self._conn is not None:
            self._conn.close()


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = make_url(url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.reader = create_async_engine(
                url, pool_size=4, max_overflow=4, hide_parameters=True, **JSON_CODEC
            )
            self.writer = create_async_engine(
                url,
                pool_size=1,
                max_overflow=0,
                pool_timeout=30,
                hide_parameters=True,
                **JSON_CODEC,
            )
            _configure_sqlite(self.reader, writer=False)
            _configure_sqlite(self.writer, writer=True)
            # The hot write path (storing sends) runs as one call on a thread of its own
            # with a plain sqlite3 connection: one thread hop per transaction instead of
            # several per statement through aiosqlite.
            self._sync_writer: Engine | None = _one_thread_engine(url, writer=True)
            self._checkpointer: _Checkpointer | None = None
            if path and path != ":memory:":
                self._checkpointer = _Checkpointer(path)
                _checkpoint_late(self._sync_writer)
            self._sync_thread: ThreadPoolExecutor | None = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="parley-sqlite-writer"
            )
            # That thread's connection, kept between transactions: checking one out of
            # the pool and resetting it on return cost more than a one-message batch's
            # own statements. Touched only on that thread.
            self._sync_conn: Connection | None = None
            # The same for the reads of run_read (the lookups that connecting sockets
            # share): a thread and a kept connection of their own.
            self._sync_reader: Engine | None = _one_thread_engine(url, writer=False)
            self._read_thread: ThreadPoolExecutor | None = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="parley-sqlite-reader"
            )
            self._read_conn: Connection | None = None
        else:
            self.reader = self.writer = create_async_engine(
                url,
                **JSON_CODEC,
                pool_size=10,
                max_overflow=10,
                pool_pre_ping=True,
                hide_parameters=True,  # parameters hold user data: never in logs
                connect_args={"server_settings": {"statement_timeout": str(STATEMENT_TIMEOUT_MS)}},
            )
            self._sync_writer = None
            self._sync_thread = None
            self._checkpointer = None
            self._sync_reader = None
            self._read_thread = None
        self.search_backlog = SearchBacklog(self) if self.is_sqlite else None
        self._read_sessions = async_sessionmaker(self.reader, expire_on_commit=False)
        self._write_sessions = async_sessionmaker(self.writer, expire_on_commit=False)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with _unavailable_on_outage(), self._read_sessions() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One atomic change: committed when the block ends, rolled back if it raises."""
        async with (
            _unavailable_on_outage(),
            self._write_sessions() as session,
            session.begin(),
        ):
            yield session

    def insert_ignoring_duplicates(self, table: Any) -> Any:
        """``INSERT`` into ``table`` that skips rows whose key exists (another node may
        insert the same row at the same moment): ``ON CONFLICT DO NOTHING``."""
        dialect = sqlite if self.is_sqlite else postgresql
        return dialect.insert(table).on_conflict_do_nothing()

    async def run_in_transaction(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(connection)`` in one write transaction, committed when it returns.
        ``work`` is plain synchronous SQLAlchemy Core: on SQLite it runs on the writer
        thread in one hop; on PostgreSQL through the async driver's greenlet bridge."""
        async with _unavailable_on_outage():
            if self._sync_writer is not None and self._sync_thread is not None:
                checkpointer = self._checkpointer

                def in_thread() -> T:
                    conn = self._sync_conn = _usable(self._sync_conn, self._sync_writer)
                    with conn.begin():
                        result = work(conn)
                    if checkpointer is not None:
                        checkpointer.after_commit()
                    return result

                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._sync_thread, in_thread)
            async with self.writer.begin() as aconn:
                return await aconn.run_sync(work)

    async def run_read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(connection)`` in one read transaction: plain synchronous Core, as
        for ``run_in_transaction``. On SQLite it runs on a reader thread of its own in
        one hop (with :mod:`parley.storage.driver`, without SQLAlchemy's execution);
        on PostgreSQL on a pooled connection through the greenlet bridge."""
        async with _unavailable_on_outage():
            if self._sync_reader is not None and self._read_thread is not None:

                def in_thread() -> T:
                    conn = self._read_conn = _usable(self._read_conn, self._sync_reader)
                    with conn.begin():
                        return work(conn)

                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._read_thread, in_thread)
            async with self.reader.connect() as aconn:
                return await aconn.run_sync(work)

    def _close_kept(self, name: str) -> None:
        conn: Connection | None = getattr(self, name)
        if conn is not None:
            conn.close()
            setattr(self, name, None)

    async def close(self) -> None:
        # Each kept connection on its own thread: sqlite3 connections are used where
        # they were made.
        for thread, name in ((self._sync_thread, "_sync_conn"), (self._read_thread, "_read_conn")):
            if thread is not None:
                thread.submit(self._close_kept, name)
                thread.shutdown(wait=True)
        for engine in (self._sync_writer, self._sync_reader):
            if engine is not None:
                engine.dispose()
        if self._checkpointer is not None:
            self._checkpointer.close()
        await self.reader.dispose()
        if self.writer is not self.reader:
            await self.writer.dispose()


def _one_thread_engine(url: str, *, writer: bool) -> Engine:
    """A plain (synchronous) sqlite3 engine of one connection, for a thread of its own."""
    engine = create_engine(
        url.replace("+aiosqlite", ""),
        pool_size=1,
        max_overflow=0,
        hide_parameters=True,
        **JSON_CODEC,
    )
    _configure_sqlite(engine, writer=writer)
    return engine


def _usable(conn: Connection | None, engine: Engine | None) -> Connection:
    """``conn``, or a new connection of ``engine`` when there is none yet or an error
    left it unusable."""
    if conn is None or conn.closed or conn.invalidated:
        if conn is not None:
            conn.close()
        assert engine is not None
        conn = engine.connect()
    return conn


class IndexPass(NamedTuple):
    taken: int  # backlog rows consumed (indexed, or skipped: since edited, recalled, gone)
    last: int | None  # the last backlog key consumed; None when nothing was waiting
    newest: int | None  # the newest backlog key when the pass began


# One pass of the backlog, oldest first, in the writer's transaction. A message edited
# while it waited was indexed by the edit (0005's update trigger): its key is taken and
# INSERT OR IGNORE skips it. Recalled (no text) and deleted messages drop out in the join.
_BACKLOG_BOUNDS = (
    "SELECT max(key), (SELECT max(key) FROM message_search_backlog) FROM"
    " (SELECT key FROM message_search_backlog WHERE key <= ? ORDER BY key LIMIT ?)"
)
_NEWEST_SEARCH_KEY = "SELECT coalesce(max(key), 0) FROM message_search_keys"
_ADD_SEARCH_KEYS = (
    "INSERT OR IGNORE INTO message_search_keys (app_id, message_id)"
    " SELECT b.app_id, b.message_id FROM message_search_backlog b"
    " JOIN messages m ON m.app_id = b.app_id AND m.id = b.message_id"
    " WHERE b.key <= ? AND m.search_text IS NOT NULL ORDER BY b.key"
)
_INDEX_NEW_KEYS = (
    "INSERT INTO message_search (rowid, text)"
    " SELECT k.key, m.search_text FROM message_search_keys k"
    " JOIN messages m ON m.app_id = k.app_id AND m.id = k.message_id WHERE k.key > ?"
)
_DROP_FROM_BACKLOG = "DELETE FROM message_search_backlog WHERE key <= ?"
_ANY_WAITING = text("SELECT 1 FROM message_search_backlog LIMIT 1")
_NO_LIMIT = 2**62


def index_backlog(conn: Connection, limit: int, upto: int | None = None) -> IndexPass:
    """Move up to ``limit`` waiting messages (keys up to ``upto``) into the index."""
    last, newest = conn.exec_driver_sql(_BACKLOG_BOUNDS, (upto or _NO_LIMIT, limit)).one()
    if last is None:
        return IndexPass(0, None, newest)
    # Keys are integer row ids: the ones added here are exactly those past the newest.
    before = conn.exec_driver_sql(_NEWEST_SEARCH_KEY).scalar_one()
    conn.exec_driver_sql(_ADD_SEARCH_KEYS, (last,))
    conn.exec_driver_sql(_INDEX_NEW_KEYS, (before,))
    taken = conn.exec_driver_sql(_DROP_FROM_BACKLOG, (last,)).rowcount
    return IndexPass(taken, last, newest)


class SearchBacklog:
    """SQLite's full-text index, filled after the fact: a new message waits in
    ``message_search_backlog`` until a pass moves it into the FTS5 index, many messages a
    transaction (FTS5 writes a segment a transaction: the fewer, the cheaper). Passes
    run on the writer thread like every write. The message writer runs them when it has
    time; a search runs :meth:`catch_up` first, so that it finds every message
    acknowledged before it began."""

    # A catch-up indexes in transactions of at most this many messages, so that a long
    # backlog (after a restart, say) does not hold the write lock for long at a time.
    CATCH_UP_CHUNK = 5000

    def __init__(self, db: Database) -> None:
        self._db = db

    async def index(self, limit: int, upto: int | None = None) -> IndexPass:
        """One pass: up to ``limit`` waiting messages, oldest first, in one transaction."""
        return await self._db.run_in_transaction(lambda conn: index_backlog(conn, limit, upto))

    async def waiting(self) -> bool:
        """Whether any message waits (a read: no trip through the writer)."""
        async with self._db.read() as s:
            return (await s.execute(_ANY_WAITING)).first() is not None

    async def catch_up(self) -> None:
        """Index every message waiting now; messages stored meanwhile may wait on."""
        if not await self.waiting():
            return
        upto: int | None = None
        while True:
            done = await self.index(self.CATCH_UP_CHUNK, upto)
            upto = upto or done.newest
            if done.last is None or upto is None or done.last >= upto:
                return


@asynccontextmanager
async def _unavailable_on_outage() -> AsyncIterator[None]:
    """A database that cannot be reached is a retryable 503, not a 500."""
    try:
        yield
    except IntegrityError as exc:
        # Two requests created the same thing at once; the loser may simply retry.
        raise Conflict("A concurrent request changed the same data; retry") from exc
    except (OperationalError, DBAPIError) as exc:
        if _is_bad_data(exc):
            # Text the database cannot store (PostgreSQL refuses NUL characters): a bad
            # request, whatever field it came in.
            raise InvalidRequest("The request holds characters that cannot be stored") from exc
        if _is_connection_error(exc):
            raise ServiceUnavailable("The database is unavailable; retry later") from exc
        if "deadlock" in str(exc.orig).lower() or "could not serialize" in str(exc.orig).lower():
            # PostgreSQL chose this transaction to break a lock cycle: nothing was stored.
            raise Conflict("A concurrent request changed the same data; retry") from exc
        raise
    except (TimeoutError, OSError, ConnectionError) as exc:
        raise ServiceUnavailable("The database is unavailable; retry later") from exc


def _is_bad_data(exc: DBAPIError) -> bool:
    """A driver's DataError anywhere in the chain (asyncpg's arrive wrapped twice)."""
    if isinstance(exc, DataError):
        return True
    seen: BaseException | None = exc.orig
    for _ in range(5):
        if seen is None:
            return False
        if any(cls.__name__ == "DataError" for cls in type(seen).__mro__):
            return True
        seen = seen.__cause__
    return False


def _is_connection_error(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    text = str(exc.orig).lower()
    return any(
        word in text
        for word in ("connection", "could not connect", "database is locked", "terminating")
    )


def run_migrations(url: str) -> None:
    """Bring the schema to the newest revision (blocking; run it in a thread from async code)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["database_url"] = url
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(cfg, "head")


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


async def current_revision(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with db.writer.connect() as conn:
        return await conn.run_sync(
            lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
        )
