"""Scenario 2: the broker (a private ``redis-server``) killed and restarted under load:
live fan-out comes back within 5 s and nothing acked is lost (what was published while
Redis was down reaches the receivers through the nodes' replay). Order is not judged
here: the replay comes after live messages that followed it (reported in the table)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import DATABASE_URL, need_service
from tests.faults.scenarios import redis_killed

pytestmark = pytest.mark.redis


def test_redis_restart_resumes_fan_out_and_loses_nothing(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        need_service("redis-server (to run a private Redis)")
    result = redis_killed(tmp_path, DATABASE_URL)
    result.assert_nothing_lost_doubled_or_let_in(at_least_acked=101)
    assert result.facts["fan-out back s"] <= 5.0, result.facts
    # What the outage held back comes before what followed it, room by room.
    assert result.verdict.out_of_order == 0, result.verdict.problems
