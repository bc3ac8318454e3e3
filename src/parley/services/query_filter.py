"""The MongoDB-style ``q`` filter of the IMKIT API, translated to SQL.

Accepted: ``{"field": value}`` (equality), ``{"field": {"$op": value}}`` with
``$eq $ne $gt $gte $lt $lte $in $nin $exists $regex`` (+ ``$options: "i"``), and
``$and`` / ``$or`` lists. Fields are the ones the caller names; anything else is a clear
400 ``INVALID_QUERY``, never a scan of arbitrary columns.

Regular expressions are user input: they must compile with RE2 (which SQLite's REGEXP
runs, in linear time) and stay short; PostgreSQL bounds every statement with a timeout.
"""

from __future__ import annotations

import re
from typing import Any

import re2
from sqlalchemy import and_, false, not_, or_, true
from sqlalchemy.sql.elements import ColumnElement

from parley.services.errors import InvalidRequest

MAX_DEPTH = 4
MAX_IN = 1000
MAX_REGEX = 128
_NESTED_QUANTIFIER = re.compile(r"\)[*+?{]")
_Scalar = str | int | float | bool


def invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="INVALID_QUERY")


def build_filter(q: Any, fields: dict[str, Any], depth: int = 0) -> ColumnElement[bool]:
    if depth > MAX_DEPTH:
        raise invalid("The query nests too deeply")
    if not isinstance(q, dict):
        raise invalid("The query must be a JSON object")
    conditions: list[ColumnElement[bool]] = []
    for key, value in q.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value or len(value) > 20:
                raise invalid(f"{key} takes a list of 1 to 20 queries")
            parts = [build_filter(v, fields, depth + 1) for v in value]
            conditions.append(and_(*parts) if key == "$and" else or_(*parts))
        elif key in fields:
            conditions.append(_field_condition(fields[key], key, value))
        else:
            raise invalid(f"Cannot filter on {key!r}; allowed: {', '.join(sorted(fields))}")
    return and_(true(), *conditions)


def _field_condition(column: Any, name: str, value: Any) -> ColumnElement[bool]:
    if not isinstance(value, dict):
        return _eq(column, _scalar(name, value, column))
    if not value:
        raise invalid(f"Empty operator object for {name!r}")
    options = value.get("$options", "")
    if not isinstance(options, str) or set(options) - {"i"}:
        raise invalid("$options supports only 'i'")
    parts: list[ColumnElement[bool]] = []
    for op, operand in value.items():
        if op == "$options":
            if "$regex" not in value:
                raise invalid("$options goes with $regex")
        elif op == "$eq":
            parts.append(_eq(column, _scalar(name, operand, column)))
        elif op == "$ne":
            operand = _scalar(name, operand, column)
            parts.append(
                column.is_not(None) if operand is None else or_(column.is_(None), column != operand)
            )
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            operand = _scalar(name, operand, column)
            if operand is None:
                raise invalid(f"{op} needs a value")
            parts.append(
                {
                    "$gt": column > operand,
                    "$gte": column >= operand,
                    "$lt": column < operand,
                    "$lte": column <= operand,
                }[op]
            )
        elif op in ("$in", "$nin"):
            if not isinstance(operand, list) or len(operand) > MAX_IN:
                raise invalid(f"{op} takes a list of at most {MAX_IN} values")
            values = [_scalar(name, v, column) for v in operand]
            if not values:
                parts.append(false() if op == "$in" else true())
            else:
                cond = column.in_(values)
                parts.append(cond if op == "$in" else or_(column.is_(None), not_(cond)))
        elif op == "$exists":
            parts.append(column.is_not(None) if operand else column.is_(None))
        elif op == "$regex":
            # "(?i)" is understood by Python's re (SQLite) and PostgreSQL's AREs alike;
            # SQLAlchemy's flags= argument is silently dropped on SQLite.
            if not _is_text(column):
                raise invalid(f"$regex applies to text fields, not {name!r}")
            pattern = _regex(operand)
            parts.append(column.regexp_match("(?i)" + pattern if options else pattern))
        else:
            raise invalid(f"Unsupported operator {op!r}")
    return and_(*parts)


def _eq(column: Any, value: _Scalar | None) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


def _scalar(name: str, value: Any, column: Any) -> _Scalar | None:
    """A comparable value of the column's own type (PostgreSQL will not compare text
    with numbers, and a number never equals a string id anyway)."""
    if value is None:
        return None
    if _is_text(column):
        if not isinstance(value, str):
            raise invalid(f"Value for {name!r} must be a string or null")
        if len(value) > 1000:
            raise invalid(f"Value for {name!r} is too long")
        return value
    try:
        kind = column.type.python_type
    except NotImplementedError:
        kind = None
    if kind is bool:
        if not isinstance(value, bool):
            raise invalid(f"Value for {name!r} must be true, false or null")
        return value
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise invalid(f"Value for {name!r} must be a number or null")
        if not -(2**63) <= value < 2**63:
            raise invalid(f"Value for {name!r} is out of range")
        return value
    if isinstance(value, _Scalar):
        return value
    raise invalid(f"Value for {name!r} must be a string, number, boolean or null")


def _is_text(column: Any) -> bool:
    try:
        return column.type.python_type is str
    except NotImplementedError:
        return False


def _regex(pattern: Any) -> str:
    if not isinstance(pattern, str) or not 0 < len(pattern) <= MAX_REGEX:
        raise invalid(f"$regex takes a pattern of 1 to {MAX_REGEX} characters")
    if _NESTED_QUANTIFIER.search(pattern) or "(?" in pattern:
        raise invalid("$regex patterns may not quantify groups or use inline flags")
    try:
        re2.compile(pattern)
    except re2.error as exc:
        raise invalid(f"Bad $regex: {exc}") from None
    return pattern
