"""Time in the units the wire speaks: epoch milliseconds, and ISO-8601 UTC with ms."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@functools.lru_cache(maxsize=4)
def utc_day(epoch_second: int) -> str:
    """The UTC day of a moment, ``YYYY-MM-DD`` (cached: counters ask about the same
    second many times)."""
    return datetime.fromtimestamp(epoch_second, UTC).strftime("%Y-%m-%d")


_SECONDS: dict[int, str] = {}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(ms: int | None) -> str | None:
    """``2020-06-11T06:15:36.761Z``. Integer arithmetic (a float division rounds the
    milliseconds of far dates wrong), and the formatted second cached: a page of messages
    formats three times per message, mostly the same few seconds."""
    if ms is None:
        return None
    seconds, millis = divmod(int(ms), 1000)
    head = _SECONDS.get(seconds)
    if head is None:
        if len(_SECONDS) > 4096:
            _SECONDS.clear()
        head = _SECONDS[seconds] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{head}.{millis:03d}Z"


def parse_time(value: object) -> int:
    """An ISO-8601 string or epoch milliseconds (as number or digits) → epoch ms."""
    if isinstance(value, bool):
        raise ValueError("not a time")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        # Exact integer milliseconds: timestamp() is a float and rounds some away.
        return (parsed - _EPOCH) // timedelta(milliseconds=1)
    raise ValueError("not a time")
