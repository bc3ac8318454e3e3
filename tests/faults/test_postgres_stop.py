"""Scenario 3: a private PostgreSQL stopped (``-m immediate``) and started under load:
sends meanwhile get a retryable 503 and no ack, the node stays up, nothing acked is lost."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import need_service
from tests.faults.harness import PrivatePostgres
from tests.faults.scenarios import postgres_stopped

pytestmark = pytest.mark.postgres


def test_a_database_outage_is_a_503_and_loses_nothing(tmp_path: Path) -> None:
    if PrivatePostgres().bin is None or shutil.which("runuser") is None:
        need_service("PostgreSQL binaries (initdb, pg_ctl) to run a private PostgreSQL")
    result = postgres_stopped(tmp_path)
    verdict, facts, answers = result.verdict, result.facts, result.answers
    assert verdict.valid, (verdict, answers, result.logs[-4000:])
    assert facts["503s"] > 0, (facts, answers)
    assert facts["probe"] == "503 SERVICE_UNAVAILABLE" and facts["probe retry-after"], facts
    assert facts["probe s"] < 5, facts  # an answer, not a hang
    assert facts["acked during outage"] == 0, facts
    assert facts["alive"] and facts["health"] == "ok", facts
    # Every refusal was a retryable one: never a 500, never a hang without an answer.
    assert facts["refused"] == 0 and not any(a.startswith("500") for a in answers), answers
