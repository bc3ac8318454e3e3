"""The first run: ``parley run`` on an empty data directory migrates the embedded database,
creates a default application served on localhost and prints its keys, which work at
once. On PostgreSQL the schema is the operator's job: ``parley migrate``."""

from __future__ import annotations

import json
import re
import sqlite3
import stat
from pathlib import Path

import httpx
import pytest

from parley.storage.db import head_revision
from parley.storage.tables import Base
from tests.cli.test_cli import ServerProcess, parley, parley_env, parley_ok
from tests.conftest import DATABASE_URL, free_port, need_service
from tests.storage.test_migrations import fresh_postgres_database, table_names


@pytest.fixture
def postgres_url() -> str:
    if not DATABASE_URL:
        need_service("PostgreSQL (PARLEY_TEST_DATABASE_URL)")
    return DATABASE_URL


def printed_key(output: str, label: str) -> str:
    match = re.search(rf"^\s*{label} \([^)]*\):\s*(\S+)\s*$", output, re.MULTILINE)
    assert match, f"no {label} line in:\n{output}"
    return match.group(1)


def me(server: ServerProcess, host: str, client_key: str, token: str) -> httpx.Response:
    # Connect to 127.0.0.1 and name the host in the header, as a browser on that URL would.
    headers = {"Host": host, "IM-CLIENT-KEY": client_key, "IM-Authorization": token}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as c:
        return c.get("/me")


def test_first_run_prints_working_keys_of_a_default_app(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"  # does not exist yet
    env = parley_env(data_dir)  # no secret configured either: the server makes one
    first = ServerProcess(env, tmp_path / "first.log")
    try:
        first.wait_ready()
        output = first.output
        api_key = printed_key(output, "API Key")
        client_key = printed_key(output, "Client Key")
        served_on = re.search(r"served on (.*)\.$", output, re.MULTILINE)
        assert served_on and "localhost" in served_on.group(1).split(", "), output

        with httpx.Client(base_url=first.url, headers={"IM-API-KEY": api_key}) as admin:
            response = admin.post("/admin/clients", json={"_id": "ada", "issueAccessToken": True})
        assert response.status_code == 200, response.text
        token = response.json()["result"]["token"]
        for host in (f"localhost:{first.port}", f"127.0.0.1:{first.port}"):
            response = me(first, host, client_key, token)
            assert response.status_code == 200, (host, response.text)
            assert response.json()["result"]["_id"] == "ada"
    finally:
        first.stop()

    # It migrated the embedded database and kept the secret it made, for the owner only.
    with sqlite3.connect(data_dir / "parley.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (head_revision(),)
        ]
    assert stat.S_IMODE((data_dir / "secret.key").stat().st_mode) == 0o600

    # The second run finds its app: no new app, no API Key printed again, same keys valid.
    second = ServerProcess(env, tmp_path / "second.log")
    try:
        second.wait_ready()
        assert "API Key" not in second.output
        assert api_key not in second.output
        assert me(second, f"localhost:{second.port}", client_key, token).status_code == 200
    finally:
        second.stop()
    apps = json.loads(parley_ok(env, "app", "list", "--json"))
    assert [(a["name"], a["domains"]) for a in apps] == [("default", ["127.0.0.1", "localhost"])]


@pytest.mark.postgres
def test_migrate_builds_the_schema_of_a_fresh_postgres_database(
    tmp_path: Path, postgres_url: str
) -> None:
    with fresh_postgres_database(postgres_url, "parley_migrate") as url:
        env = parley_env(tmp_path, PARLEY_DATABASE_URL=url)
        output = parley_ok(env, "migrate")
        assert output.strip() == f"Database at revision {head_revision()}"
        assert table_names(url) == set(Base.metadata.tables) | {"alembic_version"}
        # Migrating again is harmless.
        assert parley_ok(env, "migrate").strip() == f"Database at revision {head_revision()}"


@pytest.mark.postgres
def test_run_refuses_an_unmigrated_postgres_database(tmp_path: Path, postgres_url: str) -> None:
    with fresh_postgres_database(postgres_url, "parley_unmigrated") as url:
        env = parley_env(tmp_path, PARLEY_DATABASE_URL=url)
        done = parley(env, "run", "--port", str(free_port()))
        assert done.returncode == 1, done.stdout + done.stderr
        assert "parley migrate" in done.stderr
        assert "API Key" not in done.stdout  # nothing was created
        assert table_names(url) == set()
