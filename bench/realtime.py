"""Parley's Socket.IO gateway against Node ``ws``, Node ``socket.io`` and python-socketio,
measured in the same run: fan-out, memory per idle socket, CPU per connect.

    python bench/realtime.py [--quick] [--rounds 3] [--servers parley,node-ws,...]
                             [--subscribers 1000] [--rate 20] [--seconds 10]
                             [--idle 5000] [--client-procs 1] [--no-deflate]
                             [--profile DIR]

Each round starts every server afresh for each measurement (the order rotates between
rounds) and prints the medians over rounds:

- Fan-out: one room of ``--subscribers`` sockets plus a publisher that sends ``chat
  message`` over its socket, with ack, ``--rate`` times a second for ``--seconds``
  (20 x 1,000 = 20,000 frames/s offered). Server CPU per delivered frame, share
  delivered, and publish → last-subscriber latency per message (p50, p99).
- Memory: ``--idle`` authenticated sockets, each user in 2 rooms of 100, left idle: server
  RSS after they are all connected and RSS has settled, minus RSS before they connect.
- Connect: server CPU from the first connect to the last CONNECT answer, per socket
  (WebSocket upgrade, Engine.IO open, Socket.IO CONNECT with ``auth: {clientKey, token}``).

Server CPU is utime + stime of the server's process tree from /proc/<pid>/stat, read
before and after the window; RSS is VmRSS from /proc/<pid>/status. Parley runs as ``parley
run`` on SQLite in a temporary directory; every user has its own token and rooms are made
with the bulk member lists of ``POST /rooms``. The baselines (files in bench/realtime/)
authenticate against a token → rooms map and broadcast to the room in memory; they and
Parley get the same tokens, rooms and message sizes. The baselines are installed by this
script at pinned versions into bench/.cache/ (npm, and a venv for python-socketio).

The load comes from Node processes (bench/realtime/client.js) that speak the Engine.IO /
Socket.IO text frames themselves; their CPU share is printed beside the server's, to show
they are not what limits the numbers. By default they offer permessage-deflate, as
browsers do, and each server does what it does by default with the offer.

Targets (Parley): fan-out CPU per frame ≤ 1.5x node-ws and ≤ 1.0x node-socketio; 100%
delivered and p99 ≤ 1.5x node-socketio; RSS per idle socket ≤ 30 KB and ≤ 1.5x
node-socketio; CPU per authenticated connect ≤ 1 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import queue
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from auth import free_port  # bench/auth.py, next to this file

HERE = Path(__file__).resolve().parent
FILES = HERE / "realtime"
CACHE = HERE / ".cache"
NODE_DIR = CACHE / "node"
PY_DIR = CACHE / "python-socketio"
NPM_PACKAGES = {"ws": "8.23.0", "socket.io": "4.8.4"}
# The same server stack as Parley's own (uvicorn, websockets, uvloop, httptools).
PYPI_PACKAGES = (
    "python-socketio==5.18.1",
    "python-engineio==4.15.1",
    "uvicorn==0.54.0",
    "websockets==17.4",
    "uvloop==0.23.0",
    "httptools==0.9.0",
)
FULL = {"rounds": 3, "subscribers": 1000, "idle": 5000, "seconds": 10.0}
QUICK = {"rounds": 1, "subscribers": 200, "idle": 500, "seconds": 3.0}
SERVERS = ("parley", "node-ws", "node-socketio", "python-socketio")
ROOM_SIZE = 100  # members of each room of the idle users
PUBLISHER = "pub"
FANOUT_ROOM = "fanout"
ACK_OK = '"RC":0'
SEED_CONCURRENCY = 8
CLK_TCK = os.sysconf("SC_CLK_TCK")
# What the baselines broadcast besides the marked text: the fields of the message Parley
# delivers for the same send, so that every server writes frames of the same size.
MESSAGE_FIELDS: dict[str, Any] = {
    "mentions": [],
    "_id": "6b0b9f8d65e4f095a6491775",
    "id": "6b0b9f8d65e4f095a6491775",
    "appID": "75e279f1-e1c7-4daa-82d5-202891196d26",
    "__v": 0,
    "sender": {
        "_id": PUBLISHER,
        "id": PUBLISHER,
        "nickname": "Pub",
        "avatarUrl": None,
        "description": None,
        "isRobot": False,
        "lastLoginTimeMS": 0,
        "clientType": "user",
    },
    "messageTime": "2026-11-29T03:44:13.303Z",
    "messageTimeMS": 1795923853303,
    "createdAt": "2026-11-29T03:44:13.303Z",
    "createdAtMS": 1795923853303,
    "updatedAt": "2026-11-29T03:44:13.303Z",
    "updatedAtMS": 1795923853303,
    "seq": 1,
    "pinned": False,
    "isPined": False,
}
TEXT = "hello everyone in the room, a message of a usual length"


# -- installing the baselines ----------------------------------------------------------


def install_baselines(servers: list[str]) -> None:
    """npm packages and a python-socketio venv at pinned versions, once, into bench/.cache."""
    install_npm()  # the load client needs ws, whichever servers run
    if "python-socketio" in servers:
        install_python_socketio()


def install_npm() -> None:
    def installed(name: str) -> str | None:
        meta = NODE_DIR / "node_modules" / name / "package.json"
        return json.loads(meta.read_text())["version"] if meta.exists() else None

    if all(installed(n) == v for n, v in NPM_PACKAGES.items()):
        return
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    print(f"installing {', '.join(f'{n}@{v}' for n, v in NPM_PACKAGES.items())} (npm)")
    specs = [f"{n}@{v}" for n, v in NPM_PACKAGES.items()]
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR), *specs],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def install_python_socketio() -> None:
    marker = PY_DIR / "installed.txt"
    wanted = "\n".join(PYPI_PACKAGES)
    if marker.exists() and marker.read_text() == wanted:
        return
    print(f"installing {', '.join(PYPI_PACKAGES)} (pip, into {PY_DIR})")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PY_DIR)], check=True)
    subprocess.run(
        [str(PY_DIR / "bin" / "pip"), "install", "--quiet", *PYPI_PACKAGES],
        check=True,
    )
    marker.write_text(wanted)


# -- processes -------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its descendants (every thread included)."""
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of ``pid`` and its descendants: time in the process's own code and
    in the kernel on its behalf (on loopback, the receiving side's TCP work too)."""
    user = system = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])  # utime, stime: fields 14 and 15 of /proc/<pid>/stat
        system += int(fields[12])
    return user / CLK_TCK, system / CLK_TCK


def rss_kb(pid: int) -> int:
    total = 0
    for p in process_tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"server did not listen on {port}:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


# -- the servers -----------------------------------------------------------------------


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    mode: str  # "sio" or "ws"
    url: str


@dataclass
class Target:
    """One server under test; ``start`` gives a fresh process each time."""

    name: str
    start: Callable[[], Running]
    # Parley builds the message it delivers from what the publisher sends; the baselines
    # deliver the publisher's object itself, so they are sent one of the same size.
    builds_messages: bool = False


def launch(cmd: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    wait_for_port(port, proc, log)
    return proc


def sio_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"


class Parley:
    """``parley run`` on SQLite in ``data_dir``: keys from its first start, and the same
    secret key at every restart so the tokens stay valid."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.env = dict(
            os.environ,
            PARLEY_DATA_DIR=str(data_dir),
            PARLEY_SECRET_KEY=secrets.token_hex(32),
            PARLEY_LOG_LEVEL="warning",
            PARLEY_DATABASE_URL="",
            PARLEY_API_KEY_RATE_LIMIT="10000000",  # seeding makes thousands of calls
        )
        self.log = data_dir.parent / "parley.log"
        self.keys: dict[str, str] = {}

    def start(self) -> Running:
        port = free_port()
        cmd = [sys.executable, "-m", "parley", "run", "--port", str(port)]
        proc = launch(cmd, self.env, port, self.log)
        if not self.keys:
            printed = self.log.read_text()
            self.keys = {
                "apiKey": _after(printed, "API Key"),
                "clientKey": _after(printed, "Client Key"),
            }
        return Running(proc, port, "sio", sio_url(port))


def _after(text: str, label: str) -> str:
    for line in text.splitlines():
        if line.strip().startswith(label):
            return line.split(":", 1)[1].strip()
    raise SystemExit(f"no {label} in the server's first output:\n{text[-2000:]}")


def baseline_targets(users_file: Path, client_key: str, logs: Path) -> dict[str, Target]:
    node_env = dict(os.environ, NODE_PATH=str(NODE_DIR / "node_modules"))

    def node(script: str, mode: str, url: Callable[[int], str]) -> Callable[[], Running]:
        def start() -> Running:
            port = free_port()
            cmd = ["node", str(FILES / script), str(port), str(users_file), client_key]
            return Running(
                launch(cmd, node_env, port, logs / f"{script}.log"), port, mode, url(port)
            )

        return start

    def python_socketio() -> Running:
        port = free_port()
        script = FILES / "socketio_server.py"
        cmd = [str(PY_DIR / "bin" / "python"), str(script), str(port), str(users_file), client_key]
        proc = launch(cmd, dict(os.environ), port, logs / "python-socketio.log")
        return Running(proc, port, "sio", sio_url(port))

    return {
        "node-ws": Target("node-ws", node("ws-server.js", "ws", lambda p: f"ws://127.0.0.1:{p}/")),
        "node-socketio": Target("node-socketio", node("socketio-server.js", "sio", sio_url)),
        "python-socketio": Target("python-socketio", python_socketio),
    }


# -- seeding ---------------------------------------------------------------------------


@dataclass
class Plan:
    """Who connects where: tokens by user, and the rooms of each user."""

    idle: list[str]  # user ids of the idle sockets
    subscribers: list[str]
    tokens: dict[str, str] = field(default_factory=dict)
    rooms: dict[str, list[str]] = field(default_factory=dict)  # room id -> members

    @staticmethod
    def make(idle: int, subscribers: int) -> Plan:
        plan = Plan([f"u{i}" for i in range(idle)], [f"f{i}" for i in range(subscribers)])
        # Each idle user in exactly two rooms of ROOM_SIZE: its block of ROOM_SIZE
        # consecutive users, and the users of its residue modulo the number of blocks.
        blocks = max(1, -(-idle // ROOM_SIZE))
        for b in range(blocks):
            plan.rooms[f"block-{b}"] = plan.idle[b * ROOM_SIZE : (b + 1) * ROOM_SIZE]
            plan.rooms[f"stripe-{b}"] = plan.idle[b::blocks]
        plan.rooms[FANOUT_ROOM] = [PUBLISHER, *plan.subscribers]
        return plan

    def users(self) -> list[str]:
        return [*self.idle, *self.subscribers, PUBLISHER]

    def rooms_by_token(self) -> dict[str, list[str]]:
        by_user: dict[str, list[str]] = {}
        for room, members in self.rooms.items():
            for user in members:
                by_user.setdefault(user, []).append(room)
        return {self.tokens[u]: by_user.get(u, []) for u in self.users()}


async def seed(base: str, api_key: str, plan: Plan) -> None:
    """Users with their tokens, then the rooms, through the API (API Key)."""
    headers = {"IM-API-KEY": api_key}
    limits = httpx.Limits(max_connections=SEED_CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as api:
        gate = asyncio.Semaphore(SEED_CONCURRENCY)

        async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            async with gate:
                response = await api.post(path, json=body)
            if response.status_code != 200:
                raise SystemExit(f"seeding: {path} → {response.status_code} {response.text[:300]}")
            result: dict[str, Any] = response.json()["result"]
            return result

        async def user(user_id: str) -> None:
            body = {"_id": user_id, "nickname": user_id.title(), "issueAccessToken": True}
            plan.tokens[user_id] = str((await post("/admin/clients", body))["token"])

        async def room(room_id: str, members: list[str]) -> None:
            first, rest = members[:1000], members[1000:]  # at most 1,000 a request
            await post("/rooms", {"_id": room_id, "name": room_id, "members": first})
            for at in range(0, len(rest), 1000):
                await post(f"/rooms/{room_id}/members", {"invitees": rest[at : at + 1000]})

        await asyncio.gather(*(user(u) for u in plan.users()))
        await asyncio.gather(*(room(r, m) for r, m in plan.rooms.items()))


# -- the load clients ------------------------------------------------------------------


class Client:
    """One Node load process (bench/realtime/client.js) and its JSON-line conversation."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        path = workdir / f"client-{secrets.token_hex(4)}.json"
        path.write_text(json.dumps(config))
        self.log = path.with_suffix(".log")
        env = dict(os.environ, NODE_PATH=str(NODE_DIR / "node_modules"))
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                ["node", str(FILES / "client.js"), str(path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                text=True,
            )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, cmd: str, **params: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **params}) + "\n")
        self.proc.stdin.flush()

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise SystemExit(f"load client: no {event!r} within {timeout:g} s") from None
        if line is None:
            raise SystemExit(f"load client exited:\n{self.log.read_text()[-3000:]}")
        answer: dict[str, Any] = json.loads(line)
        if answer.get("event") != event:
            raise SystemExit(f"load client: {event!r} expected, got {line[:300]}")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            with _quiet():
                self.send("close")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], OSError)  # type: ignore[arg-type]


def split(items: list[str], parts: int) -> list[list[str]]:
    return [items[i::parts] for i in range(parts)]


class Load:
    """Several client processes acting as one: subscribers split evenly, the publisher in
    the first."""

    def __init__(
        self,
        server: Running,
        client_key: str,
        tokens: list[str],
        procs: int,
        deflate: bool,
        workdir: Path,
        publisher: dict[str, Any] | None = None,
        concurrency: int = 50,
    ) -> None:
        self.mode = server.mode
        self.clients = []
        for i, part in enumerate(split(tokens, procs)):
            config = {
                "mode": server.mode,
                "url": server.url,
                "clientKey": client_key,
                "tokens": part,
                "concurrency": max(1, concurrency // procs),
                "deflate": deflate,
                "publisher": publisher if i == 0 else None,
                "ackOk": ACK_OK,
            }
            self.clients.append(Client(config, workdir))

    @property
    def pids(self) -> list[int]:
        return [c.proc.pid for c in self.clients]

    def all(self, cmd: str, event: str, timeout: float, **params: Any) -> list[dict[str, Any]]:
        for c in self.clients:
            c.send(cmd, **params)
        return [c.expect(event, timeout) for c in self.clients]

    def connect(self, timeout: float) -> bool:
        """Open every socket; whether the server took permessage-deflate."""
        answers = self.all("connect", "connected", timeout)
        failed = sum(a["failed"] for a in answers)
        if failed:
            errors = [e for a in answers for e in a["errors"]]
            raise SystemExit(f"{failed} sockets failed to connect, e.g. {errors[:3]}")
        return "permessage-deflate" in answers[0]["extensions"]

    def close(self) -> None:
        for c in self.clients:
            c.close()


# -- the measurements ------------------------------------------------------------------


def client_cpu(load: Load) -> float:
    return sum(cpu_seconds(p) for p in load.pids)


def settled_rss(pid: int, at_least: float = 2.0, at_most: float = 20.0) -> int:
    """RSS once it has stopped moving (< 0.5% over a second), after at least ``at_least``
    seconds of idleness."""
    time.sleep(at_least)
    previous = rss_kb(pid)
    deadline = time.monotonic() + at_most
    while time.monotonic() < deadline:
        time.sleep(1)
        current = rss_kb(pid)
        if abs(current - previous) <= previous * 0.005:
            return current
        previous = current
    return previous


def measure_connect(
    target: Target, plan: Plan, client_key: str, args: argparse.Namespace, workdir: Path
) -> dict[str, float]:
    """Connect ``--idle`` sockets: CPU per connect, then settled RSS per socket."""
    server = target.start()
    try:
        # Warm-up: the first connects pay for imports, JIT and caches of the server.
        warm = Load(
            server, client_key, _tokens(plan, plan.subscribers[:100]), 1, args.deflate, workdir
        )
        warm.connect(60)
        warm.close()
        time.sleep(0.5)
        load = Load(
            server,
            client_key,
            _tokens(plan, plan.idle),
            args.client_procs,
            args.deflate,
            workdir,
            concurrency=args.concurrency,
        )
        try:
            rss0 = settled_rss(server.proc.pid, at_least=0.5, at_most=5)
            cpu0, ccpu0, t0 = cpu_seconds(server.proc.pid), client_cpu(load), time.monotonic()
            with _profile(args, target.name, "connect", server.proc.pid):
                load.connect(600)
            cpu1, ccpu1, t1 = cpu_seconds(server.proc.pid), client_cpu(load), time.monotonic()
            rss1 = settled_rss(server.proc.pid)
        finally:
            load.close()
    finally:
        stop(server.proc)
    n = len(plan.idle)
    return {
        "connect_ms": (cpu1 - cpu0) * 1000 / n,
        "connect_rate": n / (t1 - t0),
        "connect_server_cpu": (cpu1 - cpu0) / (t1 - t0),
        "connect_client_cpu": (ccpu1 - ccpu0) / (t1 - t0),
        "rss_before_mb": rss0 / 1024,
        "rss_after_mb": rss1 / 1024,
        "kb_per_socket": (rss1 - rss0) / n,
    }


def measure_fanout(
    target: Target, plan: Plan, client_key: str, args: argparse.Namespace, workdir: Path
) -> dict[str, float]:
    """Publish into the room of ``--subscribers``; CPU per delivered frame and latency."""
    server = target.start()
    body: dict[str, Any] = {"messageType": "text", "message": TEXT}
    if not target.builds_messages:
        body = {**MESSAGE_FIELDS, **body}
    publisher = {"token": plan.tokens[PUBLISHER], "room": FANOUT_ROOM, "body": body}
    subs = len(plan.subscribers)
    try:
        load = Load(
            server,
            client_key,
            _tokens(plan, plan.subscribers),
            args.client_procs,
            args.deflate,
            workdir,
            publisher,
        )
        try:
            deflate = load.connect(300)
            warm = max(1, int(args.rate))  # a second of messages, not counted
            _publish(load, 0, warm, args.rate, args.drain)
            count = max(1, round(args.rate * args.seconds))
            (user0, sys0), ccpu0, t0 = (
                cpu_split(server.proc.pid),
                client_cpu(load),
                time.monotonic(),
            )
            with _profile(args, target.name, "fanout", server.proc.pid):
                sent, counts, last, size, acked = _publish(load, warm, count, args.rate, args.drain)
            (user1, sys1), ccpu1, t1 = (
                cpu_split(server.proc.pid),
                client_cpu(load),
                time.monotonic(),
            )
        finally:
            load.close()
    finally:
        stop(server.proc)
    delivered = sum(counts)
    # A message some subscriber never got has no last arrival: its latency is infinite.
    latencies = sorted(
        (last[k] - sent[k]) / 1000 if counts[k] >= subs else math.inf for k in range(count)
    )
    cpu0, cpu1 = user0 + sys0, user1 + sys1
    return {
        "us_per_frame": (cpu1 - cpu0) * 1e6 / max(1, delivered),
        "us_user_per_frame": (user1 - user0) * 1e6 / max(1, delivered),
        "us_kernel_per_frame": (sys1 - sys0) * 1e6 / max(1, delivered),
        "delivered": delivered / (count * subs),
        "p50_ms": _percentile(latencies, 0.5),
        "p99_ms": _percentile(latencies, 0.99),
        "server_cpu": (cpu1 - cpu0) / (t1 - t0),
        "client_cpu": (ccpu1 - ccpu0) / (t1 - t0),
        "frame_bytes": size,
        "deflate": float(deflate),
        "acked": acked,
    }


def _tokens(plan: Plan, users: list[str]) -> list[str]:
    return [plan.tokens[u] for u in users]


def _publish(
    load: Load, first: int, count: int, rate: float, drain: float
) -> tuple[list[float], list[int], list[float], int, float]:
    """Open the receive window, publish ``count`` messages, wait for them (at most
    ``drain`` seconds after the last ack, or after the acks stopped coming); per message:
    sent at, received by how many, last received at (µs, one clock for every process);
    the largest frame; the share of sends acknowledged (1 where the server has no acks)."""
    load.all("window", "window", 30, **{"from": first, "count": count})
    head = load.clients[0]
    head.send("publish", **{"from": first, "count": count, "rate": rate})
    published = head.expect("published", 60 + count / rate)
    if published["errors"]:
        raise SystemExit(f"publishing: refused, e.g. {published['errors'][:2]}")
    answers = load.all(
        "collect", "collected", drain + 30, **{"from": first, "count": count, "within": drain}
    )
    counts = [sum(a["counts"][k] for a in answers) for k in range(count)]
    last = [max(a["last"][k] for a in answers) for k in range(count)]
    size = max(a["bytes"] for a in answers)
    acked = published["acks"] / count if load.mode == "sio" else 1.0
    return published["sent"], counts, last, size, acked


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class _profile:
    """py-spy on Parley during a measured window, when --profile is given: collapsed
    stacks (flamegraph.pl or speedscope read them). Sampling slows the server: the
    numbers of a profiled run are not the ones to compare."""

    def __init__(self, args: argparse.Namespace, name: str, phase: str, pid: int) -> None:
        self.cmd: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        if not args.profile or name != "parley" or phase in args.profiled:
            return
        args.profiled.add(phase)
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        out = Path(args.profile) / f"parley-{phase}.txt"
        self.cmd = [args.py_spy, "record", "--nonblocking", "--rate", "200", "--pid", str(pid)]
        self.cmd += ["--format", "raw", "-o", str(out)]

    def __enter__(self) -> None:
        if self.cmd:
            self.proc = subprocess.Popen(
                self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(1)  # py-spy attaches

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output and exits
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- the report ------------------------------------------------------------------------


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def ratio(value: float, base: float | None) -> str:
    if base is None or not math.isfinite(base) or not math.isfinite(value) or base == 0:
        return "n/a"
    return f"{value / base:.2f}"


def number(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}" if math.isfinite(value) else "∞"


def table(head: list[str], rows: list[list[str]]) -> None:
    """A markdown table: the first column left-aligned, the others right-aligned."""
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for row in rows:
        print("| " + " | ".join(row) + " |")


FANOUT_HEAD = [
    "server",
    "µs CPU/frame",
    "÷ node-ws",
    "÷ node-socketio",
    "user µs",
    "kernel µs",
    "delivered",
    "p50 ms",
    "p99 ms",
    "p99 ÷ node-socketio",
    "server CPU",
    "client CPU",
    "frame B",
    "deflate",
]
MEMORY_HEAD = [
    "server",
    "RSS before MB",
    "RSS after MB",
    "KB/socket",
    "÷ node-ws",
    "÷ node-socketio",
]
CONNECT_HEAD = [
    "server",
    "ms CPU/connect",
    "÷ node-ws",
    "÷ node-socketio",
    "connects/s",
    "server CPU",
    "client CPU",
]


def report(results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    ws, sio = results.get("node-ws"), results.get("node-socketio")

    def vs(m: dict[str, float], key: str) -> list[str]:
        return [ratio(m[key], base[key] if base else None) for base in (ws, sio)]

    def fanout_row(name: str, m: dict[str, float]) -> list[str]:
        return [
            name,
            number(m["us_per_frame"], 1),
            *vs(m, "us_per_frame"),
            number(m["us_user_per_frame"], 1),
            number(m["us_kernel_per_frame"], 1),
            f"{m['delivered']:.2%}",
            number(m["p50_ms"], 1),
            number(m["p99_ms"], 1),
            ratio(m["p99_ms"], sio["p99_ms"] if sio else None),
            f"{m['server_cpu']:.0%}",
            f"{m['client_cpu']:.0%}",
            f"{m['frame_bytes']:.0f}",
            "yes" if m["deflate"] else "no",
        ]

    def memory_row(name: str, m: dict[str, float]) -> list[str]:
        before, after = f"{m['rss_before_mb']:.1f}", f"{m['rss_after_mb']:.1f}"
        return [name, before, after, f"{m['kb_per_socket']:.1f}", *vs(m, "kb_per_socket")]

    def connect_row(name: str, m: dict[str, float]) -> list[str]:
        return [
            name,
            f"{m['connect_ms']:.3f}",
            *vs(m, "connect_ms"),
            f"{m['connect_rate']:,.0f}",
            f"{m['connect_server_cpu']:.0%}",
            f"{m['connect_client_cpu']:.0%}",
        ]

    offered = args.rate * args.subscribers
    print(
        f"\n### Fan-out: one room of {args.subscribers:,} subscribers, {args.rate:g} msg/s "
        f"({offered:,.0f} frames/s offered) for {args.seconds:g} s\n\n"
        "The publisher sends `chat message` over its own socket, with ack (Parley stores "
        "each message in SQLite before it fans out). CPU/frame: server CPU over the window "
        "÷ frames delivered to subscribers, split into user and kernel time (on loopback "
        "the kernel time includes the receiving side's TCP work). Latency: publish → last "
        "subscriber, per message (∞: not every subscriber got it).\n"
    )
    table(FANOUT_HEAD, [fanout_row(name, m) for name, m in results.items()])
    for name, m in results.items():
        if m["acked"] < 1:
            print(f"\n{name}: only {m['acked']:.0%} of the sends were acknowledged in time.")
    print(
        f"\n### Memory: {args.idle:,} idle authenticated sockets, each user in 2 rooms "
        f"of {ROOM_SIZE}\n\nRSS of the server before the sockets connect, and once they "
        "are all connected and RSS has settled.\n"
    )
    table(MEMORY_HEAD, [memory_row(name, m) for name, m in results.items()])
    print(
        f"\n### Connect: {args.idle:,} sockets, {args.concurrency} connecting at a time\n\n"
        "Server CPU from the first connect to the last CONNECT answer, per socket: "
        "WebSocket upgrade, Engine.IO open, Socket.IO CONNECT with `auth: {clientKey, "
        "token}` checked, the user's rooms joined (node-ws: upgrade with the token in the "
        "query, rooms joined).\n"
    )
    table(CONNECT_HEAD, [connect_row(name, m) for name, m in results.items()])
    if "parley" in results:
        print_targets(results["parley"], ws, sio)


def print_targets(
    p: dict[str, float], ws: dict[str, float] | None, sio: dict[str, float] | None
) -> None:
    checks: list[tuple[str, float, float]] = []  # (what, value, at most)
    if ws:
        checks.append(("fan-out CPU/frame ÷ node-ws", p["us_per_frame"] / ws["us_per_frame"], 1.5))
    if sio:
        checks += [
            ("fan-out CPU/frame ÷ node-socketio", p["us_per_frame"] / sio["us_per_frame"], 1.0),
            (
                "p99 publish → last subscriber ÷ node-socketio",
                _div(p["p99_ms"], sio["p99_ms"]),
                1.5,
            ),
            ("RSS/socket ÷ node-socketio", p["kb_per_socket"] / sio["kb_per_socket"], 1.5),
        ]
    checks += [
        ("RSS/socket, KB", p["kb_per_socket"], 30.0),
        ("CPU/connect, ms", p["connect_ms"], 1.0),
    ]
    print("\n### Targets (Parley)\n")
    ok = p["delivered"] >= 1.0
    print(f"- {'✅' if ok else '❌'} delivered {p['delivered']:.2%} (target 100%)")
    for what, value, limit in checks:
        print(
            f"- {'✅' if value <= limit else '❌'} {what} = {number(value, 2)} (target ≤ {limit:g})"
        )


def _div(a: float, b: float) -> float:
    return a / b if b and math.isfinite(b) else math.inf


# -- main ------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small numbers, one round")
    parser.add_argument("--rounds", type=int, help="default 3 (quick: 1)")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--subscribers", type=int, help="of the fan-out room: 1000 (quick: 200)")
    parser.add_argument("--rate", type=float, default=20, help="messages/s into the room")
    parser.add_argument("--seconds", type=float, help="of publishing, measured: 10 (quick: 3)")
    parser.add_argument("--drain", type=float, default=15, help="s to wait for stragglers")
    parser.add_argument(
        "--idle", type=int, help="idle sockets (memory, connect): 5000 (quick: 500)"
    )
    parser.add_argument("--concurrency", type=int, default=50, help="connects in flight")
    parser.add_argument("--client-procs", type=int, default=1, help="Node load processes")
    parser.add_argument(
        "--no-deflate",
        dest="deflate",
        action="store_false",
        help="clients do not offer permessage-deflate (browsers do)",
    )
    parser.add_argument("--profile", default="", help="py-spy Parley into this directory")
    parser.add_argument(
        "--py-spy", default=shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    for name, value in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.profiled = set()
    args.servers = [s for s in args.servers.split(",") if s]
    unknown = set(args.servers) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    return args


def main() -> None:
    args = parse_args()
    install_baselines(args.servers)
    plan = Plan.make(args.idle, args.subscribers)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="parley-realtime-") as tmp:
        work = Path(tmp)
        (work / "data").mkdir()
        parley = Parley(work / "data")
        started = time.monotonic()
        first = parley.start()
        try:
            asyncio.run(seed(f"http://127.0.0.1:{first.port}", parley.keys["apiKey"], plan))
        finally:
            stop(first.proc)
        seeding = time.monotonic() - started
        users_file = work / "users.json"
        users_file.write_text(json.dumps(plan.rooms_by_token()))
        client_key = parley.keys["clientKey"]
        targets = {"parley": Target("parley", parley.start, builds_messages=True)}
        targets.update(baseline_targets(users_file, client_key, work))
        chosen = [targets[name] for name in args.servers]

        runs: dict[str, list[dict[str, float]]] = {t.name: [] for t in chosen}
        for round_no in range(args.rounds):
            shift = round_no % len(chosen)
            for target in chosen[shift:] + chosen[:shift]:
                print(f"round {round_no + 1}: {target.name}", file=sys.stderr, flush=True)
                fan = measure_fanout(target, plan, client_key, args, work)
                con = measure_connect(target, plan, client_key, args, work)
                runs[target.name].append({**fan, **con})
    results = {name: medians(r) for name, r in runs.items()}
    deflate = "offer permessage-deflate" if args.deflate else "do not offer permessage-deflate"
    print(
        f"\n## Real-time gateway — medians of {args.rounds} round(s); "
        f"{os.cpu_count()} cores, load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after; {args.client_procs} Node load process(es) that "
        f"{deflate}; Parley on SQLite, {len(plan.users()):,} users seeded in {seeding:.0f} s"
    )
    report(results, args)


if __name__ == "__main__":
    main()
