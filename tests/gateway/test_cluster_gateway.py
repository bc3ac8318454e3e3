"""The real-time gateway across two ``parley run`` processes sharing one database and one
Redis, with python-socketio clients: delivery, presence, revocation and resume cross
nodes, and a Redis restart while messages flow loses none.

Each node polls the change log only every 30 s here, so a revocation that closes sockets
on the other node within seconds came through Redis. The Redis-restart test runs its own
two nodes on a private ``redis-server``, so killing it disturbs nothing else.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis
import socketio

from tests.cluster_harness import (
    Cluster,
    ClusterApp,
    admin_client,
    cluster_env,
    issue_token,
    need_redis,
    running,
    user_client,
)
from tests.conftest import free_port, need_service, ok

pytestmark = pytest.mark.redis

T = TypeVar("T")
REVOCATION = 5.0  # seconds within which every node closes the sockets of a revoked credential
PRESENCE = 5.0  # seconds a socket opened or closed may take to show on every node
BACK_FROM_OUTAGE = 5.0  # seconds after Redis is back by which live delivery works again
TEST_LIMIT = 60.0  # no test's socket work may take longer
EVENTS = ("chat message", "room", "typing")


# -- processes ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("gateway-cluster")
    env = cluster_env(need_redis(), tmp, CHANGE_POLL_SECONDS="30")
    with running(Cluster(env, tmp)) as cluster:
        yield cluster


@pytest.fixture
def nodes(
    request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str], cluster: Cluster
) -> Iterator[tuple[str, str]]:
    """The URLs of the shared cluster's two nodes; their logs are printed if the test fails."""
    yield from _with_logs(request, capsys, cluster, (cluster.nodes[0].url, cluster.nodes[1].url))


@dataclass
class Bystander:
    """Another app with the same user and room ids as the apps under test ("bob" in
    "lobby"): only the app tells them apart."""

    app: ClusterApp
    bob: str  # bob's token


@pytest.fixture(scope="module")
def bystander(cluster: Cluster) -> Bystander:
    url = cluster.nodes[0].url
    app = cluster.quick_app()
    token = issue_token(url, app, "bob")
    make_room(url, app, "lobby", ["bob"])
    return Bystander(app, token)


def _with_logs(
    request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str], cluster: Cluster, value: T
) -> Iterator[T]:
    failed_before = request.session.testsfailed
    yield value
    if request.session.testsfailed > failed_before:
        with capsys.disabled():
            print(f"\n{cluster.logs()}")


class PrivateRedis:
    """A ``redis-server`` of this test alone, on a port of its own, without persistence:
    killed, it comes back empty, as a crashed cache server would."""

    def __init__(self, binary: str, tmp: Path) -> None:
        self.binary = binary
        self.tmp = tmp
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.tmp)),
                *("--logfile", str(self.tmp / "redis.log")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        with redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1) as probe:
            while True:
                try:
                    probe.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise RuntimeError(f"redis-server did not start on {self.port}") from None
                    time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown, every connection cut, everything in memory gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def subscribers(self, channel: str) -> int:
        with redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1) as probe:
            return int(dict(probe.pubsub_numsub(channel)).get(channel.encode(), 0))


@pytest.fixture
def outage_cluster(
    tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> Iterator[tuple[Cluster, PrivateRedis]]:
    """Two nodes of their own on a private Redis, which the test may kill and restart."""
    need_redis()  # the same service condition as the rest of the file
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        need_service("redis-server binary")
    server = PrivateRedis(binary, tmp_path)
    server.start()
    try:
        env = cluster_env(server.url, tmp_path, CHANGE_POLL_SECONDS="30")
        with running(Cluster(env, tmp_path)) as cluster:
            yield from _with_logs(request, capsys, cluster, (cluster, server))
    finally:
        server.kill()


# -- clients -----------------------------------------------------------------------------


@dataclass
class Peer:
    """A Socket.IO client and what it heard, in order."""

    sio: socketio.AsyncClient
    heard: list[tuple[str, Any]] = field(default_factory=list)
    closed_at: float | None = None  # time.monotonic() when the connection ended

    def messages(self, room: str | None = None) -> list[dict[str, Any]]:
        return [
            data
            for name, data in self.heard
            if name == "chat message" and (room is None or data.get("room") == room)
        ]

    def message_ids(self, room: str | None = None) -> set[str]:
        return {m["_id"] for m in self.messages(room)}


def events_of(peer: Peer) -> list[tuple[str, Any]]:
    """What a socket heard, as (event, message id or None)."""
    return [
        (name, data.get("_id") if isinstance(data, dict) else None) for name, data in peer.heard
    ]


async def open_socket(
    url: str, app: ClusterApp, token: str, *, resume: dict[str, int] | None = None
) -> Peer:
    peer = Peer(socketio.AsyncClient(reconnection=False))
    for name in EVENTS:

        def record(data: Any, name: str = name) -> None:
            peer.heard.append((name, data))

        peer.sio.on(name, record)

    def closed(*_reason: Any) -> None:
        peer.closed_at = time.monotonic()

    peer.sio.on("disconnect", closed)
    auth: dict[str, Any] = {"clientKey": app.client_key, "token": token}
    if resume is not None:
        auth["resume"] = resume
    await peer.sio.connect(
        url, transports=["websocket"], headers={"Host": app.domain}, auth=auth, wait_timeout=10
    )
    return peer


async def opening(opened: list[Peer], url: str, app: ClusterApp, token: str) -> Peer:
    """``open_socket``, noting the socket in ``opened`` for the test to close at the end."""
    peer = await open_socket(url, app, token)
    opened.append(peer)
    return peer


async def close_all(peers: list[Peer]) -> None:
    for peer in peers:
        if peer.sio.connected:
            await peer.sio.disconnect()


def rest(url: str, app: ClusterApp, token: str | None = None) -> httpx.AsyncClient:
    """The app's REST API on one node: as the user of ``token``, else with the API Key."""
    headers = {"Host": app.domain}
    if token is None:
        headers["IM-API-KEY"] = app.api_key
    else:
        headers.update({"IM-CLIENT-KEY": app.client_key, "IM-Authorization": token})
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=10)


async def settled(check: Callable[[], bool], within: float) -> bool:
    """Whether ``check`` came to hold within ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def eventually(check: Callable[[], bool], within: float, what: str) -> None:
    assert await settled(check, within), f"timed out after {within:.1f}s waiting for {what}"


async def settles(read: Callable[[], Awaitable[T]], want: T, within: float, what: str) -> None:
    """Poll ``read`` until it returns ``want``; fail with the last value at the deadline."""
    deadline = time.monotonic() + within
    while (got := await read()) != want:
        assert time.monotonic() < deadline, f"{what}: still {got!r} after {within}s, not {want!r}"
        await asyncio.sleep(0.05)


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, TEST_LIMIT))


def make_room(url: str, app: ClusterApp, room: str, members: list[str]) -> None:
    with admin_client(url, app) as admin:
        ok(admin.post("/rooms", json={"_id": room, "name": room, "members": members}))


def post_as(sender: str, room: str, text: str) -> dict[str, Any]:
    return {"room": room, "sender": sender, "message": text, "messageType": "text"}


class Sender(threading.Thread):
    """One user posting to a room over REST at a steady pace (one request at a time, so
    the room's seq follows the order of sending), until ``count`` or ``stop()``. Keeps
    what the server acknowledged and what failed."""

    def __init__(
        self, url: str, app: ClusterApp, token: str, room: str, *, count: int, interval: float
    ) -> None:
        super().__init__(daemon=True)
        self.url, self.app, self.token, self.room = url, app, token, room
        self.count, self.interval = count, interval
        self.acked: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        with user_client(self.url, self.app, self.token) as http:
            for i in range(self.count):
                if self._halt.wait(max(0.0, started + i * self.interval - time.monotonic())):
                    return
                try:
                    response = http.post(
                        f"/rooms/{self.room}/message",
                        json={"message": f"m{i}", "messageType": "text"},
                    )
                except httpx.TransportError as exc:
                    self.failures.append(f"m{i}: {exc!r}")
                    continue
                if response.status_code == 200:
                    self.acked.append(response.json()["result"])
                else:
                    self.failures.append(f"m{i}: {response.status_code} {response.text[:200]}")

    def stop(self) -> None:
        self._halt.set()
        if self.ident is not None:  # started
            self.join(timeout=30)


def delivery_report(received: list[dict[str, Any]], acked: list[dict[str, Any]]) -> dict[str, int]:
    """How the messages one client received (in arrival order) compare with those the
    server acknowledged: acknowledged but never received, received more than once, and
    received after one with a higher seq."""
    ids = [m["_id"] for m in received]
    seqs = [m["seq"] for m in received]
    return {
        "lost": len({m["_id"] for m in acked} - set(ids)),
        "duplicated": len(ids) - len(set(ids)),
        "out_of_order": sum(1 for a, b in pairwise(seqs) if b <= a),
    }


CLEAN = {"lost": 0, "duplicated": 0, "out_of_order": 0}


class CuttableLink:
    """A TCP relay to a node whose connections can be cut at once, as a network failure
    would: neither side says goodbye."""

    def __init__(self, target: str) -> None:
        self._port = int(target.rsplit(":", 1)[1])
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._port)
        self._writers += [writer, up_writer]
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


# -- 1. delivery -------------------------------------------------------------------------


def test_events_caused_on_one_node_reach_the_members_sockets_on_the_other(
    cluster: Cluster, nodes: tuple[str, str], bystander: Bystander
) -> None:
    node1, node2 = nodes
    app, other = cluster.quick_app(), bystander.app
    tokens = {user: issue_token(node1, app, user) for user in ("alice", "bob", "carol")}
    make_room(node1, app, "lobby", ["alice", "bob"])
    make_room(node1, app, "carols", ["carol"])

    async def go() -> None:
        opened: list[Peer] = []
        try:
            alice = await opening(opened, node1, app, tokens["alice"])
            bob = await opening(opened, node2, app, tokens["bob"])
            carol = await opening(opened, node2, app, tokens["carol"])
            stranger = await opening(opened, node2, other, bystander.bob)
            async with rest(node1, app) as admin1, rest(node1, other) as other_admin1:
                await cause_events_on_node1(admin1, alice, bob)
                # Node 2 has handled every event above (bob has them all). Anything it
                # wrongly sent carol or the stranger is queued before these last ones.
                mine = ok(await admin1.post("/messages", json=post_as("carol", "carols", "c")))
                theirs = ok(await other_admin1.post("/messages", json=post_as("bob", "lobby", "s")))
            await eventually(lambda: mine["_id"] in carol.message_ids(), 5, "carol's own message")
            await eventually(lambda: theirs["_id"] in stranger.message_ids(), 5, "other app's")
            assert events_of(carol) == [("chat message", mine["_id"])], carol.heard
            assert events_of(stranger) == [("chat message", theirs["_id"])], stranger.heard
        finally:
            await close_all(opened)

    run(go())


async def cause_events_on_node1(admin1: httpx.AsyncClient, alice: Peer, bob: Peer) -> None:
    """A REST message, a socket message, a room change and typing, all on node 1; bob's
    socket on node 2 receives each, once."""
    sent = ok(await admin1.post("/messages", json=post_as("alice", "lobby", "over REST")))
    await eventually(lambda: sent["_id"] in bob.message_ids("lobby"), 5, "the REST message")

    ack = await alice.sio.call(
        "chat message", {"room": "lobby", "message": "by socket"}, timeout=10
    )
    assert ack["RC"] == 0, ack
    by_socket = ack["result"]
    await eventually(lambda: by_socket["_id"] in bob.message_ids("lobby"), 5, "the socket message")

    ok(await admin1.put("/rooms/lobby", json={"name": "Renamed lobby"}))
    await eventually(
        lambda: any(n == "room" and d.get("name") == "Renamed lobby" for n, d in bob.heard),
        5,
        "the room event",
    )

    await alice.sio.emit("typing", "lobby")
    await eventually(
        lambda: any(n == "typing" and d.get("sender") == "alice" for n, d in bob.heard),
        5,
        "the typing event",
    )
    assert [(m["_id"], m["seq"]) for m in bob.messages()] == [
        (sent["_id"], sent["seq"]),
        (by_socket["_id"], by_socket["seq"]),
    ]
    assert sent["seq"] < by_socket["seq"]
    assert [n for n, _ in bob.heard] == ["chat message", "chat message", "room", "typing"]


# -- 2. presence -------------------------------------------------------------------------


def test_presence_and_connection_count_add_up_the_sockets_of_both_nodes(
    cluster: Cluster, nodes: tuple[str, str]
) -> None:
    node1, node2 = nodes
    app = cluster.quick_app()
    tokens = {user: issue_token(node1, app, user) for user in ("alice", "bob", "carol")}

    async def go() -> None:
        clients = {
            (user, url): rest(url, app, tokens[user])
            for user in ("alice", "bob", "carol")
            for url in nodes
        }
        admins = [rest(url, app) for url in nodes]

        async def online(user: str, url: str) -> bool:
            response = await clients[(user, url)].get("/me")
            return bool(ok(response)["isSocketConnected"])

        async def counts() -> list[int]:
            return [ok(await a.get("/admin/connection-count"))["count"] for a in admins]

        sockets: list[Peer] = []
        try:
            assert await counts() == [0, 0]
            alice = [await open_socket(node1, app, tokens["alice"]) for _ in range(2)]
            bob = await open_socket(node2, app, tokens["bob"])
            sockets = [*alice, bob]
            await settles(counts, [3, 3], PRESENCE, "connection count on nodes 1, 2")
            await settles(lambda: online("alice", node2), True, PRESENCE, "alice on node 2")
            await settles(lambda: online("bob", node1), True, PRESENCE, "bob on node 1")
            assert not await online("carol", node1) and not await online("carol", node2)

            await alice[0].sio.disconnect()
            await settles(counts, [2, 2], PRESENCE, "count after one of alice's closed")
            assert await online("alice", node2)  # her other socket is still open

            await close_all(sockets)
            await settles(counts, [0, 0], PRESENCE, "count after every socket closed")
            await settles(lambda: online("alice", node2), False, PRESENCE, "alice on node 2")
            await settles(lambda: online("bob", node1), False, PRESENCE, "bob on node 1")
        finally:
            await close_all(sockets)
            for http in [*clients.values(), *admins]:
                await http.aclose()

    run(go())


# -- 3. revocation -----------------------------------------------------------------------


@pytest.mark.parametrize("revoked", ["user token", "client key", "app"])
def test_revocation_on_one_node_closes_the_sockets_on_every_node(
    cluster: Cluster, nodes: tuple[str, str], bystander: Bystander, revoked: str
) -> None:
    node1, node2 = nodes
    app, other = cluster.quick_app(), bystander.app
    tokens = {user: issue_token(node1, app, user) for user in ("alice", "bob")}
    make_room(node1, app, "lobby", ["alice", "bob"])

    def revoke() -> None:
        if revoked == "user token":
            with admin_client(node1, app) as admin:
                ok(admin.delete("/admin/clients/bob/token"))
        elif revoked == "client key":
            cluster.cli("client-key", "revoke", app.id)
        else:
            cluster.cli("app", "delete", app.id, "--yes")

    async def go() -> None:
        opened: list[Peer] = []
        try:
            bobs = [await opening(opened, url, app, tokens["bob"]) for url in nodes]
            alices = [await opening(opened, url, app, tokens["alice"]) for url in nodes]
            strangers = [await opening(opened, url, other, bystander.bob) for url in nodes]
            victims = bobs if revoked == "user token" else bobs + alices
            survivors = [p for p in opened if p not in victims]
            await asyncio.to_thread(revoke)
            await eventually(
                lambda: all(p.closed_at is not None for p in victims),
                REVOCATION,
                f"the sockets of the revoked {revoked} to close",
            )
            assert all(p.sio.connected for p in survivors)
            await survivors_still_receive(strangers, node2, other, "bob")
            if revoked == "user token":
                await survivors_still_receive(alices, node2, app, "alice")
        finally:
            await close_all(opened)

    run(go())


async def survivors_still_receive(
    peers: list[Peer], url: str, app: ClusterApp, sender: str
) -> None:
    """Open on the server's side too: a message sent now reaches every one of them."""
    async with rest(url, app) as admin:
        sent = ok(await admin.post("/messages", json=post_as(sender, "lobby", "still here")))
    await eventually(
        lambda: all(sent["_id"] in p.message_ids() for p in peers), 5, "the survivors' message"
    )


# -- 4. resume ---------------------------------------------------------------------------


def test_a_client_cut_off_from_one_node_resumes_on_the_other_without_loss(
    cluster: Cluster, nodes: tuple[str, str]
) -> None:
    node1, node2 = nodes
    app = cluster.quick_app()
    tokens = {user: issue_token(node1, app, user) for user in ("alice", "bob")}
    make_room(node1, app, "stream", ["alice", "bob"])
    sender = Sender(node1, app, tokens["alice"], "stream", count=300, interval=0.01)

    async def go() -> None:
        link = CuttableLink(node1)
        peers: list[Peer] = []
        try:
            first = await open_socket(await link.start(), app, tokens["bob"])
            peers.append(first)
            sender.start()
            await eventually(lambda: len(first.messages()) >= 100, 20, "100 live messages")
            link.cut()
            await eventually(lambda: first.closed_at is not None, 5, "the client to see the cut")
            before_cut = first.messages()
            last_seq = before_cut[-1]["seq"]
            # Some messages go out while the client is away; the rest race its resume.
            away_from = len(sender.acked)
            await eventually(lambda: len(sender.acked) >= away_from + 30, 10, "30 more sent")
            second = await open_socket(node2, app, tokens["bob"], resume={"stream": last_seq})
            peers.append(second)
            assert sender.is_alive(), "the stream ended before the client came back"
            await asyncio.to_thread(sender.join, 30)
            assert not sender.is_alive() and sender.failures == []
            assert len(sender.acked) == 300
            # A failure here shows in the report below, as lost messages.
            await settled(lambda: len(first.messages()) + len(second.messages()) >= 300, 10)
            assert first.messages() == before_cut  # nothing reached the cut-off client
            received = before_cut + second.messages()
            assert delivery_report(received, sender.acked) == CLEAN
            assert [m["seq"] for m in received] == sorted(m["seq"] for m in sender.acked)
        finally:
            sender.stop()
            await close_all(peers)
            await link.close()

    run(go())


# -- 5. Redis restart --------------------------------------------------------------------


def test_a_redis_restart_while_messages_flow_loses_none_and_presence_comes_back(
    outage_cluster: tuple[Cluster, PrivateRedis],
) -> None:
    cluster, redis_server = outage_cluster
    node1, node2 = (node.url for node in cluster.nodes)
    app = cluster.quick_app()
    tokens = {user: issue_token(node1, app, user) for user in ("alice", "bob")}
    make_room(node1, app, "flow", ["alice", "bob"])
    make_room(node1, app, "beacon", ["alice", "bob"])  # for the probe of live delivery
    sender = Sender(node1, app, tokens["alice"], "flow", count=2000, interval=0.02)  # 50/s

    async def go() -> None:
        bob = await open_socket(node2, app, tokens["bob"])
        try:
            async with rest(node1, app) as admin1, rest(node1, app, tokens["bob"]) as bob1:

                async def count_on_node1() -> int:
                    return int(ok(await admin1.get("/admin/connection-count"))["count"])

                async def bob_online_on_node1() -> bool:
                    return bool(ok(await bob1.get("/me"))["isSocketConnected"])

                await settles(count_on_node1, 1, PRESENCE, "node 2's socket counted on node 1")
                sender.start()
                await eventually(lambda: len(sender.acked) >= 30, 10, "30 messages before")
                redis_server.kill()
                killed_ms = int(time.time() * 1000)
                await asyncio.sleep(1.0)  # the outage itself: messages keep being sent
                await asyncio.to_thread(redis_server.start)
                back_at, back_ms = time.monotonic(), int(time.time() * 1000)

                await live_delivery_after_restart(redis_server, admin1, bob, back_at)
                acked_when_back = len(sender.acked)
                await eventually(
                    lambda: len(sender.acked) >= acked_when_back + 30, 10, "30 messages after"
                )
                sender.stop()
                # A failure here shows in the report below, as lost messages.
                await settled(
                    lambda: {m["_id"] for m in sender.acked} <= bob.message_ids("flow"), 10
                )
                report = delivery_report(bob.messages("flow"), sender.acked)
                assert report == CLEAN, outage_timeline(
                    bob.messages("flow"), sender.acked, killed_ms, back_ms
                )
                # Messages were stored while node 2 could not hear of them: the replay
                # after the outage, not the live path, delivered those.
                assert any(killed_ms <= m["createdAtMS"] <= back_ms for m in sender.acked)
                assert bob.sio.connected and bob.closed_at is None

                await settles(count_on_node1, 1, PRESENCE, "node 2's count rewritten to Redis")
                await settles(bob_online_on_node1, True, PRESENCE, "bob online seen on node 1")
            assert all(node.process.poll() is None for node in cluster.nodes)
        finally:
            sender.stop()
            await close_all([bob])

    run(go())


def outage_timeline(
    received: list[dict[str, Any]], acked: list[dict[str, Any]], killed_ms: int, back_ms: int
) -> str:
    """The messages that never arrived, with when they were stored, against the outage."""
    ids = {m["_id"] for m in received}
    lost = [(m["seq"], m["createdAtMS"] - killed_ms) for m in acked if m["_id"] not in ids]
    return (
        f"{delivery_report(received, acked)}; Redis down for {back_ms - killed_ms} ms; "
        f"lost (seq, ms stored after the kill): {lost}"
    )


async def live_delivery_after_restart(
    redis_server: PrivateRedis, admin1: httpx.AsyncClient, bob: Peer, back_at: float
) -> None:
    """Both nodes subscribe to the event channel again, and a message sent on node 1
    then reaches bob's socket on node 2, all within ``BACK_FROM_OUTAGE`` of Redis being
    back."""

    def remaining() -> float:
        return BACK_FROM_OUTAGE - (time.monotonic() - back_at)

    await eventually(
        lambda: redis_server.subscribers("parley:events") == 2,
        remaining(),
        "both nodes to subscribe to Redis again",
    )
    probe = ok(await admin1.post("/messages", json=post_as("alice", "beacon", "after restart")))
    await eventually(lambda: probe["_id"] in bob.message_ids("beacon"), remaining(), "the probe")
