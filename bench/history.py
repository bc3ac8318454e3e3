"""Whether reading history grows with a room's size: ``GET /rooms/{id}/messages/v3?limit=20``
(Client Key + token, the newest page) and the same with ``beforeMessage=<a message in the
middle>`` (a page further back), in a room of 1,000,000 messages against a room of 1,000, on
the same server, in the same run.

    python bench/history.py [--messages 1000000] [--small 1000] [--seconds 5]
                            [--connections 4] [--rounds 3] [--database-url URL]

Starts ``parley run`` on a fresh data dir (SQLite unless --database-url; a PostgreSQL
database is created if missing and its schema public emptied), creates the reader, three
other members and the two rooms through the API, then fills the rooms with SQL while the
server is idle (through the API a million sends would take most of an hour): consecutive
sequence numbers, 24-hex ids that grow with time like the server's, bodies as the server
stores them, one message every 50 ms up to a minute ago, senders taking turns; then the
rooms' counters (last_seq, message_count, last message). ``search_text`` stays NULL, so
SQLite's full-text triggers do not fire: search is not what is measured. SQLite gets no
ANALYZE (the server never runs one); PostgreSQL gets the ANALYZE autovacuum would soon run.
The server keeps running meanwhile: a restart would need the same master secret, and its
keys and tokens stay valid this way. SQLite rows go in by 100,000 a transaction, so that the
server's own periodic writes never wait long for the lock.

Before timing, each page is checked: 20 messages, newest first, the right sequence
numbers, the anchor first. Then the four cases alternate for several rounds and the medians
are printed. Load comes from ``wrk`` when it is installed, else from the asyncio loader of
bench/auth.py; four connections keep one server process busy while latency stays close to
the service time.
Target: p50 ratio 1,000,000 ÷ 1,000 ≤ 1.5, for both pages.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from auth import (  # bench/auth.py, next to this file
    free_port,
    measure,
    print_medians,
    start_server,
    stop_server,
)
from ingest import pg_dsn, reset_pg  # bench/ingest.py, next to this file

PAGE = 20
CHUNK = 100_000
STEP_MS = 50  # one message every 50 ms
COLUMNS = (
    "app_id",
    "room_id",
    "seq",
    "id",
    "sender",
    "message_type",
    "body",
    "pinned",
    "hidden",
    "created_at",
    "updated_at",
)
SENDERS = ["reader", "ann", "bob", "cyd"]


def message_rows(app_id: str, room_id: str, count: int) -> Iterator[tuple[Any, ...]]:
    """``count`` messages as the server stores them, the newest a minute ago. Ids: the
    second of creation, then a per-room random part, then the sequence number (24 hex
    digits that grow with time, as the server's object ids do)."""
    salt = secrets.token_hex(4)
    newest = int(time.time() * 1000) - 60_000
    for seq in range(1, count + 1):
        at = newest - (count - seq) * STEP_MS
        yield (
            app_id,
            room_id,
            seq,
            f"{at // 1000:08x}{salt}{seq:08x}",
            SENDERS[seq % len(SENDERS)],
            "text",
            f'{{"message": "message {seq} of {room_id}", "mentions": []}}',
            False,
            False,
            at,
            at,
        )


def chunks(rows: Iterator[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    while True:
        chunk = [row for _, row in zip(range(CHUNK), rows, strict=False)]
        if not chunk:
            return
        yield chunk


def middle_of(room_id: str, count: int, chunk: list[tuple[Any, ...]]) -> dict[str, str]:
    """The id of sequence number ``count // 2`` if ``chunk`` holds it."""
    first = chunk[0][2]
    if first <= count // 2 < first + len(chunk):
        return {room_id: str(chunk[count // 2 - first][3])}
    return {}


# Column names and placeholders are this file's own constants.
NAMES, MARKS = ", ".join(COLUMNS), ", ".join("?" * len(COLUMNS))
INSERT = f"INSERT INTO messages ({NAMES}) VALUES ({MARKS})"  # noqa: S608
ROOM_COUNTERS = (
    "UPDATE rooms SET last_seq = {p}1, message_count = {p}1, last_message_id = {p}2,"
    " last_message_at = {p}3 WHERE app_id = {p}4 AND id = {p}5"
)


def seed_sqlite(path: str, rooms: dict[str, int]) -> dict[str, str]:
    """Fill the rooms; return each room's middle message id (sequence number n // 2)."""
    middles = {}
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=10000")
        for room_id, count in rooms.items():
            app_id, last_seq = conn.execute(
                "SELECT app_id, last_seq FROM rooms WHERE id = ?", (room_id,)
            ).fetchone()
            assert last_seq == 0, "the rooms start empty"
            last: tuple[Any, ...] = ()
            for chunk in chunks(message_rows(app_id, room_id, count)):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(INSERT, chunk)
                conn.execute("COMMIT")
                last = chunk[-1]
                middles.update(middle_of(room_id, count, chunk))
            seq, message_id, at = last[2], last[3], last[9]
            conn.execute(ROOM_COUNTERS.replace("{p}", "?"), (seq, message_id, at, app_id, room_id))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return middles


def seed_postgres(url: str, rooms: dict[str, int]) -> dict[str, str]:
    middles: dict[str, str] = {}

    async def go() -> None:
        import asyncpg

        conn = await asyncpg.connect(pg_dsn(url))
        try:
            for room_id, count in rooms.items():
                app_id, last_seq = await conn.fetchrow(
                    "SELECT app_id, last_seq FROM rooms WHERE id = $1", room_id
                )
                assert last_seq == 0, "the rooms start empty"
                async with conn.transaction():
                    last: tuple[Any, ...] = ()
                    for chunk in chunks(message_rows(app_id, room_id, count)):
                        await conn.copy_records_to_table("messages", records=chunk, columns=COLUMNS)
                        last = chunk[-1]
                        middles.update(middle_of(room_id, count, chunk))
                    seq, message_id, at = last[2], last[3], last[9]
                    await conn.execute(
                        ROOM_COUNTERS.replace("{p}", "$"), seq, message_id, at, app_id, room_id
                    )
            await conn.execute("ANALYZE")
        finally:
            await conn.close()

    asyncio.run(go())
    return middles


def check_page(
    base: str, headers: dict[str, str], room_id: str, total: int, anchor: tuple[str, int] | None
) -> str:
    """Fetch one page and check it; return its URL."""
    url = f"{base}/rooms/{room_id}/messages/v3?limit={PAGE}"
    if anchor:
        url += f"&beforeMessage={anchor[0]}"
    response = httpx.get(url, headers=headers, timeout=30)
    if response.status_code != 200:
        raise SystemExit(f"{url}: {response.status_code} {response.text}")
    page = response.json()["result"]
    assert page["totalCount"] == total, (page["totalCount"], total)
    top = anchor[1] if anchor else total
    seqs = [m["seq"] for m in page["data"]]
    assert seqs == list(range(top, top - PAGE, -1)), seqs
    if anchor:
        assert page["data"][0]["_id"] == anchor[0], "the anchor comes first"
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000, help="the large room")
    parser.add_argument("--small", type=int, default=1000, help="the small room")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    if not 2 * PAGE <= args.small < args.messages:
        parser.error(f"--small must be at least {2 * PAGE} and less than --messages")

    if args.database_url:
        reset_pg(args.database_url)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc, keys = start_server(Path(tmp), port, args.database_url)
        # Keep reading the server's output: a full pipe would block the server.
        server_log: list[str] = []
        assert proc.stdout is not None
        threading.Thread(target=server_log.extend, args=(proc.stdout,), daemon=True).start()
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(
                base_url=base, headers={"IM-API-KEY": keys["apiKey"]}, timeout=30
            ) as api:
                created = api.post(
                    "/admin/clients",
                    json={"_id": "reader", "nickname": "Reader", "issueAccessToken": True},
                )
                created.raise_for_status()
                token = str(created.json()["result"]["token"])
                for user in SENDERS[1:]:
                    api.post("/admin/clients", json={"_id": user}).raise_for_status()
                sizes = {args.messages: "", args.small: ""}
                for size in sizes:
                    room = api.post("/rooms", json={"name": f"{size:,}", "members": SENDERS})
                    room.raise_for_status()
                    sizes[size] = str(room.json()["result"]["_id"])
            rooms = {room_id: size for size, room_id in sizes.items()}
            started = time.monotonic()
            if args.database_url:
                middles = seed_postgres(args.database_url, rooms)
            else:
                middles = seed_sqlite(str(Path(tmp) / "parley.db"), rooms)
            seeding = time.monotonic() - started

            headers = {"IM-CLIENT-KEY": keys["clientKey"], "IM-Authorization": token}
            cases: dict[str, str] = {}
            for size, room_id in sizes.items():
                cases[f"newest page, room of {size:,}"] = check_page(
                    base, headers, room_id, size, None
                )
            for size, room_id in sizes.items():
                middle = size // 2
                cases[f"beforeMessage (middle), room of {size:,}"] = check_page(
                    base, headers, room_id, size, (middles[room_id], middle)
                )
            for url in cases.values():  # warm caches
                measure(url, headers, 1, args.connections)
            results: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
            for round_no in range(args.rounds):
                order = list(cases) if round_no % 2 == 0 else list(reversed(cases))
                for name in order:
                    result = measure(cases[name], headers, args.seconds, args.connections)
                    if not result["rps"]:  # wrk counts none of the requests that time out
                        tail = "".join(server_log[-40:])
                        raise SystemExit(f"{name}: no response within the run; server:\n{tail}")
                    results[name].append(result)
        finally:
            stop_server(proc)

    loader = "wrk" if shutil.which("wrk") else "asyncio loader"
    storage = "PostgreSQL" if args.database_url else "SQLite"
    print(
        f"\nParley GET /rooms/{{id}}/messages/v3?limit={PAGE} — {storage}, 1 server process, "
        f"{loader}, {args.connections} connections, {args.rounds} rounds of {args.seconds:g} s "
        f"(medians); seeded {args.messages + args.small:,} messages with SQL in {seeding:.0f} s; "
        f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores\n"
    )
    medians = print_medians(results, "case", 40)
    names = list(cases)
    print()
    for big, small, what in ((names[0], names[1], "newest page"), (names[2], names[3], "before")):
        ratio = medians[big]["p50"] / medians[small]["p50"]
        print(
            f"p50 ratio {args.messages:,} ÷ {args.small:,} messages, {what}: {ratio:.2f}"
            "  (target ≤ 1.5)"
        )


if __name__ == "__main__":
    main()
