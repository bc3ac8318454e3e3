"""Scenario 4: 500 sockets that authenticate and then never read. The node's memory stays
bounded and the other clients' p99 delivery latency stays within 2x of the same load
without them."""

from __future__ import annotations

import pytest

from tests.faults.scenarios import RSS_BOUND_MB, Result, slow_consumers

pytestmark = pytest.mark.once


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> Result:
    return slow_consumers(tmp_path_factory.mktemp("slow-consumers"))


def test_stalled_readers_leave_the_others_whole(result: Result) -> None:
    assert result.facts["stalled"] == 500, result.facts
    assert result.verdict.valid, (result.verdict, result.answers)


def test_stalled_readers_do_not_grow_the_nodes_memory(result: Result) -> None:
    assert result.facts["rss peak MB"] < RSS_BOUND_MB, result.facts


def test_stalled_readers_do_not_stall_the_others(
    result: Result, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # The promise (p99 within 2x of the run without them) is judged at full length by
    # `scripts/faults 4`, alone on the machine. Here, beside the other test pass, the
    # short run is judged more loosely: a p99 of under 100 ms counts as 100 ms; and a
    # run over that is run once more, as a burst of the other pass can take both cores
    # for a moment (seen once in CI: 383 ms, where runs beside a busy core give 19-31 ms).
    # A gateway that does stall behind stalled readers fails both runs.
    facts = result.facts
    if facts["p99 stalled ms"] > _loose_bound(facts):
        facts = slow_consumers(tmp_path_factory.mktemp("slow-consumers-again")).facts
    assert facts["p99 stalled ms"] <= _loose_bound(facts), facts


def _loose_bound(facts: dict[str, float]) -> float:
    return 3 * max(facts["p99 base ms"], 100.0)
