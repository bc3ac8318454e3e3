"""Real ``parley run`` processes sharing one database and one Redis, for multi-node tests.

Apps are created with the ``parley`` CLI, a third process, as an operator would; each has
a domain of its own that requests name as Host, so no other app of a shared test database
(one serving 127.0.0.1, say) can claim them.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from parley.config import Settings
from parley.services.container import Services
from parley.storage.db import run_migrations
from tests.conftest import DATABASE_URL, REDIS_URL, check_redis, free_port, need_service


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


def cluster_env(redis_url: str, tmp: Path, **settings: str) -> dict[str, str]:
    """The environment of every process of one cluster: this test run's database (a
    SQLite file under ``tmp`` when none is configured), ``redis_url`` and one secret.
    ``settings`` are more ``PARLEY_*`` variables (``CHANGE_POLL_SECONDS="30"``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update(
        PARLEY_SECRET_KEY=secrets.token_hex(32),
        PARLEY_REDIS_URL=redis_url,
        PARLEY_DATA_DIR=str(tmp),
        PARLEY_DATABASE_URL=DATABASE_URL or f"sqlite+aiosqlite:///{tmp / 'parley.db'}",
    )
    env.update({f"PARLEY_{name}": value for name, value in settings.items()})
    return env


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
        name = "cluster-" + secrets.token_hex(4)
        data = json.loads(self.cli("app", "create", name, "--domain", f"{name}.test", "--json"))
        return ClusterApp(data["id"], f"{name}.test", data["apiKey"], data["clientKey"])

    def quick_app(self) -> ClusterApp:
        """An app made in this process by the service behind ``parley app create``, for
        tests about something else: starting the CLI costs seconds on a busy machine."""
        name = "cluster-" + secrets.token_hex(4)
        settings = Settings.model_validate(
            {
                key.removeprefix("PARLEY_").lower(): value
                for key, value in self.env.items()
                if key.startswith("PARLEY_")
            }
        )

        async def create() -> Any:
            services = Services(settings)
            try:
                return await services.apps.create(name, [f"{name}.test"], [])
            finally:
                await services.broker.close()
                await services.db.close()

        new = asyncio.run(create())
        return ClusterApp(new.app.id, f"{name}.test", new.api_key, new.client_key)

    def start_node(self, name: str) -> Node:
        port = free_port()
        log = self.tmp / f"{name}.log"
        node = Node(f"http://127.0.0.1:{port}", self._spawn(port, log), log)
        self.nodes.append(node)
        return node

    def _spawn(self, port: int, log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:  # a restarted node writes on after its earlier life
            return subprocess.Popen(
                [sys.executable, "-m", "parley", "run", "--port", str(port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self, node: Node) -> None:
        """``kill -9``: no shutdown, no flush, connections dropped mid-frame."""
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(timeout=10)

    def restart(self, node: Node) -> None:
        """Start a stopped node again on its own port and data (not waiting for health)."""
        if node.process.poll() is None:
            raise RuntimeError(f"node {node.url} is still running")
        port = int(node.url.rsplit(":", 1)[1])
        node.process = self._spawn(port, node.log)

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


@contextmanager
def running(cluster: Cluster, names: tuple[str, ...] = ("node1", "node2")) -> Iterator[Cluster]:
    """Migrate the database, start one node per name and wait until all answer; stop them
    all on the way out, whatever happened."""
    try:
        run_migrations(cluster.env["PARLEY_DATABASE_URL"])
        # An app before the first start: a node on an empty database would create a
        # "default" app serving 127.0.0.1.
        cluster.quick_app()
        for name in names:
            cluster.start_node(name)
        for node in cluster.nodes:
            cluster.wait_healthy(node)
        yield cluster
    finally:
        cluster.stop()
