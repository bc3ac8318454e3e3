"""Presence through the running server: a socket that authenticates puts its user online
(``isSocketConnected``, ``lastActiveTime``) for ``GET /me``, the backend's user reads and
room member lists; ``GET /admin/connection-count`` counts authenticated sockets; the status
a user sets on itself shows to the members of its rooms."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import socketio

from tests.conftest import AppKeys, Server, assert_error, issue_token, ok


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


async def open_socket(server: Server, client_key: str, token: str) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(
        server.url,
        transports=["websocket"],
        auth={"clientKey": client_key, "token": token},
        wait_timeout=10,
    )
    return client


def eventually(check: Any, within: float = 5.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def pair(
    server: Server, app_keys: AppKeys, admin: httpx.Client
) -> Iterator[dict[str, httpx.Client]]:
    """Alice and bob share room "desk"; each has a client with its own token."""
    clients = {}
    for name in ("alice", "bob"):
        token = issue_token(admin, name, nickname=name.title())
        clients[name] = server.client(
            **{"IM-CLIENT-KEY": app_keys.client_key, "IM-Authorization": token}
        )
        clients[name].headers["x-token"] = token  # kept for opening sockets
    ok(admin.post("/rooms", json={"_id": "desk", "name": "Desk", "members": ["alice", "bob"]}))
    yield clients
    for client in clients.values():
        client.close()


def member(room: dict[str, Any], user_id: str) -> dict[str, Any]:
    return next(m for m in room["members"] if m["_id"] == user_id)


def test_a_socket_puts_its_user_online_and_closing_it_takes_it_offline(
    server: Server, app_keys: AppKeys, admin: httpx.Client, pair: dict[str, httpx.Client]
) -> None:
    alice, bob = pair["alice"], pair["bob"]
    me = ok(alice.get("/me"))
    assert me["isSocketConnected"] is False and me["lastActiveTimeMS"] == 0
    assert ok(admin.get("/admin/connection-count")) == {"count": 0}

    async def go() -> None:
        started = int(time.time() * 1000)
        first = await open_socket(server, app_keys.client_key, alice.headers["x-token"])
        second = await open_socket(server, app_keys.client_key, alice.headers["x-token"])
        try:
            count = await asyncio.to_thread(lambda: ok(admin.get("/admin/connection-count")))
            assert count == {"count": 2}
            me = await asyncio.to_thread(lambda: ok(alice.get("/me")))
            assert me["isSocketConnected"] is True and me["lastActiveTimeMS"] >= started
            room = await asyncio.to_thread(lambda: ok(bob.get("/rooms/desk")))
            assert member(room, "alice")["isSocketConnected"] is True
            assert member(room, "bob")["isSocketConnected"] is False
            listed = await asyncio.to_thread(lambda: ok(bob.get("/rooms")))
            desk = next(r for r in listed["data"] if r["_id"] == "desk")
            assert member(desk, "alice")["isSocketConnected"] is True
            user = await asyncio.to_thread(lambda: ok(admin.get("/admin/clients/alice")))
            assert user["isSocketConnected"] is True
            await first.disconnect()
            # One of her two sockets is still open: still online.
            await asyncio.sleep(0.2)
            me = await asyncio.to_thread(lambda: ok(alice.get("/me")))
            assert me["isSocketConnected"] is True
        finally:
            await first.disconnect()
            await second.disconnect()

    run(go())
    closed_at = int(time.time() * 1000)

    def offline() -> dict[str, Any] | None:
        me = ok(alice.get("/me"))
        return me if me["isSocketConnected"] is False else None

    me = eventually(offline)
    assert 0 < me["lastActiveTimeMS"] <= closed_at + 1000
    eventually(lambda: ok(admin.get("/admin/connection-count")) == {"count": 0})
    listed = ok(admin.get("/admin/clients", params={"limit": 10}))
    alice_listed = next(u for u in listed["data"] if u["_id"] == "alice")
    assert alice_listed["isSocketConnected"] is False
    assert alice_listed["lastActiveTimeMS"] == me["lastActiveTimeMS"]


def test_unauthenticated_and_refused_sockets_are_not_counted(
    server: Server, app_keys: AppKeys, admin: httpx.Client, pair: dict[str, httpx.Client]
) -> None:
    async def go() -> None:
        bare = socketio.AsyncClient(reconnection=False)
        await bare.connect(server.url, transports=["websocket"], wait_timeout=10)
        refused = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refused.connect(
                server.url,
                transports=["websocket"],
                auth={"clientKey": app_keys.client_key, "token": "not-a-token"},
                # python-socketio waits this long after a refusal before raising
                wait_timeout=1,
            )
        try:
            count = await asyncio.to_thread(lambda: ok(admin.get("/admin/connection-count")))
            assert count == {"count": 0}
        finally:
            await bare.disconnect()

    run(go())


def test_connection_count_is_for_the_backend_only(pair: dict[str, httpx.Client]) -> None:
    response = pair["alice"].get("/admin/connection-count")
    assert response.status_code in (401, 403), response.text
    assert response.json()["RC"] == response.status_code


def test_another_apps_sockets_are_not_counted(
    server: Server, app_keys: AppKeys, admin: httpx.Client, pair: dict[str, httpx.Client]
) -> None:
    other = server.new_app()
    with server.client(**{"IM-API-KEY": other.api_key}) as other_admin:

        async def go() -> None:
            sock = await open_socket(server, app_keys.client_key, pair["alice"].headers["x-token"])
            try:
                mine = await asyncio.to_thread(lambda: ok(admin.get("/admin/connection-count")))
                theirs = await asyncio.to_thread(
                    lambda: ok(other_admin.get("/admin/connection-count"))
                )
                assert (mine, theirs) == ({"count": 1}, {"count": 0})
            finally:
                await sock.disconnect()

        run(go())


def test_a_status_set_by_the_user_shows_to_members_of_its_rooms(
    pair: dict[str, httpx.Client],
) -> None:
    alice, bob = pair["alice"], pair["bob"]
    me = ok(alice.post("/me", json={"status": "in a meeting"}))
    assert me["status"] == "in a meeting"
    room = ok(bob.get("/rooms/desk"))
    assert member(room, "alice")["status"] == "in a meeting"
    assert "status" not in member(room, "bob")  # never set: not shown
    ok(alice.post("/me", json={"status": None}))
    assert "status" not in member(ok(bob.get("/rooms/desk")), "alice")


@pytest.mark.parametrize("status", ["x" * 257, 42, ["busy"], {"text": "busy"}])
def test_a_bad_status_is_refused_and_changes_nothing(
    pair: dict[str, httpx.Client], status: Any
) -> None:
    alice = pair["alice"]
    ok(alice.post("/me", json={"status": "around"}))
    assert_error(alice.post("/me", json={"status": status}), 400, "INVALID_REQUEST")
    assert ok(alice.get("/me"))["status"] == "around"
