"""Test harness: a real Parley server on 127.0.0.1, in a thread of the test process.

Storage and broker come from the environment, as in production:
- ``PARLEY_TEST_DATABASE_URL`` (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test);
  unset means a fresh SQLite file.
- ``PARLEY_TEST_REDIS_URL``: the server uses the Redis broker and Redis-counted rate
  limits; unset means the in-memory broker. Tests marked ``redis`` need it.

With ``CI=true`` a configured service that cannot be reached fails the run instead of
skipping anything.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from parley.app import create_app
from parley.cli import websocket_options
from parley.config import Settings
from parley.services.container import Services
from parley.storage.db import run_migrations

T = TypeVar("T")
IN_CI = os.environ.get("CI", "").lower() == "true"
DATABASE_URL = os.environ.get("PARLEY_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("PARLEY_TEST_REDIS_URL", "")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "redis: needs PARLEY_TEST_REDIS_URL (multi-node tests)")
    config.addinivalue_line("markers", "postgres: needs PARLEY_TEST_DATABASE_URL (PostgreSQL)")
    config.addinivalue_line("markers", "once: about the wire or the browser; one pass is enough")


# Suites about the wire and the browser rather than storage: scripts/test runs them in its
# first pass (SQLite) only, since every storage path they reach is a REST one that the rest
# of the suite covers on both databases. This keeps CI within its time budget.
ONCE = (
    "tests/browser/",
    "tests/gateway/test_hostile_clients.py",
    "tests/gateway/test_node_client.py",
    "tests/fuzz/test_schemathesis.py",
    "tests/fuzz/test_gateway_frames.py",
    "tests/compat/",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(ONCE):
            item.add_marker(pytest.mark.once)


def need_service(what: str) -> None:
    """A test that cannot run without a service: fail in CI, skip (saying why) elsewhere."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} not available")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reset_database(url: str) -> None:
    """Start the run from an empty schema, then migrate it to head."""
    if url.startswith("postgresql"):
        import sqlalchemy as sa
        from sqlalchemy.ext.asyncio import create_async_engine

        async def drop() -> None:
            engine = create_async_engine(url)
            try:
                async with engine.begin() as conn:
                    await conn.execute(sa.text("DROP SCHEMA public CASCADE"))
                    await conn.execute(sa.text("CREATE SCHEMA public"))
            finally:
                await engine.dispose()

        try:
            asyncio.run(drop())
        except OSError as exc:
            if IN_CI:
                raise
            pytest.skip(f"PostgreSQL at {url} unreachable: {exc}")
    run_migrations(url)


def check_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if IN_CI:
            raise
        pytest.skip(f"Redis at {url} unreachable: {exc}")


class LogCapture(logging.Handler):
    """Every log record of the run, formatted, so tests can search them for secrets."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))


@dataclass
class AppKeys:
    id: str
    api_key: str
    client_key: str


class Server:
    """A running Parley node: its URL, its services, and a way into its event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services = Services(settings)
        self.app = create_app(settings, self.services)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                access_log=False,
                proxy_headers=settings.trust_proxy,  # as `parley run` serves
                lifespan="on",
                **websocket_options(settings),
            )
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._server.serve())
        finally:
            self._loop.close()

    def start(self) -> Server:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)

    def call(self, fn: Callable[[Services], Awaitable[T]]) -> T:
        """Run ``fn(services)`` on the server's own loop (its engine, caches, broker)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(fn(self.services), self._loop).result(30)

    def new_app(
        self, name: str = "test", domains: list[str] | None = None, origins: list[str] | None = None
    ) -> AppKeys:
        new = self.call(lambda s: s.apps.create(name, domains or [], origins or []))
        return AppKeys(new.app.id, new.api_key, new.client_key)

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp,
        "database_url": DATABASE_URL,
        "redis_url": REDIS_URL,
        "secret_key": secrets.token_hex(32),
        "usage_flush_seconds": 0.2,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def log_capture() -> Iterator[LogCapture]:
    handler = LogCapture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    logging.getLogger("aiosqlite").setLevel(logging.INFO)  # one line per query otherwise
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = make_settings(tmp_path_factory.mktemp("parley"))
    reset_database(settings.effective_database_url)
    if settings.redis_url:
        check_redis(settings.redis_url)
    return settings


@pytest.fixture(scope="session")
def server(settings: Settings, log_capture: LogCapture) -> Iterator[Server]:
    node = Server(settings).start()
    yield node
    node.stop()


@pytest.fixture
def app_keys(server: Server) -> AppKeys:
    """A fresh application (no domains: any Host reaches it) for one test."""
    return server.new_app()


@pytest.fixture
def admin(server: Server, app_keys: AppKeys) -> Iterator[httpx.Client]:
    with server.client(**{"IM-API-KEY": app_keys.api_key}) as client:
        yield client


def issue_token(admin: httpx.Client, user_id: str, **fields: Any) -> str:
    response = admin.post(
        "/admin/clients", json={"_id": user_id, "issueAccessToken": True, **fields}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["result"]["token"])


@pytest.fixture
def user_token(admin: httpx.Client) -> str:
    return issue_token(admin, "alice", nickname="Alice")


@pytest.fixture
def user(server: Server, app_keys: AppKeys, user_token: str) -> Iterator[httpx.Client]:
    """A client acting as user "alice" with the app's Client Key and her token."""
    headers = {"IM-CLIENT-KEY": app_keys.client_key, "IM-Authorization": user_token}
    with server.client(**headers) as client:
        yield client


@pytest.fixture
def redis_url() -> str:
    if not REDIS_URL:
        need_service("Redis (PARLEY_TEST_REDIS_URL)")
    check_redis(REDIS_URL)
    return REDIS_URL


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the contract's error shape with this status and code."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["RC"] == status
    assert body["error"] == code, body
    assert isinstance(body["RM"], str) and body["RM"]
    assert isinstance(body["message"], str) and body["message"]
    return body


def ok(response: httpx.Response) -> Any:
    """The success envelope ``{"RC": 0, "RM": "OK", "result": ...}``; returns ``result``."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["RC"] == 0 and body["RM"] == "OK", body
    return body["result"]


def start_of_a_fresh_window(margin: float = 10.0) -> None:
    """Rate limits count per fixed UTC minute: a test that crosses into the next minute
    starts counting from zero. Wait for the next minute when this one is nearly over."""
    remaining = 60 - time.time() % 60
    if remaining < margin:
        time.sleep(remaining + 0.05)
