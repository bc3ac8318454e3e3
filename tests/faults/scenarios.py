"""The fault scenarios, each a function that runs it end to end and returns its
:class:`Result`. ``full=False`` is the short form CI runs; ``full=True`` the full length
(``python -m tests.faults``). They assert nothing themselves: the tests and the runner
judge the result.

Numbers of one scenario: the first line of each docstring says what fault it injects.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as open_websocket

from parley.client import AdminClient
from parley.gateway.protocol import CONNECT, EIO_MESSAGE, decode_engine, decode_socket, socket_frame
from tests.cluster_harness import Cluster, ClusterApp, cluster_env, running
from tests.faults.checker import Verdict
from tests.faults.harness import (
    Load,
    PrivatePostgres,
    PrivateRedis,
    Workload,
    balanced,
    cpu_seconds,
    percentile,
    rss_bytes,
)


@dataclass
class Result:
    name: str
    verdict: Verdict
    facts: dict[str, Any] = field(default_factory=dict)  # scenario-specific measurements
    answers: dict[str, int] = field(default_factory=dict)  # senders' answers by status/code
    logs: str = ""  # the nodes' logs, to read when it failed

    def columns(self) -> dict[str, str]:
        return {key: _short(value) for key, value in self.facts.items()}

    def assert_nothing_lost_doubled_or_let_in(self, at_least_acked: int) -> None:
        """The queue checker's promise, with what to read when it was broken."""
        verdict = self.verdict
        assert verdict.acked >= at_least_acked, self.answers
        lost = (verdict.lost, verdict.duplicated, verdict.unexpected)
        assert lost == (0, 0, 0), (verdict, self.answers, self.logs[-4000:])


def _short(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _cluster(tmp: Path, database_url: str, redis_url: str) -> Cluster:
    env = cluster_env(redis_url, tmp)
    env["PARLEY_DATABASE_URL"] = database_url or f"sqlite+aiosqlite:///{tmp / 'parley.db'}"
    return Cluster(env, tmp)


async def _wait_healthy(cluster: Cluster, node: Any) -> None:
    await asyncio.to_thread(cluster.wait_healthy, node, 60)


# -- 5. the embedded default: kill -9 of the only node ---------------------------------


def sqlite_node_killed(tmp: Path, *, full: bool = False) -> Result:
    """``kill -9`` of the embedded default's only node (SQLite file, in-memory broker)
    under load, restarted on the same data dir; clients reconnect and resume."""
    kills = 5 if full else 1
    load = Load(senders=4, receivers=4, rooms=2, rate=100 if full else 60)
    cluster = _cluster(tmp, "", "")
    with running(cluster, ("node",)):
        node = cluster.nodes[0]
        workload = Workload(node.url, cluster.quick_app(), load)
        workload.prepare()

        async def drive() -> tuple[Verdict, float]:
            await workload.start()
            started = time.monotonic()
            for _ in range(kills):
                await asyncio.sleep(3.0 if full else 1.5)
                cluster.kill(node)
                await asyncio.sleep(0.3)  # the clients notice and start retrying
                cluster.restart(node)
                await _wait_healthy(cluster, node)
            await asyncio.sleep(3.0 if full else 1.5)
            sent_for = time.monotonic() - started
            return await workload.finish(), len(workload.record.acked) / sent_for

        verdict, achieved = asyncio.run(drive())
        return Result(
            "5 sqlite kill -9",
            verdict,
            {"kills": kills, "msg/s": round(achieved), "reconnects": workload.record.reconnects},
            dict(workload.record.answers),
            cluster.logs(),
        )


# -- 1. kill -9 of one of two nodes behind a load balancer --------------------------------


def node_killed(tmp: Path, database_url: str, redis_url: str, *, full: bool = False) -> Result:
    """``kill -9`` of one of two nodes (PostgreSQL + Redis) behind a TCP load balancer,
    a cycle at a time, the other node each cycle; the killed one is restarted for the
    next. Clients are cut, reconnect through the balancer to the survivor and resume."""
    cycles = 20 if full else 1
    rate = 200 if full else 60
    # Senders wait for each ack: enough of them that a slow answer does not cap the rate.
    load = Load(senders=rate // 8, receivers=4, rooms=4, rate=rate)
    cluster = _cluster(tmp, database_url, redis_url)
    with running(cluster, ("node1", "node2")):
        app = cluster.quick_app()

        async def drive() -> tuple[Verdict, Workload, dict[str, Any]]:
            async with balanced([n.url for n in cluster.nodes]) as lb:
                workload = Workload(lb.url, app, load)
                await asyncio.to_thread(workload.prepare)
                await workload.start()
                started = time.monotonic()
                pause = 1.5 if full else 1.0
                for cycle in range(cycles):
                    victim = cluster.nodes[cycle % 2]
                    await asyncio.sleep(pause)
                    cluster.kill(victim)
                    await asyncio.sleep(pause)  # load carries on against the survivor alone
                    if cycle + 1 < cycles:  # back for the next cycle, when it kills the other
                        cluster.restart(victim)
                        await _wait_healthy(cluster, victim)
                await asyncio.sleep(pause)
                sent_for = time.monotonic() - started
                verdict = await workload.finish()
                achieved = len(workload.record.acked) / sent_for
                facts = {
                    "cycles": cycles,
                    "msg/s": round(achieved),
                    "reconnects": workload.record.reconnects,
                    "connections by node": dict(lb.connections),
                }
                return verdict, workload, facts

        verdict, workload, facts = asyncio.run(drive())
        return Result(
            "1 node kill -9 (pg+redis)",
            verdict,
            facts,
            dict(workload.record.answers),
            cluster.logs(),
        )


# -- 2. Redis killed and restarted --------------------------------------------------------


def redis_killed(tmp: Path, database_url: str, *, full: bool = False) -> Result:
    """A private ``redis-server`` (the broker of two nodes) killed mid-load and started
    again after ``outage`` seconds. Live fan-out must come back within 5 s of the restart;
    what the broker lost while down reaches the receivers all the same (resume)."""
    outage = 3.0 if full else 1.0
    after = 8.0 if full else 5.5
    load = Load(senders=4, receivers=4, rooms=2, rate=100 if full else 60)
    redis = PrivateRedis(tmp)
    redis.start()
    cluster = _cluster(tmp, database_url, redis.url)
    try:
        with running(cluster, ("node1", "node2")):
            app = cluster.quick_app()

            async def drive() -> tuple[Verdict, Workload, float]:
                async with balanced([n.url for n in cluster.nodes]) as lb:
                    workload = Workload(lb.url, app, load)
                    await asyncio.to_thread(workload.prepare)
                    await workload.start()
                    await asyncio.sleep(2.0 if full else 1.0)
                    redis.kill()
                    await asyncio.sleep(outage)
                    await asyncio.to_thread(redis.start)
                    restarted = time.monotonic()
                    await asyncio.sleep(after)
                    verdict = await workload.finish()
                    return verdict, workload, restarted

            verdict, workload, restarted = asyncio.run(drive())
            resumed = live_again_after(workload, restarted)
            return Result(
                "2 redis kill -9",
                verdict,
                {"outage s": outage, "fan-out back s": resumed},
                dict(workload.record.answers),
                cluster.logs(),
            )
    finally:
        redis.kill()


def live_again_after(workload: Workload, since: float, live_within: float = 1.0) -> float:
    """Seconds from ``since`` to the first message from which on every message first
    tried after ``since`` reached every receiver within ``live_within`` seconds (live
    fan-out, not a resume after the fact). ``inf`` if it never came back."""
    record = workload.record
    late: list[float] = []
    tried_after = [start for start in record.attempted.values() if start >= since]
    if not tried_after:
        return float("inf")
    for cmid, start in record.attempted.items():
        if start < since:
            continue
        arrivals = [d.at for ds in record.received.values() for d in ds if d.cmid == cmid]
        if len(arrivals) < len(record.received) or max(arrivals) - start > live_within:
            late.append(start)
    if not late:
        return 0.0
    if max(late) >= max(tried_after):
        return float("inf")  # still late at the end
    return max(late) - since


# -- 3. PostgreSQL stopped and started ----------------------------------------------------


def postgres_stopped(tmp: Path, *, full: bool = False) -> Result:
    """A private PostgreSQL under one node, stopped with ``-m immediate`` mid-load and
    started again: sends meanwhile get a retryable 503 (no ack), the node stays up, and
    once the database is back nothing acked is missing."""
    outage = 5.0 if full else 1.5
    load = Load(senders=4, receivers=4, rooms=2, rate=100 if full else 60)
    pg = PrivatePostgres()
    try:
        pg.init()
        pg.start()
        cluster = _cluster(tmp, pg.url, "")
        with running(cluster, ("node",)):
            node = cluster.nodes[0]
            app = cluster.quick_app()
            workload = Workload(node.url, app, load)
            workload.prepare()

            async def drive() -> dict[str, Any]:
                await workload.start()
                await asyncio.sleep(2.0 if full else 1.0)
                await asyncio.to_thread(pg.stop)
                down = time.monotonic()
                probe = await _probe_send(workload)
                health = await _health_during(node.url, outage)
                alive = node.process.poll() is None
                acked_during = sum(
                    1 for at in list(workload.record.acked_at.values()) if at > down + 0.5
                )
                await asyncio.to_thread(pg.start)
                await asyncio.sleep(3.0 if full else 1.5)
                verdict = await workload.finish()
                return {
                    "verdict": verdict,
                    "alive": alive and node.process.poll() is None,
                    "health": health,
                    "acked during outage": acked_during,
                    **probe,
                }

            facts = asyncio.run(drive())
            verdict = facts.pop("verdict")
            answers = dict(workload.record.answers)
            facts["503s"] = answers.get("503 SERVICE_UNAVAILABLE", 0)
            facts["refused"] = len(workload.record.refused)
            return Result("3 postgres stop", verdict, facts, answers, cluster.logs())
    finally:
        pg.remove()


async def _probe_send(workload: Workload) -> dict[str, Any]:
    """One REST send while the database is down, read raw: its status, error code,
    ``Retry-After`` and how long the answer took. Its id is the workload's but it is
    recorded as neither tried nor acked: stored all the same, it would count as
    unexpected."""
    user, room = workload.senders[0], workload.rooms[0]
    headers = {"IM-CLIENT-KEY": workload.app.client_key, "IM-Authorization": workload.tokens[user]}
    body = {"message": "probe", "clientMessageId": f"{workload.prefix}-probe"}
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=workload.url, headers=headers, timeout=15) as http:
        response = await http.post(f"/rooms/{room}/message", json=body)
    error = response.json().get("error") if response.content else None
    return {
        "probe": f"{response.status_code} {error}",
        "probe retry-after": response.headers.get("Retry-After"),
        "probe s": time.monotonic() - started,
    }


async def _health_during(url: str, seconds: float) -> str:
    """/health polled for ``seconds``: "ok" if it always answered 200, else what it did."""
    seen: set[str] = set()
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=2) as http:
        while time.monotonic() < deadline:
            try:
                seen.add(str((await http.get("/health")).status_code))
            except httpx.HTTPError as exc:
                seen.add(exc.__class__.__name__)
            await asyncio.sleep(0.2)
    return "ok" if seen == {"200"} else ",".join(sorted(seen))


# -- 4. slow consumers --------------------------------------------------------------------

# The node's resident memory may not pass this while 500 sockets stall: its queues hold
# shared frames (one string per message, referenced by every queue), not copies.
RSS_BOUND_MB = 300


def slow_consumers(tmp: Path, *, full: bool = False) -> Result:
    """500 sockets that authenticate and then never read, members of the busy rooms.
    The node's memory stays bounded (it drops sockets whose queue is full) and the other
    clients' p99 delivery latency stays within 2x of the same load without them."""
    stalled = 500
    phase = 25.0 if full else 3.0  # full: long enough for stalled queues to fill (20 s)
    load = Load(senders=2, receivers=4, rooms=1, rate=50, padding=2000)
    cluster = _cluster(tmp, "", "")
    with running(cluster, ("node",)):
        node = cluster.nodes[0]
        app = cluster.quick_app()
        slow_users = [f"slow{k}" for k in range(10)]  # 50 sockets each
        tokens = _tokens(node.url, app, slow_users)
        workload = Workload(node.url, app, load)
        workload.prepare(extra_members=slow_users)

        async def drive() -> dict[str, Any]:
            await workload.start()
            await asyncio.sleep(0.5)  # connections warm
            pid = node.process.pid
            base_from, base_cpu = time.monotonic(), cpu_seconds(pid)
            await asyncio.sleep(phase)
            base_to = time.monotonic()
            base_cpu = cpu_seconds(pid) - base_cpu
            rss_before = rss_bytes(node.process.pid)
            async with _stalled_sockets(node.url, app, tokens, stalled) as opened:
                peak = rss_before
                # The first second fills the stalled sockets' kernel buffers (a one-off
                # burst of writes); what is judged is the steady state after it.
                await asyncio.sleep(1.0)
                slow_from, slow_cpu = time.monotonic(), cpu_seconds(pid)
                while time.monotonic() < slow_from + phase:
                    peak = max(peak, rss_bytes(pid))
                    await asyncio.sleep(0.2)
                slow_to = time.monotonic()
                slow_cpu = cpu_seconds(pid) - slow_cpu
            verdict = await workload.finish()
            base = percentile(workload.record.latencies(base_from, base_to), 0.99)
            slow = percentile(workload.record.latencies(slow_from, slow_to), 0.99)
            return {
                "verdict": verdict,
                "stalled": opened,
                "p99 base ms": base * 1000,
                "p99 stalled ms": slow * 1000,
                "node cpu base %": 100 * base_cpu / (base_to - base_from),
                "node cpu stalled %": 100 * slow_cpu / (slow_to - slow_from),
                "rss before MB": rss_before / 2**20,
                "rss peak MB": peak / 2**20,
            }

        facts = asyncio.run(drive())
        verdict = facts.pop("verdict")
        return Result(
            "4 slow consumers", verdict, facts, dict(workload.record.answers), cluster.logs()
        )


def _tokens(url: str, app: ClusterApp, users: list[str]) -> list[str]:
    admin = AdminClient(url, app.api_key)
    with admin:
        return [admin.create_user(user, issue_token=True)["token"] for user in users]


@contextlib.asynccontextmanager
async def _stalled_sockets(url: str, app: ClusterApp, tokens: list[str], count: int) -> Any:
    """``count`` Socket.IO connections spread over ``tokens``, authenticated, then never
    read again: a receive window of a few kilobytes that nothing empties."""
    sockets: list[ClientConnection] = []
    address = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    try:
        for start in range(0, count, 50):  # fifty handshakes at a time
            sockets += await asyncio.gather(
                *(
                    _stalled_socket(address, app, tokens[k % len(tokens)])
                    for k in range(start, min(count, start + 50))
                )
            )
        yield len(sockets)
    finally:
        for ws in sockets:
            ws.transport.abort()


async def _stalled_socket(address: str, app: ClusterApp, token: str) -> ClientConnection:
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    raw.setblocking(False)
    host, port = address.split("//")[1].split("/")[0].split(":")
    await asyncio.get_running_loop().sock_connect(raw, (host, int(port)))
    # max_queue=1: the library itself stops reading after one unread frame.
    ws = await open_websocket(address, sock=raw, max_queue=1, ping_interval=None)
    await ws.recv()  # Engine.IO open
    await ws.send(socket_frame(CONNECT, {"clientKey": app.client_key, "token": token}))
    while True:
        kind, data = decode_engine(str(await ws.recv()))
        if kind == EIO_MESSAGE and decode_socket(data).type == CONNECT:
            return ws
