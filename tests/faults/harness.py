"""What the fault scenarios share: a workload of senders and receivers driven through
:mod:`parley.client`, a TCP load balancer, and private Redis and PostgreSQL servers that a
scenario may kill. Parley nodes are real ``parley run`` processes from
:mod:`tests.cluster_harness`.

The workload acts as real users would. Senders send one message at a time at a steady
rate, half over REST and half over the socket, each with a client message id, and retry
an unanswered or refused (5xx, connection lost) send with the same id until it is
acknowledged: the id is what makes a retry safe. Receivers follow every room with
:class:`parley.client.realtime.Realtime`, which reconnects and resumes by itself. Every
ack and every delivery is recorded for :func:`tests.faults.checker.check`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any

from parley.client import AdminClient, Client, ParleyAPIError
from parley.client.realtime import Realtime
from tests.cluster_harness import ClusterApp
from tests.conftest import free_port
from tests.faults.checker import Ack, Verdict, check

# Answers after which the same send is simply tried again: the connection went (0), the
# server or a dependency is down (5xx), a concurrent change (409) or a rate limit (429).
RETRYABLE = frozenset({0, 409, 429, 500, 502, 503, 504})


@dataclass
class Load:
    """The size of a workload: ``rate`` messages a second over all senders."""

    senders: int = 4
    receivers: int = 4
    rooms: int = 2
    rate: float = 100.0
    padding: int = 0  # extra characters a message carries (to fill slow sockets faster)


@dataclass
class Delivery:
    room: str
    cmid: str
    seq: int
    at: float  # time.monotonic() when the receiver was handed it


@dataclass
class Recorder:
    """Everything the run saw, for the checker and for timings."""

    attempted: dict[str, float] = field(default_factory=dict)  # cmid → first try
    acked: dict[str, Ack] = field(default_factory=dict)
    acked_at: dict[str, float] = field(default_factory=dict)
    received: dict[str, list[Delivery]] = field(default_factory=dict)
    answers: Counter[str] = field(default_factory=Counter)  # "503 SERVICE_UNAVAILABLE": n
    refused: list[str] = field(default_factory=list)  # sends given up (not retryable)
    reconnects: int = 0  # receivers' connections lost and opened again

    def latencies(self, since: float = 0.0, until: float = float("inf")) -> list[float]:
        """Seconds from a message's first try to each delivery, for messages first tried
        in [since, until)."""
        out = []
        for deliveries in self.received.values():
            for d in deliveries:
                start = self.attempted.get(d.cmid)
                if start is not None and since <= start < until:
                    out.append(d.at - start)
        return out


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Workload:
    """Users, rooms, senders and receivers of one app, reached at ``url`` (a node or a
    load balancer). Every member of a room receives its messages: all senders and
    receivers are in every room."""

    def __init__(self, url: str, app: ClusterApp, load: Load) -> None:
        self.url = url
        self.app = app
        self.load = load
        self.prefix = "w" + secrets.token_hex(3)
        self.rooms = [f"{self.prefix}-room{k}" for k in range(load.rooms)]
        self.senders = [f"{self.prefix}-s{k}" for k in range(load.senders)]
        self.receivers = [f"{self.prefix}-r{k}" for k in range(load.receivers)]
        self.tokens: dict[str, str] = {}
        self.record = Recorder()
        self._clients: dict[str, Client] = {}
        self._realtimes: dict[str, Realtime] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._delivered = asyncio.Event()  # set at each delivery
        self._give_up_at = float("inf")

    # -- setting up ---------------------------------------------------------------------

    def prepare(self, extra_members: Sequence[str] = ()) -> None:
        """Users with tokens and rooms (blocking: call before the event loop is busy).
        ``extra_members`` join every room without a token (others follow them)."""
        admin = AdminClient(self.url, self.app.api_key)
        with admin:
            for user in [*self.senders, *self.receivers]:
                self.tokens[user] = admin.create_user(user, issue_token=True)["token"]
            members = [*self.senders, *self.receivers, *extra_members]
            for room in self.rooms:
                admin.create_admin_room(room, members=members)

    def client(self, user: str) -> Client:
        if user not in self._clients:
            self._clients[user] = Client(
                self.url, self.app.client_key, self.tokens[user], timeout=5
            )
        return self._clients[user]

    def _realtime(self, user: str) -> Realtime:
        return self.client(user).realtime(backoff=(0.2, 2.0), ack_timeout=10.0, open_timeout=5.0)

    async def start(self) -> None:
        """Connect the receivers, then start the senders."""
        for user in self.receivers:
            self.record.received[user] = []
            rt = self._realtime(user)
            rt.on("chat message", self._on_message(user))
            rt.on("reconnect", self._on_reconnect)
            self._realtimes[user] = await rt.connect()
        for index, user in enumerate(self.senders):
            over_socket = index % 2 == 1
            if over_socket:
                self._realtimes[user] = await self._realtime(user).connect()
            self._tasks.append(asyncio.create_task(self._send_loop(user, over_socket)))

    def _on_reconnect(self, _attempts: Any) -> None:
        self.record.reconnects += 1

    def _on_message(self, user: str) -> Callable[[Any], None]:
        deliveries = self.record.received[user]

        def handler(message: Any) -> None:
            cmid = message.get("clientMessageId") if isinstance(message, dict) else None
            if isinstance(cmid, str) and cmid.startswith(self.prefix):
                deliveries.append(
                    Delivery(message["room"], cmid, int(message["seq"]), time.monotonic())
                )
                self._delivered.set()

        return handler

    # -- sending ------------------------------------------------------------------------

    async def _send_loop(self, user: str, over_socket: bool) -> None:
        loop = asyncio.get_running_loop()
        interval = self.load.senders / self.load.rate
        next_at = loop.time()
        index = 0
        while not self._stop.is_set():
            room = self.rooms[index % len(self.rooms)]
            await self._send_until_acked(user, room, f"{user}-{index}", over_socket)
            index += 1
            # Steady pace; after a stall, go on from now rather than send a burst.
            next_at = max(next_at + interval, loop.time() - interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(0.0, next_at - loop.time()))

    async def _send_until_acked(self, user: str, room: str, cmid: str, over_socket: bool) -> None:
        text = cmid + " " + "x" * self.load.padding
        self.record.attempted[cmid] = time.monotonic()
        while time.monotonic() < self._give_up_at:
            try:
                if over_socket:
                    stored = await self._realtimes[user].send(room, text, client_message_id=cmid)
                else:
                    stored = await asyncio.to_thread(
                        self.client(user).send, room, text, client_message_id=cmid
                    )
            except ParleyAPIError as exc:
                self.record.answers[f"{exc.status} {exc.error}"] += 1
                if exc.status not in RETRYABLE:
                    self.record.refused.append(f"{cmid}: {exc}")
                    return
                await asyncio.sleep(0.2)
                continue
            self.record.answers["200 OK"] += 1
            self.record.acked[cmid] = Ack(room, user, int(stored["seq"]))
            self.record.acked_at[cmid] = time.monotonic()
            return

    # -- ending -------------------------------------------------------------------------

    async def stop_senders(self, drain: float = 30.0) -> None:
        """Stop sending; a send in flight is retried for up to ``drain`` seconds more."""
        self._give_up_at = time.monotonic() + drain
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def finish(self, settle: float = 20.0) -> Verdict:
        """Stop the senders, give receivers ``settle`` seconds to have everything, close
        the connections, read every room's history and judge the run."""
        await self.stop_senders()
        deadline = time.monotonic() + settle
        while not self._caught_up() and time.monotonic() < deadline:
            self._delivered.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._delivered.wait(), deadline - time.monotonic())
        for rt in self._realtimes.values():
            await rt.close()
        history = await asyncio.to_thread(self.read_history)
        for client in self._clients.values():
            client.close()
        return self.verdict(history)

    def _caught_up(self) -> bool:
        wanted = set(self.record.acked)
        return all(
            wanted <= {d.cmid for d in deliveries} for deliveries in self.record.received.values()
        )

    def read_history(self) -> dict[str, list[tuple[str, int]]]:
        """Every workload message of every room, oldest first, through a receiver's REST
        client (retrying while the server is not there)."""
        reader = self.client(self.receivers[0])
        return {room: _room_history(reader, room, self.prefix) for room in self.rooms}

    def verdict(self, history: dict[str, list[tuple[str, int]]]) -> Verdict:
        received = {
            user: [(d.room, d.cmid, d.seq) for d in deliveries]
            for user, deliveries in self.record.received.items()
        }
        members = {user: self.rooms for user in self.receivers}
        return check(self.record.acked, self.record.attempted, history, received, members)


def _room_history(reader: Client, room: str, prefix: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    anchor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000, "sortOrder": "asc", "timeRangeField": "createdAt"}
        if anchor is not None:
            params["afterMessage"] = anchor
        page = _retrying(lambda p=params: reader.history(room, **p))["data"]  # type: ignore[misc]
        if anchor is not None:
            page = [m for m in page if m["_id"] != anchor]  # the anchor comes back first
        if not page:
            return out
        for message in page:
            cmid = message.get("clientMessageId")
            if isinstance(cmid, str) and cmid.startswith(prefix):
                out.append((cmid, int(message["seq"])))
        anchor = page[-1]["_id"]


def _retrying(call: Callable[[], Any], within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        try:
            return call()
        except ParleyAPIError as exc:
            if exc.status not in RETRYABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# -- a load balancer -------------------------------------------------------------------


class LoadBalancer:
    """A TCP load balancer on 127.0.0.1, as deployments put in front of Parley nodes: each
    new connection goes to the next backend that accepts it (a dead node refuses at once
    and is skipped), and is cut when its backend goes away, as a real one does."""

    def __init__(self, backends: list[str]) -> None:
        self._ports = [int(url.rsplit(":", 1)[1]) for url in backends]
        self._next = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self.url = ""
        self.connections: Counter[int] = Counter()  # by backend port

    async def start(self) -> LoadBalancer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._links):
            writer.transport.abort()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self._ports)):
            port = self._ports[self._next % len(self._ports)]
            self._next += 1
            try:
                link = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
            except (OSError, TimeoutError):
                continue
            self.connections[port] += 1
            return link
        return None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        upstream = await self._upstream()
        if upstream is None:
            writer.transport.abort()  # no live backend: the client sees a refused connection
            return
        up_reader, up_writer = upstream
        self._links.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except asyncio.CancelledError:
            pass  # closing: asyncio's stream callback would report a cancelled handler
        finally:
            for w in (writer, up_writer):
                self._links.discard(w)
                w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (OSError, ConnectionError):
        pass
    finally:
        writer.transport.abort()  # one side gone: the whole connection is


# -- private Redis and PostgreSQL servers ------------------------------------------------


class PrivateRedis:
    """A ``redis-server`` of our own on a free port (no persistence): killing it troubles
    no one else."""

    def __init__(self, tmp: Path) -> None:
        self.binary = shutil.which("redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._log = tmp / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.binary is not None, "redis-server is not installed"
        options = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        with self._log.open("ab") as out:
            self._process = subprocess.Popen(
                [self.binary, *options, "--appendonly", "no"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_for_port(self.port, what="redis-server")

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)

    stop = kill


class PrivatePostgres:
    """A PostgreSQL cluster of our own (``initdb`` into a temporary directory owned by the
    ``postgres`` user, which PostgreSQL needs when we are root) on a free port."""

    def __init__(self) -> None:
        found = sorted(glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        self.bin = Path(found[-1]).parent if found else None
        self.port = free_port()
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"
        self.dir = Path()  # made by init(): outside pytest's root-only temporary dirs
        self._as_root = os.geteuid() == 0

    @property
    def data(self) -> Path:
        return self.dir / "data"

    def _run(self, *args: str, timeout: float = 60) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_root else []
        done = subprocess.run(
            [*prefix, *args], capture_output=True, timeout=timeout, check=False, cwd=self.dir
        )
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout.decode()}{done.stderr.decode()}")

    def init(self) -> None:
        assert self.bin is not None, "PostgreSQL binaries not found"
        self.dir = Path(tempfile.mkdtemp(prefix="parley-faults-pg-"))
        if self._as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "--no-sync", "--no-instructions",
        )  # fmt: skip

    def start(self) -> None:
        assert self.bin is not None
        # fsync off: the server process is killed, never the machine, so the WAL it wrote
        # to the page cache is enough for crash recovery, and the test runs faster.
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.dir / "postgres.log"), "-w", "start",
        )  # fmt: skip

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: the server exits at once without a checkpoint, dropping every
        connection, as a crash would (it recovers from its WAL on the next start)."""
        assert self.bin is not None
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        if self.dir == Path():
            return  # never initialised
        with contextlib.suppress(RuntimeError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        path = self.dir / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _wait_for_port(port: int, *, what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@contextlib.asynccontextmanager
async def balanced(backends: list[str]) -> AsyncIterator[LoadBalancer]:
    lb = await LoadBalancer(backends).start()
    try:
        yield lb
    finally:
        await lb.close()
