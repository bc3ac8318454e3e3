"""Statements straight to the SQLite driver, for the hot paths.

The message writer's transaction and the batched reads of connecting sockets run a few
small statements each, many times a second, on a thread of their own (see
``Database.run_in_transaction`` and ``Database.run_read``). For them SQLAlchemy's
execution (cache keys, parameter processing, result set-up) cost several times SQLite's
own work, holding the GIL the event loop needs meanwhile. On SQLite these helpers compile
a Core statement once and hand it to the sqlite3 cursor with plain tuples; on PostgreSQL
they run it through SQLAlchemy as usual. Either way the statement and its errors are
SQLAlchemy's: a driver error is raised as SQLAlchemy wraps it, so ``Database``'s error
mapping (409, 503, ...) applies unchanged.

Statements must be of fixed shape (named ``bindparam``s, no expanding lists): one per
length of an ``IN`` list, cached by the caller (``functools.lru_cache``), so that each is
compiled once.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ClauseElement, Connection, Executable, Insert, Update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler

from parley.storage.db import json_text


@dataclass(frozen=True)
class _DriverStatement:
    sql: str
    names: tuple[str, ...]  # the parameter of each positional placeholder, in order


_compiled: dict[ClauseElement, _DriverStatement] = {}


def _driver_statement(conn: Connection, statement: ClauseElement) -> _DriverStatement:
    prepared = _compiled.get(statement)
    if prepared is None:
        compiled = cast(SQLCompiler, statement.compile(dialect=conn.dialect))
        prepared = _DriverStatement(str(compiled), tuple(compiled.positiontup or ()))
        _compiled[statement] = prepared
    return prepared


def _on_driver(conn: Connection, sql: str, params: Any, *, many: bool) -> Any:
    """Run ``sql`` on the connection's sqlite3 cursor, inside its transaction."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if many:
            cursor.executemany(sql, params)
        else:
            cursor.execute(sql, params)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, None, exc, sqlite3.Error, hide_parameters=True) from exc
    return cursor


def fetch(conn: Connection, statement: ClauseElement, params: dict[str, Any]) -> list[Any]:
    """The rows of a select or SQL text (``statement``, named parameters), as tuples."""
    if conn.dialect.name != "sqlite":
        return list(conn.execute(cast(Executable, statement), params))
    prepared = _driver_statement(conn, statement)
    cursor = _on_driver(conn, prepared.sql, tuple(params[n] for n in prepared.names), many=False)
    rows: list[Any] = cursor.fetchall()
    return rows


def execute_rows(
    conn: Connection,
    statement: Insert | Update,
    rows: list[dict[str, Any]],
    json_columns: frozenset[str] = frozenset(),
) -> None:
    """``conn.execute(statement, rows)``, one statement for many rows. On SQLite the rows
    go to the driver as plain tuples: values pass as they are, but for ``json_columns``,
    encoded as the JSON type would."""
    if conn.dialect.name != "sqlite":
        conn.execute(statement, rows)
        return
    prepared = _driver_statement(conn, statement)
    encode = [json_text if n in json_columns else None for n in prepared.names]
    _on_driver(
        conn,
        prepared.sql,
        [
            tuple(
                row[n] if f is None else f(row[n])
                for n, f in zip(prepared.names, encode, strict=True)
            )
            for row in rows
        ],
        many=True,
    )
