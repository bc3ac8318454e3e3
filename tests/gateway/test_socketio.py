"""The real-time gateway with python-socketio's client and a raw WebSocket: handshakes,
encodings, delivery by membership, client events, and frames that break the protocol."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import socketio
import websockets

from parley.config import Settings
from tests.conftest import AppKeys, LogCapture, Server, issue_token, make_settings, ok

Received = list[tuple[str, Any]]


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


async def connect(
    server: Server, *, auth: dict[str, Any] | None = None, wait_timeout: float = 10
) -> tuple[socketio.AsyncClient, Received]:
    client = socketio.AsyncClient(reconnection=False)
    received: Received = []
    for name in ("chat message", "room", "typing", "lastRead", "userDeleteMessages"):

        def record(data: Any, name: str = name) -> None:
            received.append((name, data))

        client.on(name, record)
    await client.connect(server.url, transports=["websocket"], auth=auth, wait_timeout=wait_timeout)
    return client, received


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.fixture
def cast(server: Server, app_keys: AppKeys, admin: httpx.Client) -> dict[str, str]:
    """Tokens of alice and bob (members of room "lobby") and carol (not a member)."""
    tokens = {
        name: issue_token(admin, name, nickname=name.title()) for name in ("alice", "bob", "carol")
    }
    ok(admin.post("/rooms", json={"_id": "lobby", "name": "Lobby", "members": ["alice", "bob"]}))
    return tokens


def test_imkit_handshake_and_delivery(
    server: Server, app_keys: AppKeys, cast: dict[str, str], admin: httpx.Client
) -> None:
    async def go() -> None:
        bob, heard = await connect(server)
        ack = await bob.call(
            "auth2", (cast["bob"], {"IM-CLIENT-KEY": app_keys.client_key}), timeout=10
        )
        assert ack["RC"] == 0 and ack["result"]["_id"] == "bob"
        carol, carol_heard = await connect(server)
        ack = await carol.call(
            "auth2", (cast["carol"], {"CLIENT_KEY": app_keys.client_key}), timeout=10
        )
        assert ack["RC"] == 0
        sent = await asyncio.to_thread(
            lambda: ok(
                admin.post(
                    "/messages",
                    json={
                        "room": "lobby",
                        "sender": "alice",
                        "message": "hi",
                        "messageType": "text",
                    },
                )
            )
        )
        await eventually(lambda: any(n == "chat message" for n, _ in heard))
        data = next(d for n, d in heard if n == "chat message")
        assert data["_id"] == sent["_id"] and data["sender"]["_id"] == "alice"
        await asyncio.sleep(0.3)
        assert not any(n == "chat message" for n, _ in carol_heard)  # not a member
        await bob.disconnect()
        await carol.disconnect()

    run(go())


def test_base64_encoding_and_socket_sends(
    server: Server, app_keys: AppKeys, cast: dict[str, str]
) -> None:
    def decode(value: Any) -> Any:
        assert isinstance(value, str)
        return json.loads(base64.b64decode(value))

    async def go() -> None:
        alice, heard = await connect(server)
        conf = await alice.call("conf", {"encoding": "base64"}, timeout=10)
        assert decode(conf)["RC"] == 0
        ack = decode(
            await alice.call(
                "auth2",
                (cast["alice"], {"IM-CLIENT-KEY": app_keys.client_key}),
                timeout=10,
            )
        )
        assert ack["result"]["_id"] == "alice"
        body = {"room": "lobby", "message": "from a socket", "clientMessageId": "s-1"}
        first = decode(await alice.call("chat message", body, timeout=10))
        again = decode(await alice.call("chat message", body, timeout=10))
        assert first["RC"] == 0 and again["result"]["_id"] == first["result"]["_id"]
        await eventually(lambda: any(n == "chat message" for n, _ in heard))
        assert (
            decode(next(d for n, d in heard if n == "chat message"))["message"] == "from a socket"
        )
        refused = decode(await alice.call("chat message", {"room": "nowhere", "message": "x"}))
        assert refused["RC"] == 404 and refused["error"]["code"] == "ROOM_NOT_FOUND"
        await alice.disconnect()

    run(go())


def test_connect_auth_payload(server: Server, app_keys: AppKeys, cast: dict[str, str]) -> None:
    async def go() -> None:
        bob, _ = await connect(
            server, auth={"clientKey": app_keys.client_key, "token": cast["bob"]}
        )
        assert bob.connected
        with pytest.raises(socketio.exceptions.ConnectionError):
            # python-socketio waits wait_timeout after a refusal before it raises
            await connect(
                server, auth={"clientKey": app_keys.client_key, "token": "nope"}, wait_timeout=1
            )
        await bob.disconnect()

    run(go())


@pytest.mark.parametrize(
    ("headers", "token", "rc", "code"),
    [
        ({}, "TOKEN", 401, "MISSING_CLIENT_KEY"),
        ({"IM-CLIENT-KEY": "not-a-key"}, "TOKEN", 403, "INVALID_CLIENT_KEY"),
        ({"IM-CLIENT-KEY": "KEY"}, "bad-token", 401, "INVALID_TOKEN"),
    ],
)
def test_handshake_errors_close_the_socket(
    server: Server,
    app_keys: AppKeys,
    cast: dict[str, str],
    headers: dict[str, str],
    token: str,
    rc: int,
    code: str,
) -> None:
    headers = {k: app_keys.client_key if v == "KEY" else v for k, v in headers.items()}
    token = cast["bob"] if token == "TOKEN" else token

    async def go() -> None:
        client, _ = await connect(server)
        ack = await client.call("auth2", (token, headers), timeout=10)
        assert (ack["RC"], ack["error"]["code"]) == (rc, code)
        await eventually(lambda: not client.connected)

    run(go())


def test_unauthenticated_sockets_hear_nothing_and_may_not_send(
    server: Server, cast: dict[str, str], admin: httpx.Client
) -> None:
    async def go() -> None:
        client, heard = await connect(server)
        ack = await client.call("chat message", {"room": "lobby", "message": "x"}, timeout=10)
        assert ack["RC"] == 401
        await asyncio.to_thread(
            lambda: ok(
                admin.post(
                    "/messages",
                    json={
                        "room": "lobby",
                        "sender": "alice",
                        "message": "hi",
                        "messageType": "text",
                    },
                )
            )
        )
        await asyncio.sleep(0.3)
        assert heard == []
        await client.disconnect()

    run(go())


def test_membership_is_followed_live(
    server: Server, app_keys: AppKeys, cast: dict[str, str], admin: httpx.Client
) -> None:
    async def go() -> None:
        carol, heard = await connect(
            server, auth={"clientKey": app_keys.client_key, "token": cast["carol"]}
        )
        await asyncio.to_thread(
            lambda: ok(admin.post("/rooms/lobby/members", json={"invitees": ["carol"]}))
        )
        await eventually(lambda: any(n == "room" for n, _ in heard))
        await asyncio.to_thread(
            lambda: ok(
                admin.post(
                    "/messages",
                    json={
                        "room": "lobby",
                        "sender": "bob",
                        "message": "welcome",
                        "messageType": "text",
                    },
                )
            )
        )
        await eventually(
            lambda: any(n == "chat message" and d["message"] == "welcome" for n, d in heard)
        )
        await carol.disconnect()

    run(go())


def test_bad_frames_close_only_their_socket(
    server: Server, app_keys: AppKeys, cast: dict[str, str]
) -> None:
    ws_url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"

    async def go() -> None:
        good, _ = await connect(
            server, auth={"clientKey": app_keys.client_key, "token": cast["bob"]}
        )
        for bad in ("4zzz", "42not json", "9", '45-["x",{"_placeholder":true,"num":0}]'):
            async with websockets.connect(ws_url) as raw:
                assert (await raw.recv()).startswith("0{")
                await raw.send("40")
                assert (await raw.recv()).startswith("40")
                await raw.send(bad)
                with pytest.raises(websockets.ConnectionClosed):
                    while True:
                        await asyncio.wait_for(raw.recv(), 5)
        async with websockets.connect(ws_url) as raw:
            await raw.recv()
            await raw.send(b"\x00binary")
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(raw.recv(), 5)
        ack = await good.call(
            "chat message", {"room": "lobby", "message": "still here"}, timeout=10
        )
        assert ack["RC"] == 0
        await good.disconnect()

    run(go())


def test_long_polling_is_refused_clearly(server: Server) -> None:
    response = httpx.get(f"{server.url}/socket.io/", params={"EIO": "4", "transport": "polling"})
    assert response.status_code == 400
    assert response.json() == {"code": 0, "message": "Transport unknown"}


def test_resume_sends_what_was_missed_once_and_in_order(
    server: Server, app_keys: AppKeys, cast: dict[str, str], admin: httpx.Client
) -> None:
    def send(text: str) -> dict[str, Any]:
        body = {"room": "lobby", "sender": "alice", "message": text, "messageType": "text"}
        return dict(ok(admin.post("/messages", json=body)))

    async def go() -> None:
        seen = await asyncio.to_thread(send, "seen")
        missed = [(await asyncio.to_thread(send, f"missed {i}"))["_id"] for i in range(30)]

        async def keep_sending() -> list[str]:
            return [(await asyncio.to_thread(send, f"live {i}"))["_id"] for i in range(20)]

        live_task = asyncio.create_task(keep_sending())
        auth = {
            "clientKey": app_keys.client_key,
            "token": cast["bob"],
            "resume": {"lobby": seen["seq"], "other": 0},  # "other": not bob's room
        }
        bob, heard = await connect(server, auth=auth)
        live = await live_task

        def messages() -> list[str]:
            return [d["_id"] for n, d in heard if n == "chat message"]

        await eventually(lambda: len(messages()) >= len(missed) + len(live))
        await asyncio.sleep(0.2)
        got = messages()
        assert got == missed + live, "every message once, in sequence order"

        # Asked for after connecting, a resume skips what already came live.
        ack = await bob.call("resume", {"rooms": {"lobby": seen["seq"], "x": 1}}, timeout=10)
        assert ack["RC"] == 0 and ack["result"]["rooms"] == {"lobby": 50}
        await asyncio.sleep(0.3)
        assert messages() == got
        await bob.disconnect()

    run(go())


def test_revocation_closes_the_sockets_it_concerns(
    server: Server, app_keys: AppKeys, cast: dict[str, str], admin: httpx.Client
) -> None:
    async def go() -> None:
        auth = {"clientKey": app_keys.client_key}
        bob, _ = await connect(server, auth={**auth, "token": cast["bob"]})
        alice, _ = await connect(server, auth={**auth, "token": cast["alice"]})
        revoked = await asyncio.to_thread(lambda: admin.delete("/admin/clients/bob/token"))
        assert revoked.status_code == 200, revoked.text
        await eventually(lambda: not bob.connected, within=5)
        await asyncio.sleep(0.3)
        assert alice.connected, "another user's socket stays"

        async def revoke_key(services: Any) -> Any:
            return await services.keys.revoke_client_key(app_keys.id)

        await asyncio.to_thread(server.call, revoke_key)
        await eventually(lambda: not alice.connected, within=5)

    run(go())


def test_legacy_auth_and_typing_relay(
    server: Server, app_keys: AppKeys, cast: dict[str, str]
) -> None:
    async def go() -> None:
        # The legacy handshake: auth(token) with the Client Key in the upgrade's headers.
        alice = socketio.AsyncClient(reconnection=False)
        await alice.connect(
            server.url,
            transports=["websocket"],
            headers={"IM-CLIENT-KEY": app_keys.client_key},
            wait_timeout=10,
        )
        ack = await alice.call("auth", cast["alice"], timeout=10)
        assert ack["RC"] == 0 and ack["result"]["_id"] == "alice"
        alice_heard: Received = []
        alice.on("typing", lambda data: alice_heard.append(("typing", data)))
        bob, heard = await connect(
            server, auth={"clientKey": app_keys.client_key, "token": cast["bob"]}
        )
        await alice.emit("typing", "lobby")
        await eventually(lambda: any(n == "typing" for n, _ in heard))
        data = next(d for n, d in heard if n == "typing")
        assert data["room"] == "lobby" and data["sender"] == "alice"
        await asyncio.sleep(0.3)
        assert alice_heard == [], "the sender does not hear its own typing"
        await alice.disconnect()
        await bob.disconnect()

    run(go())


@pytest.fixture(scope="module")
def quick_pings(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, log_capture: LogCapture
) -> Iterator[Server]:
    """A second node on the same database whose heartbeat is a few tenths of a second."""
    node = Server(
        make_settings(
            tmp_path_factory.mktemp("pings"),
            database_url=settings.effective_database_url,
            socket_ping_interval=0.2,
            socket_ping_timeout=0.3,
        )
    ).start()
    yield node
    node.stop()


def test_a_silent_socket_is_closed_and_an_answering_one_kept(quick_pings: Server) -> None:
    ws_url = quick_pings.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"

    async def go() -> None:
        async with websockets.connect(ws_url) as silent, websockets.connect(ws_url) as alive:
            handshake = json.loads((await silent.recv())[1:])
            assert handshake["pingInterval"] == 200 and handshake["pingTimeout"] == 300
            await alive.recv()

            async def answer_pings() -> None:
                async for frame in alive:
                    if frame == "2":
                        await alive.send("3")

            answering = asyncio.create_task(answer_pings())
            with pytest.raises(websockets.ConnectionClosed):
                while True:  # pings arrive, unanswered, until the server gives up
                    assert await asyncio.wait_for(silent.recv(), 5) == "2"
            await asyncio.sleep(1.0)
            assert not answering.done(), "a socket that answers its pings stays open"
            answering.cancel()

    run(go())
