"""Wire times: ISO-8601 with milliseconds, exact to the millisecond over the whole range."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from parley.services.clock import iso, parse_time
from parley.services.users import LATEST_TIME_MS


def test_known_values() -> None:
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert iso(1591856136761) == "2020-06-11T06:15:36.761Z"
    # A float division gives .998 here: the last millisecond of the range must survive.
    assert iso(LATEST_TIME_MS) == "9999-12-31T23:59:59.999Z"
    assert iso(None) is None


@given(st.integers(min_value=0, max_value=LATEST_TIME_MS))
def test_iso_reads_back_as_the_same_millisecond(ms: int) -> None:
    text = iso(ms)
    assert text is not None and len(text) == 24
    assert parse_time(text) == ms
