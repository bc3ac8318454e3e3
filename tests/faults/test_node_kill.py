"""Scenario 1: ``kill -9`` of one of two nodes (PostgreSQL + Redis) behind a load
balancer, under load: nothing acked is lost, doubled or reordered."""

from __future__ import annotations

import pytest

from tests.cluster_harness import need_redis
from tests.conftest import DATABASE_URL, need_service
from tests.faults.scenarios import Result, node_killed

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> Result:
    redis_url = need_redis()
    if not DATABASE_URL.startswith("postgresql"):
        need_service("PostgreSQL (PARLEY_TEST_DATABASE_URL)")
    return node_killed(tmp_path_factory.mktemp("node-kill"), DATABASE_URL, redis_url)


def test_receivers_reconnect_through_the_balancer(result: Result) -> None:
    # Every receiver on the killed node came back, through the balancer to the survivor.
    assert result.facts["reconnects"] > 0, result.facts
    assert len(result.facts["connections by node"]) == 2, result.facts


def test_nothing_acked_is_lost_doubled_or_let_in(result: Result) -> None:
    result.assert_nothing_lost_doubled_or_let_in(at_least_acked=101)


def test_every_receiver_gets_each_rooms_messages_in_seq_order(result: Result) -> None:
    assert result.verdict.out_of_order == 0, result.verdict.problems
