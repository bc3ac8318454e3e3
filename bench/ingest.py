"""What group commit buys: persisted messages/s and ack latency of ``POST
/rooms/{id}/message`` (Client Key + token) from many concurrent senders, for a server that
stores queued sends in one transaction (the default) against one that stores each message
in its own (``PARLEY_MESSAGE_BATCH_MAX=1``), in the same run.

    python bench/ingest.py [--rooms 50] [--connections 25,50,100,200] [--seconds 5]
                           [--rounds 3] [--database-url URL]

Starts two ``parley run`` servers, one per configuration, each on a fresh data dir (SQLite
unless --database-url) and seeds both alike through the API: ``--rooms`` rooms of 10 members,
every member with a token. Each connection is one sender, a member of its room, sending
back to back (connection i sends into room i mod rooms, so 100 connections over 50 rooms
are two senders a room). Each round measures every concurrency of ``--connections`` on
both servers (their order alternating between rounds); the medians over rounds are
printed, and the concurrency chosen is the one with the most group-commit msg/s whose
median p99 stays within the target. Persisted means
counted in the database: rows before and after each run, set against the acks (every
acknowledged message must be stored, nothing more). At the end every room's sequence
numbers must be gap-free; on SQLite, which indexes message text after the send, the
search backlog must drain after each run and leave every message with text indexed.

The load comes from an asyncio keep-alive loader in this process (one connection per
sender, each with its own room and token, which wrk cannot do without a script); it is
first measured against ``GET /health`` beside ``wrk`` when wrk is installed, to show it is
not what limits the numbers.
Targets: ≥ 2,000 persisted msg/s with p99 ≤ 50 ms, and ≥ 3 times the one-transaction server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from auth import (  # bench/auth.py, next to this file
    free_port,
    measure,
    start_server,
    stop_server,
)

MEMBERS = 10
P99_TARGET_MS = 50.0
RATE_TARGET = 2000.0
RATIO_TARGET = 3.0
SEED_CLIENTS = 4
MAX_ERRORS = 100  # a loader connection stops after this many failed responses
CASES = {"group commit (default)": {}, "one transaction per message": {"MESSAGE_BATCH_MAX": "1"}}


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """asyncio.run on uvloop when it is there (it is, beside uvicorn): a cheaper loader."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


# -- the loader ------------------------------------------------------------------------


async def _drive(port: int, requests: list[bytes], seconds: float) -> dict[str, Any]:
    """One keep-alive connection per request in ``requests``, each sending its request
    back to back until ``seconds`` have passed, then finishing the one in flight.
    Returns acks, acks/s over the time to the last ack, latency percentiles (ms), errors."""
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in requests]
    latencies: list[float] = []
    errors: list[bytes] = []
    length_re = re.compile(rb"content-length:\s*(\d+)", re.I)
    start = time.perf_counter()
    deadline = start + seconds
    last = start

    async def worker(
        request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal last
        while (sent := time.perf_counter()) < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            found = length_re.search(head)
            body = await reader.readexactly(int(found.group(1))) if found else b""
            done = time.perf_counter()
            if head[9:12] != b"200":
                errors.append(head[:12] + b" " + body[:300])
                if len(errors) > MAX_ERRORS:
                    break
                continue
            latencies.append((done - sent) * 1000)
            last = done
        writer.close()

    await asyncio.gather(*(worker(req, r, w) for req, (r, w) in zip(requests, conns, strict=True)))
    latencies.sort()
    n = len(latencies)
    return {
        "acks": n,
        "rps": n / (last - start) if n else 0.0,
        "p50": latencies[n // 2] if n else 0.0,
        "p99": latencies[min(n - 1, int(n * 0.99))] if n else 0.0,
        "errors": errors,
    }


def drive(port: int, requests: list[bytes], seconds: float) -> dict[str, Any]:
    """Run the loader; ``cpu`` is the share of a core it used, to show it had room."""
    wall, cpu = time.perf_counter(), time.process_time()
    result: dict[str, Any] = run_async(_drive(port, requests, seconds))
    result["cpu"] = (time.process_time() - cpu) / (time.perf_counter() - wall)
    if result["errors"]:
        first = result["errors"][0].decode(errors="replace")
        raise SystemExit(f"{len(result['errors'])} failed responses, the first: {first}")
    return result


def post_request(port: int, path: str, headers: dict[str, str], body: bytes) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


# -- the database ----------------------------------------------------------------------


def pg_dsn(url: str) -> str:
    """asyncpg's DSN for a SQLAlchemy URL (postgresql+asyncpg://... → postgresql://...)."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


def db_query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of one read-only query, on the SQLite file or the PostgreSQL database."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1]
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return [tuple(r) for r in conn.execute(sql)]

    async def go() -> list[tuple[Any, ...]]:
        import asyncpg

        conn = await asyncpg.connect(pg_dsn(url))
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    rows: list[tuple[Any, ...]] = asyncio.run(go())
    return rows


def reset_pg(url: str) -> None:
    """Create the database if it is missing and empty its schema public: the server's
    first run needs an empty database."""

    async def go() -> None:
        import asyncpg

        dsn = pg_dsn(url)
        base, name = dsn.rsplit("/", 1)
        admin = await asyncpg.connect(base + "/postgres")
        try:
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        finally:
            await conn.close()

    asyncio.run(go())


def message_count(url: str) -> int:
    return int(db_query(url, "SELECT count(*) FROM messages")[0][0])


def drain_search_backlog(url: str, timeout: float = 30) -> tuple[int, float] | None:
    """SQLite indexes message text after the send (migration 0008): how many messages
    wait for the index when the load stops, and how long the idle server takes to index
    them (seconds). None on PostgreSQL, whose index is kept inside each send's
    transaction."""
    backlog = "SELECT 1 FROM sqlite_master WHERE name = 'message_search_backlog'"
    if not url.startswith("sqlite") or not db_query(url, backlog):
        return None  # PostgreSQL, or a server from before the backlog
    count = "SELECT count(*) FROM message_search_backlog"
    started = time.monotonic()
    waiting = int(db_query(url, count)[0][0])
    while int(db_query(url, count)[0][0]):
        if time.monotonic() - started > timeout:
            raise SystemExit(f"the search backlog did not drain within {timeout:g} s")
        time.sleep(0.002)
    return waiting, time.monotonic() - started


def check_search_index(url: str) -> None:
    """Every message with text is in the full-text index (SQLite, after the drain)."""
    if not url.startswith("sqlite"):
        return
    missing = db_query(
        url,
        "SELECT count(*) FROM messages m WHERE m.search_text IS NOT NULL AND NOT EXISTS"
        " (SELECT 1 FROM message_search_keys k WHERE k.app_id = m.app_id AND k.message_id = m.id)",
    )[0][0]
    if missing:
        raise SystemExit(f"{missing} messages with text are not in the search index")


def check_sequences(url: str) -> None:
    """Every room's messages are numbered 1..n without gaps, n being the room's count."""
    bad = db_query(
        url,
        "SELECT r.id, r.message_count, r.last_seq, count(m.seq), coalesce(max(m.seq), 0)"
        " FROM rooms r LEFT JOIN messages m ON m.app_id = r.app_id AND m.room_id = r.id"
        " GROUP BY r.id, r.message_count, r.last_seq"
        " HAVING count(m.seq) <> r.message_count OR coalesce(max(m.seq), 0) <> r.last_seq"
        " OR count(m.seq) <> coalesce(max(m.seq), 0)",
    )
    if bad:
        raise SystemExit(f"rooms whose sequence numbers have gaps: {bad[:5]}")


# -- one server ------------------------------------------------------------------------


class Server:
    """A running server of one configuration, with its seeded rooms and senders."""

    def __init__(self, data_dir: Path, database_url: str, env: dict[str, str]) -> None:
        self.port = free_port()
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            self.proc, self.keys = start_server(data_dir, self.port, database_url)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.db_url = database_url or f"sqlite+aiosqlite:///{data_dir.resolve()}/parley.db"
        self.log: list[str] = []
        assert self.proc.stdout is not None
        threading.Thread(target=self.log.extend, args=(self.proc.stdout,), daemon=True).start()
        self.base = f"http://127.0.0.1:{self.port}"
        self.senders: list[tuple[str, str]] = []  # (room id, token), 10 per room
        self.rooms = 0

    def seed(self, rooms: int) -> None:
        api_headers = {"IM-API-KEY": self.keys["apiKey"]}

        def make(indices: range) -> list[tuple[int, str, list[str]]]:
            made = []
            with httpx.Client(base_url=self.base, headers=api_headers, timeout=30) as api:
                for i in indices:
                    users = [f"u{i}-{k}" for k in range(MEMBERS)]
                    tokens = []
                    for user in users:
                        created = api.post(
                            "/admin/clients",
                            json={"_id": user, "nickname": user, "issueAccessToken": True},
                        )
                        created.raise_for_status()
                        tokens.append(str(created.json()["result"]["token"]))
                    room = api.post("/rooms", json={"name": f"room {i}", "members": users})
                    if room.status_code != 200:
                        raise SystemExit(f"seeding failed: {room.status_code} {room.text}")
                    made.append((i, str(room.json()["result"]["_id"]), tokens))
            return made

        with ThreadPoolExecutor(SEED_CLIENTS) as pool:
            parts = pool.map(make, [range(w, rooms, SEED_CLIENTS) for w in range(SEED_CLIENTS)])
            made = sorted(x for part in parts for x in part)
        self.senders = [(room_id, token) for _, room_id, tokens in made for token in tokens]
        self.rooms = rooms

    def requests(self, connections: int) -> list[bytes]:
        """Connection i: member i // rooms of room i % rooms."""
        if connections > self.rooms * MEMBERS:
            raise SystemExit(f"at most {self.rooms * MEMBERS} senders: {MEMBERS} a room")
        out = []
        for i in range(connections):
            room_no, member = i % self.rooms, (i // self.rooms) % MEMBERS
            room_id, token = self.senders[room_no * MEMBERS + member]
            body = (
                f'{{"messageType":"text","message":"hello from sender {i} of room {room_no},'
                f' a message of a usual length"}}'
            ).encode()
            headers = {"IM-CLIENT-KEY": self.keys["clientKey"], "IM-Authorization": token}
            out.append(post_request(self.port, f"/rooms/{room_id}/message", headers, body))
        return out

    def run(self, connections: int, seconds: float) -> dict[str, Any]:
        """Send for ``seconds``; the rates are of messages counted in the database."""
        before = message_count(self.db_url)
        result = drive(self.port, self.requests(connections), seconds)
        persisted = message_count(self.db_url) - before
        if persisted != result["acks"]:
            raise SystemExit(f"{result['acks']} acks but {persisted} messages stored")
        if not result["acks"]:
            raise SystemExit("no send was acknowledged; server:\n" + "".join(self.log[-40:]))
        result["stored"] = persisted
        result["backlog"] = drain_search_backlog(self.db_url)
        return result

    def stop(self) -> None:
        stop_server(self.proc)


# -- the report ------------------------------------------------------------------------

HEAD = f"{'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'loader':>7}"


def row(m: dict[str, float]) -> str:
    return f"{m['rps']:9.0f} {m['p50']:8.2f} {m['p99']:8.2f} {m['cpu']:7.0%}"


def check_loader(server: Server, connections: int, seconds: float) -> dict[str, Any]:
    """The loader against GET /health (no auth, no database), and wrk beside it when it
    is installed: the loader's ceiling, to be far above the send rates."""
    get = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
    drive(server.port, [get] * connections, 1)
    checked = {"asyncio loader (this)": drive(server.port, [get] * connections, seconds)}
    if shutil.which("wrk"):
        checked["wrk"] = {**measure(f"{server.base}/health", {}, seconds, connections), "cpu": 0}
    return checked


def medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99", "cpu")}


def choose(swept: dict[int, dict[str, float]]) -> int:
    """The concurrency with the most msg/s within the p99 target, else the lowest p99."""
    within = [c for c, m in swept.items() if m["p99"] <= P99_TARGET_MS]
    if within:
        return max(within, key=lambda c: swept[c]["rps"])
    return min(swept, key=lambda c: swept[c]["p99"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=50, help=f"rooms of {MEMBERS} members")
    parser.add_argument(
        "--connections",
        default="25,50,100,200",
        help="concurrent senders to sweep, comma-separated (at most 10 a room)",
    )
    parser.add_argument("--loader-seconds", type=float, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--database-url",
        default="",
        help="PostgreSQL (postgresql+asyncpg://...) for the group-commit server; the other"
        " server uses the database <name>_one beside it. Both are created if missing and"
        " their schema public is emptied first.",
    )
    args = parser.parse_args()
    sweep = sorted({int(c) for c in args.connections.split(",")})

    # Seeding makes a thousand API Key requests a server within a minute.
    os.environ["PARLEY_API_KEY_RATE_LIMIT"] = "10000000"
    urls = {name: "" for name in CASES}
    if args.database_url:
        urls = {name: args.database_url + ("_one" if env else "") for name, env in CASES.items()}
        for url in urls.values():
            reset_pg(url)
    load_before = os.getloadavg()[0]
    servers: dict[str, Server] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            started = time.monotonic()
            for name, env in CASES.items():
                data_dir = Path(tmp) / str(len(servers))
                extra = {f"PARLEY_{k}": v for k, v in env.items()}
                servers[name] = Server(data_dir, urls[name], extra)
                servers[name].seed(args.rooms)
            seeding = time.monotonic() - started
            group = servers[next(iter(CASES))]
            loader_check = check_loader(group, max(sweep), args.loader_seconds)

            # A warm-up, then rounds: in each, every concurrency on both servers, the
            # order of the servers alternating. The chosen concurrency and the figures
            # reported for it are the same runs' medians.
            for server in servers.values():
                server.run(min(sweep), 1)
            runs: dict[str, dict[int, list[dict[str, Any]]]] = {
                name: {c: [] for c in sweep} for name in CASES
            }
            for round_no in range(args.rounds):
                order = list(CASES) if round_no % 2 == 0 else list(reversed(CASES))
                for c in sweep:
                    for name in order:
                        runs[name][c].append(servers[name].run(c, args.seconds))
            swept = {name: {c: medians(by_c[c]) for c in sweep} for name, by_c in runs.items()}
            chosen = choose(swept[next(iter(CASES))])
            for server in servers.values():
                check_sequences(server.db_url)
                check_search_index(server.db_url)
        finally:
            for server in servers.values():
                server.stop()

    storage = "PostgreSQL" if args.database_url else "SQLite"
    print(
        f"\nloader check: GET /health, {max(sweep)} connections, {args.loader_seconds:g} s "
        f"(loader = share of one core the asyncio loader used)\n"
    )
    print(f"{'loader':24} {HEAD.replace('msg/s', 'req/s')}")
    for name, m in loader_check.items():
        print(f"{name:24} {row(m)}" if name != "wrk" else f"{name:24} {row(m)[:-8]}")

    names = list(CASES)
    print(
        f"\nParley message ingest — {storage}, 1 server process each, asyncio loader, "
        f"{args.rooms} rooms of {MEMBERS} (sender i sends into room i mod {args.rooms}), "
        f"seeded in {seeding:.0f} s; medians of {args.rounds} rounds of {args.seconds:g} s; "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, "
        f"{os.cpu_count()} cores\n"
    )
    print(f"{'':11} {'group commit (default)':^35}   {'one transaction per message':^35}")
    print(f"{'senders':11} {HEAD}   {HEAD}")
    for c in sweep:
        mark = "  <- chosen" if c == chosen else ""
        print(f"{c:<11} {row(swept[names[0]][c])}   {row(swept[names[1]][c])}{mark}")
    if swept[names[0]][chosen]["p99"] > P99_TARGET_MS:
        print(
            f"(no concurrency kept group commit's p99 ≤ {P99_TARGET_MS:g} ms:"
            " the one with the lowest p99 chosen)"
        )
    else:
        print(f"(chosen: the most msg/s with group commit's p99 ≤ {P99_TARGET_MS:g} ms)")
    every_run = {name: [r for by_c in runs[name].values() for r in by_c] for name in names}
    total = sum(r["stored"] for done in every_run.values() for r in done)
    print(
        f"\nevery ack stored, nothing more ({total:,} messages in the timed runs); "
        "every room's sequence gap-free"
    )
    for name, done in every_run.items():
        backlogs = [r["backlog"] for r in done if r["backlog"] is not None]
        if backlogs:
            print(
                f"search index, {name}: at most {max(b[0] for b in backlogs)} messages"
                f" waited when a run stopped, indexed within"
                f" {max(b[1] for b in backlogs) * 1000:.0f} ms; every message with text indexed"
            )
    g, o = (swept[n][chosen] for n in names)
    print(
        f"group commit: {g['rps']:,.0f} msg/s (target ≥ {RATE_TARGET:,.0f}), "
        f"p99 {g['p99']:.1f} ms (target ≤ {P99_TARGET_MS:g})"
    )
    print(
        f"ratio group ÷ one per transaction = {g['rps'] / o['rps']:.2f}"
        f"  (target ≥ {RATIO_TARGET:g})"
    )


if __name__ == "__main__":
    main()
