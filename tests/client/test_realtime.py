"""parley.client real time against the real server: events, sends with acks, typing,
refused credentials, and resuming after the connection drops, with every message once.

The client reaches the server through :class:`Proxy`, a TCP relay in the test's event
loop: it counts the WebSocket connections the client opens (so a retry shows) and cuts
them abruptly, as a network failure would."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from parley.client import Client, ParleyAPIError
from parley.client.realtime import EventStream, Realtime
from parley.config import Settings
from tests.conftest import AppKeys, LogCapture, Server, issue_token, make_settings, ok

Event = tuple[str, Any]


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 90))  # type: ignore[arg-type]


async def eventually(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def until(stream: EventStream, done: Callable[[str, Any], bool]) -> list[Event]:
    """The events of ``stream`` up to and including the first for which ``done`` holds."""
    seen: list[Event] = []
    while True:
        name, data = await asyncio.wait_for(anext(stream), 10)
        seen.append((name, data))
        if done(name, data):
            return seen


class Proxy:
    """A TCP relay on 127.0.0.1 in front of a server. It counts the WebSocket connections
    made through it, can cut them all at once, can refuse new ones for a while, and can
    swallow what the client sends on them (``muted``) as a dying network does."""

    def __init__(self, target: str) -> None:
        self._target_port = int(target.rsplit(":", 1)[1])
        self.websockets = 0
        self.refusing = False
        self.muted = False
        self.swallowed = 0  # chunks the client sent while muted
        self.url = ""
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def cut(self) -> None:
        """Drop every WebSocket connection abruptly (a reset, no closing handshake)."""
        for writer in list(self._links):
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            request_line = await reader.readline()
            socket = b"/socket.io/" in request_line
            if socket:
                self.websockets += 1
                if self.refusing:
                    return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
            up_writer.write(request_line)
            ends = {writer, up_writer}
            if socket:
                self._links |= ends
            try:
                pipes = {
                    asyncio.create_task(self._pipe(reader, up_writer, mutable=socket)),
                    asyncio.create_task(self._pipe(up_reader, writer, mutable=False)),
                }
                _, pending = await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
                for pipe in pending:
                    pipe.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            finally:
                self._links -= ends
                up_writer.transport.abort()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()
            self._tasks.discard(task)

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, mutable: bool
    ) -> None:
        with contextlib.suppress(OSError):
            while chunk := await source.read(65536):
                if mutable and self.muted:
                    self.swallowed += 1
                    continue
                sink.write(chunk)
                await sink.drain()


@pytest.fixture
def cast(app_keys: AppKeys, admin: httpx.Client) -> dict[str, str]:
    """Tokens of alice and bob, members of the room "lobby"."""
    tokens = {name: issue_token(admin, name, nickname=name.title()) for name in ("alice", "bob")}
    ok(admin.post("/rooms", json={"_id": "lobby", "name": "Lobby", "members": ["alice", "bob"]}))
    return tokens


def test_a_message_sent_over_rest_arrives(
    server: Server, app_keys: AppKeys, cast: dict[str, str]
) -> None:
    async def go() -> None:
        with (
            Client(server.url, app_keys.client_key, cast["alice"]) as alice,
            Client(server.url, app_keys.client_key, cast["bob"]) as bob,
        ):
            async with bob.realtime() as rt:
                stream = rt.events()
                sent = await asyncio.to_thread(alice.send, "lobby", "hello")
                events = await until(stream, lambda name, _: name == "chat message")
                data = events[-1][1]
                assert data["_id"] == sent["_id"] and data["message"] == "hello"
                assert data["sender"]["_id"] == "alice"
                assert rt.positions["lobby"] == sent["seq"]

    run(go())


def test_send_is_acked_and_idempotent_by_client_message_id(
    server: Server, app_keys: AppKeys, cast: dict[str, str]
) -> None:
    async def go() -> None:
        with Client(server.url, app_keys.client_key, cast["alice"]) as alice:
            rt = await alice.connect()
            try:
                first = await rt.send("lobby", "once", client_message_id="a-1")
                again = await rt.send("lobby", "once", client_message_id="a-1")
                assert first["_id"] == again["_id"] and first["sender"]["_id"] == "alice"
                assert first["room"] == "lobby" and isinstance(first["seq"], int)
                other = await rt.send("lobby", "twice", client_message_id="a-2")
                assert other["_id"] != first["_id"]
                page = await asyncio.to_thread(alice.history, "lobby", limit=10)
                texts = [m.get("message") for m in page["data"]]
                assert texts.count("once") == 1 and texts.count("twice") == 1
                with pytest.raises(ParleyAPIError) as refused:
                    await rt.send("nowhere", "x")
                assert (refused.value.status, refused.value.error) == (404, "ROOM_NOT_FOUND")
            finally:
                await rt.close()

    run(go())


def test_typing_reaches_the_others_and_not_the_sender(
    server: Server, app_keys: AppKeys, cast: dict[str, str]
) -> None:
    async def go() -> None:
        with (
            Client(server.url, app_keys.client_key, cast["alice"]) as alice,
            Client(server.url, app_keys.client_key, cast["bob"]) as bob,
        ):
            async with alice.realtime() as alice_rt, bob.realtime() as bob_rt:
                alice_heard, bob_heard = alice_rt.events(), bob_rt.events()
                await alice_rt.typing("lobby")
                typing = (await until(bob_heard, lambda name, _: name == "typing"))[-1][1]
                assert typing["room"] == "lobby" and typing["sender"] == "alice"
                # Events reach a socket in order: had alice heard her own typing, it would
                # come before this message of bob's, sent after bob heard it.
                fence = await bob_rt.send("lobby", "fence")
                heard = await until(
                    alice_heard,
                    lambda name, data: name == "chat message" and data["_id"] == fence["_id"],
                )
                assert [name for name, _ in heard] == ["chat message"]

    run(go())


def test_callbacks_and_iterator_both_get_every_event(
    server: Server, app_keys: AppKeys, cast: dict[str, str]
) -> None:
    async def go() -> None:
        with (
            Client(server.url, app_keys.client_key, cast["alice"]) as alice,
            Client(server.url, app_keys.client_key, cast["bob"]) as bob,
        ):
            rt = bob.realtime()
            stream = rt.events()  # made before connecting: misses nothing
            plain: list[str] = []
            awaited: list[str] = []

            def broken(_: Any) -> None:
                raise RuntimeError("a callback that fails")

            async def answer(data: dict[str, Any]) -> None:
                awaited.append(data["message"])
                if data["message"] == "ping":  # a callback may wait for an ack
                    await rt.send("lobby", "pong")

            rt.on("chat message", broken)
            rt.on("chat message", lambda data: plain.append(data["message"]))
            rt.on("chat message", answer)
            async with rt:
                for text in ("one", "two", "ping"):
                    await asyncio.to_thread(alice.send, "lobby", text)
                await eventually(lambda: plain == ["one", "two", "ping", "pong"])
                assert awaited == plain
                rt.off("chat message", answer)
                last = await asyncio.to_thread(alice.send, "lobby", "three")
                await eventually(lambda: plain[-1:] == ["three"])
            names = [(name, data["message"]) async for name, data in stream]
            assert names == [("chat message", t) for t in ("one", "two", "ping", "pong", "three")]
            assert awaited == ["one", "two", "ping", "pong"], "off() removes the callback"
            assert rt.positions["lobby"] == last["seq"]

    run(go())


@pytest.mark.parametrize("seed_rooms", [0, 100])
@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("missing-client-key", 401, "MISSING_CLIENT_KEY"),
        ("invalid-client-key", 403, "INVALID_CLIENT_KEY"),
        ("origin-not-allowed", 403, "CLIENT_KEY_MISMATCH"),
        ("bad-token", 401, "INVALID_TOKEN"),
    ],
)
def test_refused_credentials_raise_their_code_once(
    server: Server,
    cast: dict[str, str],
    app_keys: AppKeys,
    case: str,
    status: int,
    code: str,
    seed_rooms: int,
) -> None:
    key, token, headers = app_keys.client_key, cast["bob"], {}
    if case == "missing-client-key":
        key = ""
    elif case == "invalid-client-key":
        key = "not-a-client-key"
    elif case == "origin-not-allowed":
        web = server.new_app("web", origins=["https://app.example.com"])
        with server.client(**{"IM-API-KEY": web.api_key}) as web_admin:
            key, token = web.client_key, issue_token(web_admin, "bob")
        headers = {"Origin": "https://evil.example.com"}
    else:
        token = "not-a-token"

    async def go() -> None:
        async with Proxy(server.url) as proxy:
            with Client(proxy.url, key, token) as bob:
                rt = bob.realtime(seed_rooms=seed_rooms, headers=headers, backoff=(0.01, 0.02))
                with pytest.raises(ParleyAPIError) as refused:
                    await rt.connect()
                assert (refused.value.status, refused.value.error) == (status, code)
                tried = proxy.websockets
                assert tried <= 1
                await asyncio.sleep(0.3)  # many backoff periods: no attempt follows
                assert proxy.websockets == tried and not rt.connected

    run(go())


def test_a_revoked_token_ends_the_connection_without_retrying(
    server: Server, app_keys: AppKeys, cast: dict[str, str], admin: httpx.Client
) -> None:
    async def go() -> None:
        async with Proxy(server.url) as proxy:
            with Client(proxy.url, app_keys.client_key, cast["bob"]) as bob:
                rt = await bob.connect(backoff=(0.01, 0.02))
                stream = rt.events()
                revoked = await asyncio.to_thread(admin.delete, "/admin/clients/bob/token")
                assert revoked.status_code == 200, revoked.text
                names: list[str] = []
                with pytest.raises(ParleyAPIError) as ended:
                    async with asyncio.timeout(15):
                        async for name, _ in stream:
                            names.append(name)
                assert (ended.value.status, ended.value.error) == (401, "INVALID_TOKEN")
                assert names == ["disconnect"]
                with pytest.raises(ParleyAPIError):
                    await rt.wait_closed()
                assert proxy.websockets == 2  # the first, and one refused attempt
                await asyncio.sleep(0.3)
                assert proxy.websockets == 2
                with pytest.raises(ParleyAPIError) as refused:
                    await rt.send("lobby", "x")
                assert refused.value.error == "INVALID_TOKEN"
                await rt.close()

    run(go())


def test_resume_after_drops_delivers_every_message_once_in_order(
    server: Server, app_keys: AppKeys, cast: dict[str, str]
) -> None:
    async def go() -> None:
        async with Proxy(server.url) as proxy:
            with (
                Client(server.url, app_keys.client_key, cast["alice"]) as alice,
                Client(proxy.url, app_keys.client_key, cast["bob"]) as bob,
            ):
                rt = await bob.connect(backoff=(0.02, 0.2))
                stream = rt.events()
                got: list[dict[str, Any]] = []
                reconnects = 0

                async def collect() -> None:
                    nonlocal reconnects
                    async for name, data in stream:
                        if name == "chat message":
                            got.append(data)
                        reconnects += name == "reconnect"

                collector = asyncio.create_task(collect())
                # Bob has heard nothing in the lobby yet: its first 50 messages are sent
                # while he cannot connect, and come back through resume alone.
                proxy.refusing = True
                proxy.cut()

                async def send_all() -> list[dict[str, Any]]:
                    sent = []
                    for i in range(200):
                        sent.append(await asyncio.to_thread(alice.send, "lobby", f"m{i}"))
                        if i == 49:
                            proxy.refusing = False
                        elif i in (99, 149):
                            proxy.cut()
                    return sent

                sent = await asyncio.create_task(send_all())
                await eventually(lambda: len(got) >= len(sent), within=30)
                await rt.close()
                await collector
                assert [m["_id"] for m in got] == [m["_id"] for m in sent]
                seqs = [m["seq"] for m in got]
                assert seqs == sorted(set(seqs)), "every message once, in seq order"
                assert reconnects >= 2 and proxy.websockets >= 3
                assert rt.positions["lobby"] == sent[-1]["seq"]

    run(go())


def test_a_send_lost_with_the_connection_is_sent_again_only_with_its_client_message_id(
    server: Server, app_keys: AppKeys, cast: dict[str, str]
) -> None:
    async def go() -> None:
        async with Proxy(server.url) as proxy:
            with Client(proxy.url, app_keys.client_key, cast["bob"]) as bob:
                rt = await bob.connect(backoff=(0.02, 0.05))
                try:
                    proxy.muted = True  # both sends vanish before reaching the server
                    kept = asyncio.create_task(rt.send("lobby", "kept", client_message_id="k"))
                    await eventually(lambda: proxy.swallowed >= 1)
                    lost = asyncio.create_task(rt.send("lobby", "lost"))
                    await eventually(lambda: proxy.swallowed >= 2)
                    proxy.muted = False
                    proxy.cut()
                    stored = await kept
                    assert stored["message"] == "kept" and stored["clientMessageId"] == "k"
                    with pytest.raises(ParleyAPIError) as failed:
                        await lost
                    assert failed.value.error == "CONNECTION_ERROR"
                    page = await asyncio.to_thread(bob.history, "lobby", limit=10)
                    texts = [m.get("message") for m in page["data"]]
                    assert texts.count("kept") == 1 and "lost" not in texts
                finally:
                    await rt.close()

    run(go())


def test_close_stops_the_reconnection_loop(
    server: Server, app_keys: AppKeys, cast: dict[str, str]
) -> None:
    async def go() -> None:
        async with Proxy(server.url) as proxy:
            with Client(proxy.url, app_keys.client_key, cast["bob"]) as bob:
                rt = await bob.connect(backoff=(0.01, 0.03))
                stream = rt.events()
                proxy.refusing = True
                proxy.cut()
                await eventually(lambda: proxy.websockets >= 4)  # it keeps trying
                await rt.close()
                tried = proxy.websockets
                await asyncio.sleep(0.3)  # ten times the largest delay
                assert proxy.websockets == tried
                assert [name async for name, _ in stream] == ["disconnect"]
                assert not rt.connected
                with pytest.raises(ParleyAPIError) as closed:
                    await rt.send("lobby", "x")
                assert closed.value.error == "CONNECTION_ERROR"

    run(go())


def test_an_unreachable_server_is_a_connection_error(app_keys: AppKeys) -> None:
    async def go() -> None:
        rt = Realtime("http://127.0.0.1:9", app_keys.client_key, "token")
        with pytest.raises(ParleyAPIError) as down:
            await rt.connect()
        assert (down.value.status, down.value.error) == (0, "CONNECTION_ERROR")

    run(go())


@pytest.fixture(scope="module")
def quick_pings(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, log_capture: LogCapture
) -> Iterator[Server]:
    """A second node of the same cluster (database and secret) whose heartbeat is a few
    tenths of a second."""
    node = Server(
        make_settings(
            tmp_path_factory.mktemp("realtime-pings"),
            database_url=settings.effective_database_url,
            secret_key=settings.secret_key,
            socket_ping_interval=0.2,
            # Short, but not so short that the other test pass beside this one (CI runs
            # both at once on two cores) delays a pong past it.
            socket_ping_timeout=1.0,
        )
    ).start()
    yield node
    node.stop()


def test_the_heartbeat_is_answered(
    quick_pings: Server, app_keys: AppKeys, cast: dict[str, str]
) -> None:
    async def go() -> None:
        async with Proxy(quick_pings.url) as proxy:
            with Client(proxy.url, app_keys.client_key, cast["bob"]) as bob:
                async with bob.realtime() as rt:
                    # Three times as long as the server keeps a socket that does not answer.
                    await asyncio.sleep(3.6)
                    assert rt.connected and proxy.websockets == 1

    run(go())
