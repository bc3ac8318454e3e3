"""Checks of request parameters that several services share: ids, numbers, times, flags.
Each raises the contract's 400 with a message naming the parameter."""

from __future__ import annotations

from typing import Any

from parley.services.auth import Principal
from parley.services.clock import parse_time
from parley.services.errors import InvalidRequest
from parley.services.users import LATEST_TIME_MS


def acting_user(caller: Principal) -> str:
    if caller.user_id is None:
        raise InvalidRequest(
            "With the API Key, name the user in the IM-CLIENT-ID header", code="MISSING_PARAMETER"
        )
    return caller.user_id


def check_room_id(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 255 or not value.isprintable():
        raise InvalidRequest("A room id is 1 to 255 printable characters")
    return value


def int_param(value: Any, name: str, default: int, maximum: int | None = 10_000_000) -> int:
    if value is None or value == "":
        return default
    # JSON true/false and 2.5 are not whole numbers, though int() would take them.
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise InvalidRequest(f"{name} must be a whole number")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{name} must be a whole number") from None
    if number < 0 or (maximum is not None and number > maximum):
        raise InvalidRequest(f"{name} is out of range")
    return number


def time_param(value: Any, name: str, *, code: str = "INVALID_REQUEST") -> int | None:
    if value is None or value == "":
        return None
    try:
        ms = parse_time(value)
    except (TypeError, ValueError, OverflowError):
        ms = -1
    if not 0 <= ms <= LATEST_TIME_MS:
        raise InvalidRequest(f"{name} must be an ISO-8601 time or epoch milliseconds", code=code)
    return ms


def flag(body: dict[str, Any], name: str, *, default: bool) -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be a boolean")
    return value


def tag_list(value: Any, *, maximum: int = 100, name: str = "tags") -> list[str]:
    """A list of tags (one tag alone is a list of one), without repeats."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or len(value) > maximum
        or not all(isinstance(t, str) and 0 < len(t) <= 100 for t in value)
    ):
        raise InvalidRequest(
            f"{name} must be a list of at most {maximum} tags", code="INVALID_TAGS"
        )
    return list(dict.fromkeys(value))
