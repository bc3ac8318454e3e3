"""Hostile and broken clients against the real-time gateway of a ``parley run`` process: a
client that stops reading, frames that break the protocol, sockets that never
authenticate. Each may cost the server a bounded amount, and nobody else notices.

The node is a subprocess so that its memory (RSS) is its own. Its heartbeat is quick
(a ping every second, two to answer) and its largest frame 256 KiB, so every limit is
reached in seconds; its log is searched for tracebacks after each test.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.config import Settings
from parley.services.container import Services
from parley.storage.db import run_migrations
from tests.conftest import DATABASE_URL, AppKeys, free_port, make_settings, ok
from tests.gateway.wire import CRASH_MARKS, Wire

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the node's memory from /proc"
)

PING_INTERVAL = 1.0
PING_TIMEOUT = 2.0
MAX_FRAME = 262_144  # the node's max_body_bytes: its largest WebSocket frame
ROOM = "lobby"
# The stall: WARM_UP big messages everyone reads, then STALL more while one client reads
# nothing. The node must have closed that socket CLOSE_WITHIN seconds after the last of
# them at the latest, and its memory may grow by less than half of what it was sent.
BIG = 50_000  # characters of a big message
WARM_UP = 10
STALL = 200
CLOSE_WITHIN = 3.0
RSS_BOUND_MB = STALL * BIG / 2 / 1e6
PARALLEL_SENDS = 8  # REST sends in flight at once
# The flood: tiny valid frames written at once.
FLOOD = 1_000
FLOOD_LATENCY = 2.0  # seconds another socket's message may take meanwhile
FLOOD_BUDGET = 0.4  # seconds the node may spend on all of them: they relay one event
# Pings of nearly MAX_FRAME each (50 MB in all) from a client that never reads.
BIG_PINGS = 200
PING_RSS_BOUND_MB = 16.0
# The node is asked to close sockets unauthenticated this long after they opened.
HANDSHAKE_DEADLINE = 3.0


def run(coro: Awaitable[Any], within: float = 45) -> Any:
    return asyncio.run(asyncio.wait_for(coro, within))


# -- the node -------------------------------------------------------------------------


@dataclass
class Node:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    keys: AppKeys
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS for the node")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def admin(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"IM-API-KEY": self.keys.api_key}, timeout=20
        )

    def auth(self, user: str, **extra: Any) -> dict[str, Any]:
        return {"clientKey": self.keys.client_key, "token": self.tokens[user], **extra}


async def create_app(settings: Settings) -> AppKeys:
    services = Services(settings)
    try:
        new = await services.apps.create("hostile-" + secrets.token_hex(4), [], [])
    finally:
        await services.broker.close()
        await services.db.close()
    return AppKeys(new.app.id, new.api_key, new.client_key)


def start_node(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update(
        PARLEY_DATA_DIR=str(settings.data_dir),
        PARLEY_DATABASE_URL=settings.database_url,
        PARLEY_REDIS_URL=settings.redis_url,
        PARLEY_SECRET_KEY=settings.secret_key,
        PARLEY_SOCKET_PING_INTERVAL=str(PING_INTERVAL),
        PARLEY_SOCKET_PING_TIMEOUT=str(PING_TIMEOUT),
        PARLEY_SOCKET_CONNECT_TIMEOUT=str(HANDSHAKE_DEADLINE),
        PARLEY_MAX_BODY_BYTES=str(MAX_FRAME),
        # Hundreds of sends and polls a minute: the API Key's rate limit is not under test.
        PARLEY_API_KEY_RATE_LIMIT="1000000",
        PYTHONUNBUFFERED="1",
    )
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "parley", "run", "--port", str(settings.port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"parley run did not become healthy:\n{log.read_text()}")


@pytest.fixture(scope="module")
def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    if DATABASE_URL:
        request.getfixturevalue("settings")  # resets and migrates the shared database first
    tmp = tmp_path_factory.mktemp("hostile")
    settings = make_settings(tmp, port=free_port())
    run_migrations(settings.effective_database_url)
    keys = asyncio.run(create_app(settings))
    log = tmp / "parley.log"
    process = start_node(settings, log)
    try:
        url = f"http://127.0.0.1:{settings.port}"
        wait_healthy(url, process, log)
        node = Node(url, process, log, keys)
        with httpx.Client(base_url=url, headers={"IM-API-KEY": keys.api_key}) as admin:
            for user in ("alice", "bob", "carol", "mallory", "trudy"):
                body = {"_id": user, "issueAccessToken": True}
                node.tokens[user] = ok(admin.post("/admin/clients", json=body))["token"]
            members = ["alice", "bob", "carol", "mallory", "trudy"]
            ok(admin.post("/rooms", json={"_id": ROOM, "name": "Lobby", "members": members}))
        yield node
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def assert_unharmed(node: Node, since: int) -> None:
    """The node still runs and logged no traceback after offset ``since`` of its log."""
    assert node.process.poll() is None, "the node died"
    logged = node.output()[since:]
    assert not any(mark in logged for mark in CRASH_MARKS), logged[-3000:]


@pytest.fixture
def unharmed(node: Node) -> Iterator[None]:
    since = len(node.output())
    yield
    assert_unharmed(node, since)


async def send(admin: httpx.AsyncClient, text: str) -> dict[str, Any]:
    body = {"room": ROOM, "sender": "alice", "message": text, "messageType": "text"}
    return dict(ok(await admin.post("/messages", json=body)))


async def connection_count(admin: httpx.AsyncClient) -> int:
    return int(ok(await admin.get("/admin/connection-count"))["count"])


async def poll(check: Callable[[], bool], within: float) -> bool:
    """Whether ``check`` turned true within ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


# -- clients --------------------------------------------------------------------------


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One masked WebSocket frame, as a client sends it."""
    mask = secrets.token_bytes(4)
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    if not payload:
        return head + mask
    key = int.from_bytes((mask * (size // 4 + 1))[:size], "big")
    return head + mask + (int.from_bytes(payload, "big") ^ key).to_bytes(size, "big")


class RawClient:
    """A client writing WebSocket frames by hand over a TCP socket with the smallest
    receive buffer the kernel allows. Once told to stall it reads nothing more, yet keeps
    answering the heartbeat blindly: only backpressure can tell the server it is gone."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._pongs: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, node: Node) -> RawClient:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
        raw.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", node.port))
        except OSError:
            raw.close()
            raise
        reader, writer = await asyncio.open_connection(sock=raw, limit=4096)
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        writer.write(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{node.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101"), head
        except BaseException:
            writer.transport.abort()
            raise
        return cls(reader, writer)

    def send(self, text: str) -> None:
        self.writer.write(client_frame(text.encode()))

    async def handshake(self, auth: dict[str, Any] | None) -> str:
        """The Engine.IO open, then a CONNECT: the server's answer to it."""
        await self.text_until(lambda seen: seen[-1].startswith("0{"))
        self.send("40" + (json.dumps(auth) if auth else ""))
        return (await self.text_until(lambda seen: True))[-1]

    async def frame(self) -> tuple[int, bytes] | None:
        """The server's next frame (opcode, payload); None at the end of the stream."""
        try:
            first, second = await self.reader.readexactly(2)
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return first & 0x0F, await self.reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def text_until(self, done: Callable[[list[str]], bool]) -> list[str]:
        """Text frames (pings answered, not kept) until ``done`` says it has enough."""
        seen: list[str] = []
        while not seen or not done(seen):
            got = await self.frame()
            assert got is not None and got[0] == 0x1, f"connection ended: {seen[-3:]}"
            text = got[1].decode()
            if text == "2":
                self.send("3")
            else:
                seen.append(text)
        return seen

    def stall(self) -> None:
        async def blind_pongs() -> None:
            while True:
                self.send("3")
                await asyncio.sleep(PING_INTERVAL / 3)

        self._pongs = asyncio.create_task(blind_pongs())

    async def read_to_end(self, within: float) -> bool:
        """Read what the server left for it (still answering pings blindly); True when
        the server ends the connection (a close frame, or the end of the stream) within
        ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                while (got := await self.frame()) is not None and got[0] != 0x8:
                    pass
        except TimeoutError:
            return False
        return True

    def abort(self) -> None:
        if self._pongs is not None:
            self._pongs.cancel()
        self.writer.transport.abort()


# -- 1. a client that stops reading ---------------------------------------------------


@dataclass
class StallReport:
    sent: list[dict[str, Any]]  # the big messages sent while one client stalled
    seen_seq: int  # the last seq the stalled client read before it stalled
    closed_after: float | None  # seconds from the first of them to the socket's close
    sending_took: float
    rss_growth_mb: float
    reader_got: list[str]  # ids the reading member received meanwhile, in order
    peer_saw_end: bool


async def send_all(admin: httpx.AsyncClient, texts: list[str]) -> list[dict[str, Any]]:
    """Send each text, several at a time (the node stores concurrent sends together);
    the stored messages, in seq order."""
    gate = asyncio.Semaphore(PARALLEL_SENDS)

    async def one(text: str) -> dict[str, Any]:
        async with gate:
            return await send(admin, text)

    sent = await asyncio.gather(*(one(text) for text in texts))
    return sorted(sent, key=lambda message: int(message["seq"]))


class Watch:
    """Samples the node's RSS, and notices when the app's connection count drops to
    ``until``, while a scenario runs."""

    def __init__(self, node: Node, admin: httpx.AsyncClient, until: int) -> None:
        self.baseline = self.peak = node.rss_mb()
        self.began = time.monotonic()
        self.dropped_after: float | None = None
        self._task = asyncio.create_task(self._sample(node, admin, until))

    async def _sample(self, node: Node, admin: httpx.AsyncClient, until: int) -> None:
        while True:
            self.peak = max(self.peak, node.rss_mb())
            if self.dropped_after is None and await connection_count(admin) == until:
                self.dropped_after = time.monotonic() - self.began
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def stall_scenario(node: Node) -> StallReport:
    async with node.admin() as admin:
        bob = await Wire.open(node)
        assert (await bob.connect(node.auth("bob"))).startswith("40{")
        mallory = await RawClient.open(node)
        try:
            assert (await mallory.handshake(node.auth("mallory"))).startswith("40{")
            assert await connection_count(admin) == 2
            warm = [await send(admin, "w" * BIG) for _ in range(WARM_UP)]
            await mallory.text_until(lambda seen: len(seen) == WARM_UP)
            mallory.stall()

            watch = Watch(node, admin, until=1)  # bob's socket alone
            try:
                sent = await send_all(admin, [f"{i:04} " + "s" * BIG for i in range(STALL)])
                sending_took = time.monotonic() - watch.began
                await poll(lambda: watch.dropped_after is not None, CLOSE_WITHIN)
                await bob.until(lambda: len(bob.chat()) >= WARM_UP + STALL, "every message", 20)
            finally:
                await watch.stop()
            peer_saw_end = await mallory.read_to_end(within=2.0)
        finally:
            mallory.abort()
            await bob.close()
    return StallReport(
        sent=sent,
        seen_seq=warm[-1]["seq"],
        closed_after=watch.dropped_after,
        sending_took=sending_took,
        rss_growth_mb=watch.peak - watch.baseline,
        reader_got=[m["_id"] for m in bob.chat()[WARM_UP:]],
        peer_saw_end=peer_saw_end,
    )


@pytest.fixture(scope="module")
def stall(node: Node) -> StallReport:
    """One run of the scenario: bob reads; mallory reads the warm-up messages, then stops
    reading (answering pings blindly) while 200 messages of 50 KB go to the room."""
    since = len(node.output())
    report = run(stall_scenario(node), within=90)
    assert_unharmed(node, since)
    return report


def test_a_reading_member_gets_every_message_meanwhile(stall: StallReport) -> None:
    assert stall.reader_got == [m["_id"] for m in stall.sent]


def test_the_stalled_user_resumes_what_it_missed_once_in_order(
    stall: StallReport, node: Node, unharmed: None
) -> None:
    async def go() -> None:
        async with node.admin() as admin:
            again = await Wire.open(node)
            resume = node.auth("mallory", resume={ROOM: stall.seen_seq})
            assert (await again.connect(resume)).startswith("40{")
            await again.until(lambda: len(again.chat()) >= len(stall.sent), "the missed ones", 20)
            # A message sent now comes after the resumed ones: when it is in, nothing of
            # the resume is still on its way.
            after = await send(admin, "after the resume")
            await again.until(lambda: again.chat()[-1]["_id"] == after["_id"], "the new one")
            got = [m["_id"] for m in again.chat()]
            # Other tests may have sent to the room since: those come between, in order.
            assert got[: len(stall.sent)] == [m["_id"] for m in stall.sent]
            seqs = [m["seq"] for m in again.chat()]
            assert seqs == sorted(set(seqs)), "each message once, in seq order"
            assert seqs[0] == stall.seen_seq + 1
            await again.close()

    run(go())


def test_a_client_that_stops_reading_is_closed(stall: StallReport) -> None:
    assert stall.closed_after is not None, "the stalled socket was never closed"
    assert stall.closed_after <= stall.sending_took + CLOSE_WITHIN
    assert stall.peer_saw_end, "the stalled peer never saw its connection end"


def test_a_client_that_stops_reading_costs_bounded_memory(stall: StallReport) -> None:
    assert stall.rss_growth_mb < RSS_BOUND_MB, f"RSS grew {stall.rss_growth_mb:.1f} MB"


# -- 2. frames that break the protocol ------------------------------------------------

CLOSED = "closed"
IGNORED = "ignored"


@dataclass(frozen=True)
class Hostile:
    frame: str | bytes
    stage: str  # "open" (no CONNECT yet) or "authenticated"
    outcome: str  # CLOSED, IGNORED, or the frame the server answers with (socket kept)


OVERSIZED = "42" + json.dumps(["chat message", {"room": ROOM, "message": "x" * MAX_FRAME}])
HOSTILE = {
    "bad-json-in-event": Hostile("42[oops", "authenticated", CLOSED),
    "unknown-engineio-type": Hostile("9", "authenticated", CLOSED),
    "unknown-socketio-type": Hostile("49[]", "authenticated", CLOSED),
    "binary-frame": Hostile(b"\x04\x00\xffbinary", "authenticated", CLOSED),
    "frame-over-the-size-limit": Hostile(OVERSIZED, "authenticated", CLOSED),
    "event-before-connect": Hostile('42["typing","lobby"]', "open", CLOSED),
    "ack-with-garbage": Hostile('431{"not":"a list"}', "authenticated", CLOSED),
    "ack-id-out-of-range": Hostile("4312345678901234567890[1]", "authenticated", CLOSED),
    # An ACK for nothing the server asked is well-formed: nothing to answer.
    "stray-ack": Hostile("4399[1]", "authenticated", IGNORED),
    "event-name-not-a-string": Hostile('42[1,"lobby"]', "authenticated", CLOSED),
    "event-args-an-object": Hostile('42{"room":"lobby"}', "authenticated", CLOSED),
    "event-args-a-string": Hostile('42"typing"', "authenticated", CLOSED),
    "empty-event": Hostile("42[]", "authenticated", CLOSED),
    # Socket.IO 5: a CONNECT to a namespace the server lacks gets a CONNECT_ERROR of that
    # namespace; the connection and its other namespaces live on.
    "connect-to-unknown-namespace": Hostile(
        "40/admin,", "authenticated", '44/admin,{"message":"Invalid namespace"}'
    ),
    # ...and a packet for a namespace the client never joined is a protocol error.
    "event-in-unjoined-namespace": Hostile('42/admin,["typing","lobby"]', "authenticated", CLOSED),
    # A sequence beyond what the database stores is no message of the room: nothing to send.
    "resume-beyond-int64": Hostile(
        '427["resume",{"rooms":{"lobby":18446744073709551615}}]',
        "authenticated",
        '437[{"RC":0,"RM":"OK","result":{"rooms":{}}}]',
    ),
}


def hostile_cases() -> list[Any]:
    return [
        pytest.param(
            name,
            case,
            id=name,
        )
        for name, case in HOSTILE.items()
    ]


async def healthy_socket(node: Node) -> Wire:
    carol = await Wire.open(node)
    assert (await carol.connect(node.auth("carol"))).startswith("40{")
    return carol


async def others_unaffected(node: Node, admin: httpx.AsyncClient, healthy: Wire) -> None:
    """A message sent now reaches the healthy socket, through a REST call that succeeds."""
    fence = await send(admin, "still here " + secrets.token_hex(4))
    await healthy.until(
        lambda: any(m["_id"] == fence["_id"] for m in healthy.chat()), "the fence message"
    )


@pytest.mark.parametrize(("name", "case"), hostile_cases())
def test_a_bad_frame_costs_only_its_own_socket(
    node: Node, name: str, case: Hostile, unharmed: None
) -> None:
    async def go() -> None:
        async with node.admin() as admin:
            healthy = await healthy_socket(node)
            hostile = await Wire.open(node)
            if case.stage == "authenticated":
                assert (await hostile.connect(node.auth("trudy"))).startswith("40{")
            answered = len(hostile.frames)
            await hostile.ws.send(case.frame)
            if case.outcome == CLOSED:
                await asyncio.wait_for(hostile.closed.wait(), 3)
                assert hostile.ws.close_code != 1011, "closed as an internal error"
            else:
                await hostile.still_usable()
                answers = hostile.frames[answered:-1]  # the last one answers the conf call
                expected = [] if case.outcome == IGNORED else [case.outcome]
                assert answers == expected
            await others_unaffected(node, admin, healthy)
            await healthy.close()
            await hostile.close()

    run(go())


@dataclass
class FloodReport:
    others_waited: float  # seconds a message sent meanwhile took to reach another socket
    answered_after: float  # seconds until the flooder's own call (after the flood) came back
    answer: str


async def flood_scenario(node: Node) -> FloodReport:
    async with node.admin() as admin:
        healthy = await healthy_socket(node)
        flooder = await RawClient.open(node)
        try:
            assert (await flooder.handshake(node.auth("trudy"))).startswith("40{")
            flood = client_frame(b'42["typing","lobby"]') * FLOOD
            flooder.writer.write(flood + client_frame(b'4277["conf",{}]'))
            began = time.monotonic()
            await others_unaffected(node, admin, healthy)
            others_waited = time.monotonic() - began
            answer = await flooder.text_until(lambda seen: seen[-1].startswith("4377["))
            answered_after = time.monotonic() - began
        finally:
            flooder.abort()
            await healthy.close()
    return FloodReport(others_waited, answered_after, answer[-1])


@pytest.fixture(scope="module")
def flood(node: Node) -> FloodReport:
    """A thousand valid ``typing`` frames written at once, then a ``conf`` call."""
    since = len(node.output())
    report = run(flood_scenario(node))
    assert_unharmed(node, since)
    return report


def test_a_flood_of_tiny_frames_slows_no_one_else(flood: FloodReport) -> None:
    """Socket.IO sets no rate: the frames are valid, so the socket stays and is answered
    in turn, while the others are served as usual."""
    assert flood.others_waited < FLOOD_LATENCY, "the others waited on the flood"
    assert flood.answer.startswith('4377[{"RC":0')


def test_a_flood_of_typing_frames_costs_the_node_little(flood: FloodReport) -> None:
    assert flood.answered_after < FLOOD_BUDGET, f"{FLOOD} frames took {flood.answered_after:.1f} s"


def test_large_pings_never_read_cost_bounded_memory(node: Node, unharmed: None) -> None:
    """Each ping is answered with a pong carrying its payload: a client that sends large
    pings and reads nothing must not make the node keep the pongs without bound."""

    async def go() -> None:
        async with node.admin() as admin:
            healthy = await healthy_socket(node)
            pinger = await RawClient.open(node)
            try:
                assert (await pinger.handshake(None)).startswith("40{")
                pinger.stall()
                baseline, peak = node.rss_mb(), 0.0
                ping = client_frame(b"2" + b"p" * (MAX_FRAME - 1024))
                for _ in range(BIG_PINGS):
                    pinger.writer.write(ping)
                    try:
                        await asyncio.wait_for(pinger.writer.drain(), 2)
                    except TimeoutError:
                        break  # the node stopped reading it: it gave up on the socket
                    peak = max(peak, node.rss_mb())
                await others_unaffected(node, admin, healthy)
                peak = max(peak, node.rss_mb())
                assert peak - baseline < PING_RSS_BOUND_MB, f"RSS grew {peak - baseline:.1f} MB"
            finally:
                pinger.abort()
                await healthy.close()

    run(go())


# -- 3. sockets that never authenticate -----------------------------------------------


@pytest.mark.parametrize("stage", ["no CONNECT", "CONNECT without credentials"])
def test_an_unauthenticated_socket_hears_nothing(node: Node, stage: str, unharmed: None) -> None:
    async def go() -> None:
        async with node.admin() as admin:
            healthy = await healthy_socket(node)
            idle = await Wire.open(node)
            if stage != "no CONNECT":
                assert (await idle.connect()).startswith("40{")
            await others_unaffected(node, admin, healthy)  # a message of the room went out
            await idle.round_trip()
            assert [f for f in idle.frames if f.startswith("42")] == []
            await idle.close()
            await healthy.close()

    run(go())


def test_unauthenticated_sockets_are_closed_after_the_handshake_deadline(
    node: Node, unharmed: None
) -> None:
    """Socket.IO closes a client that has not connected within ``connectTimeout`` (45 s
    by default); the gateway's handshake ends with authentication, so its deadline is for
    that (3 s on this node). Both sockets answer their pings all along, so only the
    deadline can close them."""

    async def go() -> None:
        silent, connected = await Wire.open(node), await Wire.open(node)
        assert (await connected.connect()).startswith("40{")  # and never authenticates
        try:
            async with asyncio.timeout(HANDSHAKE_DEADLINE + 2):
                await silent.closed.wait()
                await connected.closed.wait()
        finally:
            await silent.close()
            await connected.close()

    run(go())
