"""Two ``parley run`` processes, one database, one Redis: a revocation or a rate-limit
count made on one node holds on the other at once.

Each node polls the change log only every 30 s here, and caches verified credentials for
60 s, so a revocation that reaches the other node within a second came through Redis.
Keys are changed with the ``parley`` CLI, a third process, as an operator would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.cluster_harness import (
    Cluster,
    admin_client,
    cluster_env,
    issue_token,
    need_redis,
    running,
    user_client,
)
from tests.conftest import assert_error, start_of_a_fresh_window

pytestmark = pytest.mark.redis

PROPAGATION = 1.0  # seconds a change may take to reach every node
POLL = 0.05


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    redis_url = need_redis()
    tmp = tmp_path_factory.mktemp("cluster")
    with running(Cluster(cluster_env(redis_url, tmp, CHANGE_POLL_SECONDS="30"), tmp)) as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def print_node_logs_on_failure(
    request: pytest.FixtureRequest, cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> Iterator[None]:
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        with capsys.disabled():
            print(f"\n{cluster.logs()}")


@pytest.fixture
def nodes(cluster: Cluster) -> tuple[str, str]:
    return cluster.nodes[0].url, cluster.nodes[1].url


def seconds_until(
    check: Callable[[], httpx.Response], refused: Callable[[httpx.Response], bool]
) -> tuple[float, httpx.Response]:
    """Call ``check`` every 50 ms until ``refused`` holds (at most 3 s); the time it took
    and the last response."""
    started = time.monotonic()
    while True:
        response = check()
        elapsed = time.monotonic() - started
        if refused(response) or elapsed > 3:
            return elapsed, response
        time.sleep(POLL)


def status_is(status: int) -> Callable[[httpx.Response], bool]:
    return lambda response: response.status_code == status


def wall_time_until_refused(
    check: Callable[[], httpx.Response], deadline: float
) -> tuple[float, httpx.Response]:
    """Call ``check`` every 50 ms while it answers 200 (until ``deadline``, wall clock);
    when it first did not, and that response."""
    while True:
        response = check()
        now = time.time()
        if response.status_code != 200 or now > deadline:
            return now, response
        time.sleep(POLL)


def test_user_token_revoked_on_one_node_is_refused_on_the_other_within_a_second(
    cluster: Cluster, nodes: tuple[str, str]
) -> None:
    node1, node2 = nodes
    app = cluster.create_app()
    token = issue_token(node1, app, "alice")
    with admin_client(node1, app) as admin1, user_client(node2, app, token) as user2:
        assert user2.get("/me").status_code == 200  # node 2 has the token cached now
        assert admin1.delete("/admin/clients/alice/token").status_code == 200
        elapsed, response = seconds_until(lambda: user2.get("/me"), status_is(401))
    assert_error(response, 401, "INVALID_TOKEN")
    assert elapsed < PROPAGATION


def test_client_key_revoked_by_the_cli_is_refused_on_every_node_within_a_second(
    cluster: Cluster, nodes: tuple[str, str]
) -> None:
    app = cluster.create_app()
    token = issue_token(nodes[0], app, "alice")
    users = [user_client(url, app, token) for url in nodes]
    try:
        assert [u.get("/me").status_code for u in users] == [200, 200]
        cluster.cli("client-key", "revoke", app.id)
        for user in users:
            elapsed, response = seconds_until(lambda u=user: u.get("/me"), status_is(403))
            assert_error(response, 403, "INVALID_CLIENT_KEY")
            assert elapsed < PROPAGATION, user.base_url
    finally:
        for user in users:
            user.close()


def test_rotated_api_key_is_refused_on_every_node_and_the_new_one_works(
    cluster: Cluster, nodes: tuple[str, str]
) -> None:
    app = cluster.create_app()
    admins = [admin_client(url, app) for url in nodes]
    try:
        assert [a.get("/admin/clients").status_code for a in admins] == [200, 200]
        new_key = json.loads(cluster.cli("api-key", "rotate", app.id, "--json"))["apiKey"]
        assert new_key != app.api_key
        for admin in admins:
            elapsed, response = seconds_until(
                lambda a=admin: a.get("/admin/clients"), status_is(401)
            )
            assert_error(response, 401, "INVALID_API_KEY")
            assert elapsed < PROPAGATION, admin.base_url
    finally:
        for admin in admins:
            admin.close()
    for url in nodes:
        with admin_client(url, app, new_key) as admin:
            assert admin.get("/admin/clients").status_code == 200


def test_client_key_rotated_with_grace_works_until_the_grace_ends_on_every_node(
    cluster: Cluster, nodes: tuple[str, str]
) -> None:
    grace = 8  # room for a slow CLI start on a loaded machine
    app = cluster.create_app()
    token = issue_token(nodes[0], app, "alice")
    old = [user_client(url, app, token) for url in nodes]
    try:
        assert [u.get("/me").status_code for u in old] == [200, 200]
        before = time.time()
        output = cluster.cli("client-key", "rotate", app.id, "--grace", str(grace), "--json")
        after = time.time()
        new_key = json.loads(output)["clientKey"]
        assert new_key != app.client_key

        # During the grace both keys work, on both nodes.
        assert [u.get("/me").status_code for u in old] == [200, 200]
        for url in nodes:
            with user_client(url, app, token, new_key) as new:
                assert new.get("/me").status_code == 200
        assert time.time() < before + grace, "the checks above ran past the grace"

        # Then the old key stops: not before the grace ends, and within a second of it.
        for user in old:
            refused_at, response = wall_time_until_refused(
                lambda u=user: u.get("/me"), deadline=after + grace + 2
            )
            assert_error(response, 403, "INVALID_CLIENT_KEY")
            assert before + grace <= refused_at < after + grace + PROPAGATION, user.base_url
    finally:
        for user in old:
            user.close()
    for url in nodes:
        with user_client(url, app, token, new_key) as new:
            assert new.get("/me").status_code == 200


def test_the_rate_limit_is_shared_by_the_nodes(cluster: Cluster, nodes: tuple[str, str]) -> None:
    app = cluster.create_app()
    cluster.cli("app", "update", app.id, "--rate-limit", "20")
    start_of_a_fresh_window()
    started = time.time()
    with admin_client(nodes[0], app) as admin1, admin_client(nodes[1], app) as admin2:
        statuses = [admin1.get("/admin/clients").status_code for _ in range(12)]
        statuses += [admin2.get("/admin/clients").status_code for _ in range(8)]
        over = [admin1.get("/admin/clients"), admin2.get("/admin/clients")]
    assert int(started // 60) == int(time.time() // 60), "the run crossed into the next minute"
    assert statuses == [200] * 20
    for response in over:
        body = assert_rate_limited(response)
        assert 1 <= body["retryAfter"] <= 60


def assert_rate_limited(response: httpx.Response) -> dict[str, Any]:
    body = assert_error(response, 429, "RATE_LIMIT_EXCEEDED")
    assert response.headers["Retry-After"] == str(body["retryAfter"])
    return body
