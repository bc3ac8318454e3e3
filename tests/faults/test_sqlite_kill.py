"""Scenario 5: the embedded default (SQLite, in-memory broker) survives ``kill -9``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.scenarios import sqlite_node_killed

pytestmark = pytest.mark.once


def test_kill_9_of_the_embedded_default_loses_nothing_acked(tmp_path: Path) -> None:
    result = sqlite_node_killed(tmp_path)
    verdict = result.verdict
    assert verdict.acked > 50, result.answers
    assert verdict.valid, (verdict, result.answers, result.logs[-4000:])
    assert result.facts["reconnects"] >= 4, result.facts  # every receiver came back
