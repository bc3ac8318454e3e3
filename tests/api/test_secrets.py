"""No secret is ever written in plain text: not the API Keys, not user tokens (issued or
assigned), not the signing secrets derived from the master secret, not the master secret
itself — neither in the database (files on SQLite, every row on PostgreSQL) nor in logs."""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from parley.services import crypto
from parley.services.usage import usage_report
from parley.storage.tables import AppRow, Base, ClientKeyRow
from tests.conftest import LogCapture, Server, assert_error, issue_token


@dataclass
class Traffic:
    """The secrets one app's life produced, and the digests the database should hold."""

    secrets: dict[str, str]
    derived: dict[str, bytes]
    digests: list[str]


def _forms(raw: bytes) -> list[bytes]:
    """A derived secret as it could leak: raw, hex, base64 and base64url."""
    return [
        raw,
        raw.hex().encode(),
        base64.b64encode(raw).rstrip(b"="),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
    ]


@pytest.fixture
def traffic(server: Server) -> Traffic:
    """An app used the way a customer would, with successes and failures of every kind."""
    keys = server.new_app(f"secrets-{secrets.token_hex(4)}")
    assigned = f"assigned-{secrets.token_hex(16)}"
    rebound = f"rebound-{secrets.token_hex(16)}"
    with server.client(**{"IM-API-KEY": keys.api_key}) as admin:
        issued = issue_token(admin, "alice", nickname="Alice")
        response = admin.post("/admin/clients", json={"_id": "bob", "token": assigned})
        assert response.status_code == 200, response.text
        # A failing admin request carrying the key: a body the server refuses.
        assert admin.post("/admin/clients", json={"_id": 42}).status_code == 400

    user = {"IM-CLIENT-KEY": keys.client_key}
    with server.client(**user, **{"IM-Authorization": issued}) as alice:
        assert alice.get("/me").status_code == 200
        assert alice.post("/me", json={"nickname": "Al"}).status_code == 200
    with server.client(**user, **{"IM-Authorization": f"Bearer {assigned}"}) as bob:
        assert bob.get("/me").status_code == 200

    # Rotation: a second API Key; the first is revoked and then refused on the wire.
    new_api_key = server.call(lambda s: s.keys.rotate_api_key(keys.id))
    with server.client(**{"IM-API-KEY": new_api_key}) as admin:
        response = admin.put(
            "/admin/clients/bob/token",
            json={"token": rebound, "expirationDate": int(time.time() * 1000) + 60_000},
        )
        assert response.status_code == 200, response.text
    with server.client(**{"IM-API-KEY": keys.api_key}) as old_admin:
        assert_error(old_admin.get("/admin/clients"), 401, "INVALID_API_KEY")
    with server.client(**user, **{"IM-Authorization": assigned}) as bob:
        assert_error(bob.get("/me"), 401, "INVALID_TOKEN")  # replaced by the rebound one
    with server.client(**user, **{"IM-Authorization": rebound}) as bob:
        assert bob.get("/me").status_code == 200

    # Let the usage recorder write its counts, so every kind of row is on disk.
    deadline = time.monotonic() + 5
    while not server.call(lambda s: usage_report(s.db, keys.id)):
        assert time.monotonic() < deadline, "usage was never flushed"
        time.sleep(0.05)

    master = server.settings.master_secret()
    kid = crypto.read_jwt_payload(keys.client_key)["kid"]

    async def salts(s: object) -> tuple[str, str]:
        async with server.services.db.read() as session:
            app = await session.get(AppRow, keys.id)
            key = await session.get(ClientKeyRow, kid)
            assert app is not None and key is not None
            return app.token_salt, key.salt

    token_salt, key_salt = server.call(salts)
    return Traffic(
        secrets={
            "API Key": keys.api_key,
            "rotated API Key": new_api_key,
            "issued user token": issued,
            "assigned user token": assigned,
            "bound user token": rebound,
            "master secret": master.decode(),
        },
        derived={
            "Client Key signing secret": crypto.derive_secret(
                master, "client-key:" + keys.id, key_salt
            ),
            "user token signing secret": crypto.derive_secret(
                master, "user-token:" + keys.id, token_salt
            ),
            "master secret": master,
        },
        digests=[crypto.digest(keys.api_key), crypto.digest(issued), crypto.digest(rebound)],
    )


def _assert_no_secret_in(data: bytes, traffic: Traffic, where: str) -> None:
    for name, value in traffic.secrets.items():
        assert value.encode() not in data, f"{name} in plain text in {where}"
    for name, raw in traffic.derived.items():
        for form in _forms(raw):
            assert form not in data, f"{name} in {where}"


def _sqlite_bytes(server: Server) -> bytes:
    path = Path(make_url(server.settings.effective_database_url).database or "")
    files = [path, path.with_name(path.name + "-wal")]
    return b"".join(f.read_bytes() for f in files if f.exists())


def _postgres_dump(server: Server) -> bytes:
    async def dump(s: object) -> list[str]:
        lines = []
        async with server.services.db.read() as session:
            # Every table there is, not only those we declare: nothing may hide anywhere.
            tables = (
                await session.execute(
                    sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                )
            ).scalars()
            names = list(tables)
            for table in names:
                query = f'SELECT CAST(t AS text) FROM "{table}" t'  # noqa: S608 (catalog names)
                lines += [f"{table} {row[0]}" for row in await session.execute(sa.text(query))]
        assert set(Base.metadata.tables) <= set(names)
        return lines

    return "\n".join(server.call(dump)).encode()


def test_database_holds_digests_and_salts_only(server: Server, traffic: Traffic) -> None:
    if server.settings.is_sqlite:
        data, where = _sqlite_bytes(server), "the SQLite files"
    else:
        data, where = _postgres_dump(server), "the PostgreSQL tables"
    # What we search must be what the server wrote: its digests are there.
    for value in traffic.digests:
        assert value.encode() in data, f"digest missing from {where}: wrong files read?"
    _assert_no_secret_in(data, traffic, where)


def test_logs_hold_no_secret(server: Server, traffic: Traffic, log_capture: LogCapture) -> None:
    text = "\n".join(log_capture.lines)
    # The capture sees this run's traffic (httpx logs each request it makes).
    assert "/admin/clients/bob/token" in text
    _assert_no_secret_in(text.encode(), traffic, "the logs")


def test_error_responses_do_not_echo_secrets(server: Server) -> None:
    keys = server.new_app(f"echo-{secrets.token_hex(4)}")
    guessed_key = crypto.new_api_key()
    with server.client(**{"IM-API-KEY": guessed_key}) as c:
        response = c.get("/admin/clients")
    assert_error(response, 401, "INVALID_API_KEY")
    assert guessed_key not in response.text
    token = f"secret-{secrets.token_hex(16)}"
    with server.client(**{"IM-CLIENT-KEY": keys.client_key, "IM-Authorization": token}) as c:
        response = c.get("/me")
    assert_error(response, 401, "INVALID_TOKEN")
    assert token not in response.text
