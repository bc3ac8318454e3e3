"""The ``parley`` command, run as an operator runs it: a separate process beside a running
server (``parley run``, also a separate process). What the CLI changes, the running server
honours within two seconds: with no broker between them, it polls the change log every
second."""

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

from parley.services import crypto
from tests.conftest import DATABASE_URL, assert_error, free_port

CLI_TIMEOUT = 60  # seconds for one command; a hung command fails the test, not the run
PROPAGATION = 2.0  # seconds a running server may take to honour a change made by the CLI


# -- running the CLI and the server as subprocesses --------------------------------------


def parley_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``parley`` process: nothing inherited from ``PARLEY_*``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update(PARLEY_DATA_DIR=str(data_dir), PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def parley(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "parley", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=CLI_TIMEOUT,
        check=False,
    )


def parley_ok(env: dict[str, str], *args: str) -> str:
    done = parley(env, *args)
    assert done.returncode == 0, f"parley {' '.join(args)}: {done.stderr}"
    return done.stdout


def parley_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(parley_ok(env, *args, "--json"))


def assert_cli_error(done: subprocess.CompletedProcess[str], code: str) -> None:
    """A refused command: exit code 1, ``error: CODE: message`` on stderr, nothing on stdout."""
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith(f"error: {code}: "), done.stderr
    assert done.stdout == ""


class ServerProcess:
    """``parley run`` in a subprocess; its output goes to a file the test can read."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "parley", "run", "--port", str(self.port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8")

    def wait_ready(self, timeout: float = 30) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"parley run exited early:\n{self.output}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"parley run did not answer within {timeout} s:\n{self.output}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)
        self._log.close()


def eventually(probe: Callable[[], Any], expected: Any, within: float = PROPAGATION) -> float:
    """Call ``probe`` until it returns ``expected``; returns when it did (time.time())."""
    deadline = time.monotonic() + within
    last = None
    for _ in range(1000):  # bounded in count as well as in time
        last = probe()
        if last == expected:
            return time.time()
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    raise AssertionError(f"still {last!r}, not {expected!r}, after {within} s")


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if DATABASE_URL:
        # The session fixture resets the shared PostgreSQL database; let it do so before
        # this module fills it, not in the middle of it.
        request.getfixturevalue("settings")
    extra = {"PARLEY_SECRET_KEY": secrets.token_hex(32)}
    if DATABASE_URL:
        extra["PARLEY_DATABASE_URL"] = DATABASE_URL
    env = parley_env(tmp_path_factory.mktemp("cli"), **extra)
    parley_ok(env, "migrate")
    return env


@pytest.fixture(scope="module")
def server(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("cli-server") / "parley.log"
    node = ServerProcess({**env, "PARLEY_USAGE_FLUSH_SECONDS": "0.2"}, log)
    try:
        yield node.wait_ready()
    finally:
        node.stop()


@dataclass
class CliApp:
    id: str
    name: str
    domain: str
    api_key: str
    client_key: str


def create_app(env: dict[str, str], *extra: str) -> CliApp:
    """A new app with a unique name and domain: the database may be shared with others."""
    tag = secrets.token_hex(4)
    name, domain = f"cli-{tag}", f"app-{tag}.example"
    data = parley_json(env, "app", "create", name, "--domain", domain, *extra)
    return CliApp(data["id"], name, domain, data["apiKey"], data["clientKey"])


@pytest.fixture
def app(env: dict[str, str]) -> CliApp:
    return create_app(env)


def http(server: ServerProcess, app: CliApp, **headers: str) -> httpx.Client:
    """A client of the running server, on the app's own domain."""
    return httpx.Client(base_url=server.url, headers={"Host": app.domain, **headers}, timeout=10)


def admin_status(server: ServerProcess, app: CliApp, api_key: str) -> int:
    with http(server, app, **{"IM-API-KEY": api_key}) as c:
        return c.get("/admin/clients").status_code


def new_user_token(server: ServerProcess, app: CliApp, user_id: str = "alice") -> str:
    with http(server, app, **{"IM-API-KEY": app.api_key}) as c:
        response = c.post("/admin/clients", json={"_id": user_id, "issueAccessToken": True})
    assert response.status_code == 200, response.text
    return str(response.json()["result"]["token"])


def me_status(server: ServerProcess, app: CliApp, client_key: str, token: str) -> int:
    with http(server, app, **{"IM-CLIENT-KEY": client_key, "IM-Authorization": token}) as c:
        return c.get("/me").status_code


def masked(api_key: str) -> str:
    return f"{api_key[:9]}…{api_key[-4:]}"


# -- applications ------------------------------------------------------------------------


def test_app_create_prints_the_app_and_its_keys_as_json(env: dict[str, str]) -> None:
    tag = secrets.token_hex(4)
    data = parley_json(
        env, "app", "create", f"cli-{tag}", "--domain", f"Chat-{tag}.Example",
        "--origin", "https://web.example",
    )  # fmt: skip
    assert {"id", "name", "domains", "apiKey", "clientKey"} <= data.keys()
    assert data["name"] == f"cli-{tag}"
    assert data["domains"] == [f"chat-{tag}.example"]  # host names are stored lower case
    assert data["allowedOrigins"] == ["https://web.example"]
    assert crypto.api_key_well_formed(data["apiKey"])
    payload = crypto.read_jwt_payload(data["clientKey"])
    assert payload["clientId"] == data["id"]
    assert "apiKey" not in json.dumps(payload) and data["apiKey"] not in data["clientKey"]


def test_keys_printed_by_app_create_work_on_the_running_server(
    server: ServerProcess, app: CliApp
) -> None:
    assert admin_status(server, app, app.api_key) == 200
    token = new_user_token(server, app)
    assert me_status(server, app, app.client_key, token) == 200


def test_app_create_text_output_shows_the_api_key_once(env: dict[str, str]) -> None:
    tag = secrets.token_hex(4)
    out = parley_ok(env, "app", "create", f"cli-{tag}")
    api_key = out.split("API Key (shown only now): ")[1].split()[0]
    assert crypto.api_key_well_formed(api_key)
    assert f"cli-{tag}" in out
    # Afterwards nothing shows it again.
    assert api_key not in parley_ok(env, "app", "show", f"cli-{tag}")


def test_app_list_in_text_and_json(env: dict[str, str], app: CliApp) -> None:
    text = parley_ok(env, "app", "list")
    line = next(line for line in text.splitlines() if app.id in line)
    assert app.name in line and app.domain in line

    listed = parley_ok(env, "app", "list", "--json")
    views = {v["id"]: v for v in json.loads(listed)}
    assert views[app.id]["name"] == app.name
    assert views[app.id]["domains"] == [app.domain]
    assert views[app.id]["apiKeys"] == [masked(app.api_key)]
    assert app.api_key not in text and app.api_key not in listed


@pytest.mark.parametrize("by", ["id", "name"])
def test_app_show_masks_the_api_key(env: dict[str, str], app: CliApp, by: str) -> None:
    ref = app.id if by == "id" else app.name
    text = parley_ok(env, "app", "show", ref)
    assert app.id in text and app.name in text and app.domain in text
    assert masked(app.api_key) in text
    assert app.client_key in text  # the Client Key is public: shown whenever asked
    assert app.api_key not in text

    view = parley_json(env, "app", "show", ref)
    assert view["id"] == app.id
    assert view["apiKeys"] == [masked(app.api_key)]
    assert view["clientKey"] == app.client_key


def test_app_show_refuses_an_ambiguous_name(env: dict[str, str], app: CliApp) -> None:
    twin = parley_json(env, "app", "create", app.name)
    assert_cli_error(parley(env, "app", "show", app.name), "INVALID_REQUEST")
    assert parley_json(env, "app", "show", twin["id"])["id"] == twin["id"]


def test_app_update_changes_name_domains_origins_and_rate_limit(
    env: dict[str, str], app: CliApp
) -> None:
    tag = secrets.token_hex(4)
    view = parley_json(
        env, "app", "update", app.name, "--name", f"renamed-{tag}",
        "--domain", f"one-{tag}.example", "--domain", f"two-{tag}.example",
        "--origin", "https://web.example", "--rate-limit", "5",
    )  # fmt: skip
    assert view["id"] == app.id
    assert view["name"] == f"renamed-{tag}"
    assert view["domains"] == [f"one-{tag}.example", f"two-{tag}.example"]
    assert view["allowedOrigins"] == ["https://web.example"]
    assert view["rateLimitPerMinute"] == 5

    assert parley_json(env, "app", "show", f"renamed-{tag}") == view
    assert_cli_error(parley(env, "app", "show", app.name), "APP_NOT_FOUND")
    # The replaced domain is free again.
    other = parley_json(env, "app", "create", f"cli-{tag}", "--domain", app.domain)
    assert other["domains"] == [app.domain]


def test_app_update_text_output_and_clear_origins(env: dict[str, str]) -> None:
    app = create_app(env, "--origin", "https://web.example")
    text = parley_ok(env, "app", "update", app.id, "--clear-origins")
    assert "allowed origins: any" in text
    assert parley_json(env, "app", "show", app.id)["allowedOrigins"] == []


def test_rate_limit_set_by_the_cli_is_enforced_by_the_running_server(
    env: dict[str, str], server: ServerProcess, app: CliApp
) -> None:
    assert admin_status(server, app, app.api_key) == 200  # the server now caches the app
    parley_ok(env, "app", "update", app.id, "--rate-limit", "2")
    eventually(lambda: admin_status(server, app, app.api_key), 429)
    with http(server, app, **{"IM-API-KEY": app.api_key}) as c:
        body = assert_error(c.get("/admin/clients"), 429, "RATE_LIMIT_EXCEEDED")
    assert 1 <= body["retryAfter"] <= 60


def test_app_delete_needs_confirmation(env: dict[str, str], app: CliApp) -> None:
    done = parley(env, "app", "delete", app.id, stdin="n\n")
    assert done.returncode == 1
    assert "Aborted" in done.stderr
    assert parley_json(env, "app", "show", app.id)["id"] == app.id


def test_app_delete_removes_the_app_and_its_keys_stop_working(
    env: dict[str, str], server: ServerProcess, app: CliApp
) -> None:
    token = new_user_token(server, app)
    assert me_status(server, app, app.client_key, token) == 200

    assert parley_ok(env, "app", "delete", app.name, "--yes").strip() == f"Deleted {app.id}"
    assert_cli_error(parley(env, "app", "show", app.id), "APP_NOT_FOUND")
    assert app.id not in parley_ok(env, "app", "list")
    eventually(lambda: admin_status(server, app, app.api_key), 401)
    assert me_status(server, app, app.client_key, token) == 403


@pytest.mark.parametrize(
    "command",
    [
        ["app", "show"],
        ["app", "update", "--name", "x"],
        ["app", "delete", "--yes"],
        ["app", "usage"],
        ["client-key", "show"],
        ["client-key", "revoke"],
        ["client-key", "generate"],
        ["client-key", "rotate"],
        ["api-key", "rotate"],
        ["api-key", "revoke"],
    ],
    ids=" ".join,
)
def test_unknown_app_is_exit_1_app_not_found(env: dict[str, str], command: list[str]) -> None:
    group, verb, *options = command
    unknown = f"no-such-app-{secrets.token_hex(4)}"
    assert_cli_error(parley(env, group, verb, unknown, *options), "APP_NOT_FOUND")


def test_a_domain_serves_one_app_only(env: dict[str, str], app: CliApp) -> None:
    tag = secrets.token_hex(4)
    done = parley(env, "app", "create", f"cli-{tag}", "--domain", app.domain.upper())
    assert_cli_error(done, "DOMAIN_TAKEN")
    assert app.domain in done.stderr
    assert f"cli-{tag}" not in parley_ok(env, "app", "list")  # nothing half-created

    other = create_app(env)
    assert_cli_error(parley(env, "app", "update", other.id, "--domain", app.domain), "DOMAIN_TAKEN")
    assert parley_json(env, "app", "show", other.id)["domains"] == [other.domain]


def test_a_new_apps_domain_is_honoured_by_the_running_server(
    env: dict[str, str], server: ServerProcess, app: CliApp
) -> None:
    """Once app B is created on a domain, app A's Client Key is a mismatch there."""
    token = new_user_token(server, app)
    assert me_status(server, app, app.client_key, token) == 200  # domain map now loaded
    tag = secrets.token_hex(4)
    other = CliApp("", f"cli-{tag}", f"other-{tag}.example", "", "")
    parley_ok(env, "app", "create", other.name, "--domain", other.domain)

    def on_other_domain() -> int:
        headers = {"IM-CLIENT-KEY": app.client_key, "IM-Authorization": token}
        with http(server, other, **headers) as c:
            return c.get("/me").status_code

    eventually(on_other_domain, 403)


def test_invalid_domain_and_origin_are_refused(env: dict[str, str]) -> None:
    tag = secrets.token_hex(4)
    done = parley(env, "app", "create", f"cli-{tag}", "--domain", "https://x.example")
    assert_cli_error(done, "INVALID_REQUEST")
    done = parley(env, "app", "create", f"cli-{tag}", "--origin", "web.example")
    assert_cli_error(done, "INVALID_REQUEST")


# -- usage -------------------------------------------------------------------------------


def test_app_usage_shows_requests_and_rejections_per_key(
    env: dict[str, str], server: ServerProcess, app: CliApp
) -> None:
    token = new_user_token(server, app)  # one API Key request
    for _ in range(2):
        assert admin_status(server, app, app.api_key) == 200
    assert me_status(server, app, app.client_key, token) == 200
    assert me_status(server, app, app.client_key, "not-a-token") == 401
    kid = crypto.read_jwt_payload(app.client_key)["kid"]

    def figures() -> dict[str, tuple[int, dict[str, int]]]:
        rows = parley_json(env, "app", "usage", app.id)
        return {r["keyKind"]: (r["requests"], r["rejections"]) for r in rows}

    # The server flushes its counts every 0.2 s; each CLI call takes longer than that.
    expected = {"api": (3, {}), "client": (2, {"INVALID_TOKEN": 1})}
    eventually(figures, expected, within=10)

    text = parley_ok(env, "app", "usage", app.id)
    client_line = next(line for line in text.splitlines() if kid in line)
    assert "client" in client_line and "INVALID_TOKEN=1" in client_line
    api_line = next(line for line in text.splitlines() if " api " in line)
    assert api_line.split()[3] == "3"  # day, kind, key id, requests
    assert app.api_key not in text


def test_app_usage_of_an_unused_app(env: dict[str, str], app: CliApp) -> None:
    assert parley_ok(env, "app", "usage", app.id).strip() == "no usage recorded yet"
    assert parley_json(env, "app", "usage", app.id) == []


# -- Client Key --------------------------------------------------------------------------


def test_client_key_show_prints_the_live_key(env: dict[str, str], app: CliApp) -> None:
    assert parley_ok(env, "client-key", "show", app.name).strip() == app.client_key
    assert parley_json(env, "client-key", "show", app.id) == {
        "app": app.id,
        "clientKey": app.client_key,
    }


def test_client_key_revoke_then_generate(
    env: dict[str, str], server: ServerProcess, app: CliApp
) -> None:
    token = new_user_token(server, app)
    assert me_status(server, app, app.client_key, token) == 200  # cached by the server now

    revoked = parley_json(env, "client-key", "revoke", app.id)
    assert revoked == {
        "app": app.id,
        "revokedKeyIds": [crypto.read_jwt_payload(app.client_key)["kid"]],
    }
    eventually(lambda: me_status(server, app, app.client_key, token), 403)
    assert_cli_error(parley(env, "client-key", "show", app.id), "CLIENT_KEY_NOT_FOUND")
    assert_cli_error(parley(env, "client-key", "revoke", app.id), "CLIENT_KEY_NOT_FOUND")
    assert "none (revoked)" in parley_ok(env, "app", "show", app.id)

    new_key = parley_ok(env, "client-key", "generate", app.id).strip()
    assert new_key != app.client_key
    assert crypto.read_jwt_payload(new_key)["clientId"] == app.id
    assert me_status(server, app, new_key, token) == 200  # a new key works at once
    assert me_status(server, app, app.client_key, token) == 403  # the old one stays dead
    assert_cli_error(parley(env, "client-key", "generate", app.id), "CLIENT_KEY_EXISTS")
    assert parley_ok(env, "client-key", "show", app.id).strip() == new_key


def test_client_key_rotate_with_grace(
    env: dict[str, str], server: ServerProcess, app: CliApp
) -> None:
    token = new_user_token(server, app)
    assert me_status(server, app, app.client_key, token) == 200

    rotated = parley_json(env, "client-key", "rotate", app.id, "--grace", "2")
    new_key = rotated["clientKey"]
    assert rotated["app"] == app.id and new_key != app.client_key
    assert parley_ok(env, "client-key", "show", app.id).strip() == new_key
    assert me_status(server, app, new_key, token) == 200

    # The old key was revoked in the same transaction that created the new one, whose
    # creation time the new key carries: the grace period ends 2 s after it.
    grace_end = crypto.read_jwt_payload(new_key)["createAt"] / 1000 + 2
    if time.time() < grace_end - 0.5:
        assert me_status(server, app, app.client_key, token) == 200
    refused_at = eventually(
        lambda: me_status(server, app, app.client_key, token),
        403,
        within=grace_end - time.time() + PROPAGATION,
    )
    assert refused_at >= grace_end - 0.05, "the old Client Key was refused before its grace ended"


def test_client_key_rotate_without_grace_stops_the_old_key(
    env: dict[str, str], server: ServerProcess, app: CliApp
) -> None:
    token = new_user_token(server, app)
    assert me_status(server, app, app.client_key, token) == 200
    new_key = parley_ok(env, "client-key", "rotate", app.id).strip()
    eventually(lambda: me_status(server, app, app.client_key, token), 403)
    assert me_status(server, app, new_key, token) == 200


def test_negative_grace_is_refused(env: dict[str, str], app: CliApp) -> None:
    done = parley(env, "client-key", "rotate", app.id, "--grace", "-1")
    assert done.returncode == 2
    assert "must not be negative" in done.stderr
    assert parley_ok(env, "client-key", "show", app.id).strip() == app.client_key


# -- API Key -----------------------------------------------------------------------------


def test_api_key_rotate_stops_the_old_key_and_the_new_one_works(
    env: dict[str, str], server: ServerProcess, app: CliApp
) -> None:
    assert admin_status(server, app, app.api_key) == 200  # cached by the server now
    rotated = parley_json(env, "api-key", "rotate", app.id)
    new_key = rotated["apiKey"]
    assert rotated["app"] == app.id
    assert crypto.api_key_well_formed(new_key) and new_key != app.api_key

    assert admin_status(server, app, new_key) == 200
    eventually(lambda: admin_status(server, app, app.api_key), 401)
    assert parley_json(env, "app", "show", app.id)["apiKeys"] == [masked(new_key)]


def test_api_key_rotate_with_overlap(
    env: dict[str, str], server: ServerProcess, app: CliApp
) -> None:
    assert admin_status(server, app, app.api_key) == 200
    started = time.time()  # the overlap ends 2 s after the rotation, so after this
    rotated = parley_json(env, "api-key", "rotate", app.id, "--overlap", "2")
    rotated_by = time.time()  # the CLI committed before this: the overlap ends by +2 s
    new_key = rotated["apiKey"]
    assert admin_status(server, app, new_key) == 200
    if time.time() < started + 1.5:
        assert admin_status(server, app, app.api_key) == 200
        shown = parley_json(env, "app", "show", app.id)["apiKeys"]
        assert masked(new_key) in shown
    refused_at = eventually(
        lambda: admin_status(server, app, app.api_key),
        401,
        within=rotated_by + 2 - time.time() + PROPAGATION,
    )
    assert refused_at >= started + 2, "the old API Key was refused before its overlap ended"
    assert admin_status(server, app, new_key) == 200


def test_api_key_revoke_stops_every_key(
    env: dict[str, str], server: ServerProcess, app: CliApp
) -> None:
    assert admin_status(server, app, app.api_key) == 200
    assert parley_json(env, "api-key", "revoke", app.id) == {"app": app.id, "revokedCount": 1}
    eventually(lambda: admin_status(server, app, app.api_key), 401)
    with http(server, app, **{"IM-API-KEY": app.api_key}) as c:
        assert_error(c.get("/admin/clients"), 401, "INVALID_API_KEY")
    assert "API Keys:        none" in parley_ok(env, "app", "show", app.id)
    # Nothing left to revoke; rotation issues a fresh key.
    assert parley_ok(env, "api-key", "revoke", app.id).strip() == "0"
    new_key = parley_json(env, "api-key", "rotate", app.id)["apiKey"]
    assert admin_status(server, app, new_key) == 200
