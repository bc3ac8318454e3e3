"""Two ``parley run`` processes, one database, one Redis: a revocation or a rate-limit
count made on one node holds on the other at once.

Each node polls the change log only every 30 s here, and caches verified credentials for
60 s, so a revocation that reaches the other node within a second came through Redis.
Keys are changed with the ``parley`` CLI, a third process, as an operator would.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    DATABASE_URL,
    REDIS_URL,
    assert_error,
    check_redis,
    free_port,
    need_service,
    start_of_a_fresh_window,
)

pytestmark = pytest.mark.redis

PROPAGATION = 1.0  # seconds a change may take to reach every node
POLL = 0.05


@dataclass
class Node:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class ClusterApp:
    id: str
    domain: str
    api_key: str
    client_key: str


class Cluster:
    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.env = env
        self.tmp = tmp
        self.nodes: list[Node] = []

    def cli(self, *args: str) -> str:
        """Run ``parley ARGS`` with the cluster's settings; its stdout."""
        done = subprocess.run(
            [sys.executable, "-m", "parley", *args],
            env=self.env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (args, done.stdout.decode(), done.stderr.decode())
        return done.stdout.decode()

    def create_app(self) -> ClusterApp:
        # Requests name the app's own domain as Host, so no other app of a shared test
        # database (one serving 127.0.0.1, say) can claim them.
        name = "cluster-" + secrets.token_hex(4)
        data = json.loads(self.cli("app", "create", name, "--domain", f"{name}.test", "--json"))
        return ClusterApp(data["id"], f"{name}.test", data["apiKey"], data["clientKey"])

    def start_node(self, name: str) -> Node:
        port = free_port()
        log = self.tmp / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "parley", "run", "--port", str(port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        node = Node(f"http://127.0.0.1:{port}", process, log)
        self.nodes.append(node)
        return node

    def wait_healthy(self, node: Node, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.process.poll() is not None:
                break
            try:
                if httpx.get(node.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"node {node.url} did not become healthy:\n{self.logs()}")

    def stop(self) -> None:
        for node in self.nodes:
            node.process.terminate()
        for node in self.nodes:
            try:
                node.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(timeout=5)

    def logs(self) -> str:
        parts = []
        for node in self.nodes:
            text = node.log.read_text(errors="replace") if node.log.exists() else ""
            parts.append(f"----- {node.log.name} ({node.url}) -----\n{text}")
        return "\n".join(parts)


def need_redis() -> str:
    if not REDIS_URL:
        need_service("Redis (PARLEY_TEST_REDIS_URL)")
    check_redis(REDIS_URL)
    return REDIS_URL


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    redis_url = need_redis()
    tmp = tmp_path_factory.mktemp("cluster")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update(
        PARLEY_SECRET_KEY=secrets.token_hex(32),
        PARLEY_REDIS_URL=redis_url,
        PARLEY_DATA_DIR=str(tmp),
        PARLEY_DATABASE_URL=DATABASE_URL or f"sqlite+aiosqlite:///{tmp / 'parley.db'}",
        PARLEY_CHANGE_POLL_SECONDS="30",
    )
    cluster = Cluster(env, tmp)
    try:
        cluster.cli("migrate")
        # An app before the first start: a node on an empty database would create a
        # "default" app serving 127.0.0.1.
        cluster.create_app()
        for name in ("node1", "node2"):
            cluster.start_node(name)
        for node in cluster.nodes:
            cluster.wait_healthy(node)
        yield cluster
    finally:
        cluster.stop()


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


def client(url: str, app: ClusterApp, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Host": app.domain, **headers}, timeout=10)


def admin_client(url: str, app: ClusterApp, api_key: str | None = None) -> httpx.Client:
    return client(url, app, **{"IM-API-KEY": api_key or app.api_key})


def user_client(
    url: str, app: ClusterApp, token: str, client_key: str | None = None
) -> httpx.Client:
    headers = {"IM-CLIENT-KEY": client_key or app.client_key, "IM-Authorization": token}
    return client(url, app, **headers)


def issue_token(url: str, app: ClusterApp, user_id: str) -> str:
    with admin_client(url, app) as admin:
        response = admin.post("/admin/clients", json={"_id": user_id, "issueAccessToken": True})
    assert response.status_code == 200, response.text
    return str(response.json()["result"]["token"])


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
    grace = 3
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
