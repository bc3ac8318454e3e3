"""Whether listing rooms grows with membership: ``GET /rooms?limit=30&sort=-lastMessage``
(Client Key + token) for a user in 10 rooms against a user in 5,000 rooms, on the same
server, in the same run.

    python bench/rooms.py [--rooms 5000] [--seconds 5] [--connections 4] [--rounds 3]
                          [--database-url URL]

Starts ``parley run`` on a fresh data dir (SQLite unless --database-url; on PostgreSQL
the run creates its own app), seeds the rooms through the API with the API Key, then
alternates the cases for several rounds and prints the medians. A third case, a user in
exactly 30 rooms, returns the same page size as the heavy user: it separates what
membership costs from what a three times larger page costs. Load comes from ``wrk`` when
it is installed, else from the asyncio loader of bench/auth.py. Four connections keep one
server process busy while latency stays close to the service time.
Target: p50 ratio 5,000 ÷ 10 ≤ 3.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from auth import (  # bench/auth.py, next to this file
    free_port,
    measure,
    print_medians,
    start_server,
    stop_server,
)

PAGE = "/rooms?limit=30&sort=-lastMessage"
SEED_CLIENTS = 4  # keep-alive clients seeding rooms concurrently


def seed_user(
    api: httpx.Client, user_id: str, rooms: int, partners: list[str], workers: int
) -> str:
    """Create ``user_id`` and ``rooms`` group rooms of it and one partner each; every third
    room starts with a system message, so the rooms' activity times differ. Returns the
    user's token."""
    created = api.post(
        "/admin/clients",
        json={"_id": user_id, "nickname": user_id.title(), "issueAccessToken": True},
    )
    created.raise_for_status()
    token = str(created.json()["result"]["token"])

    def make(indices: range) -> None:
        with httpx.Client(base_url=str(api.base_url), headers=api.headers, timeout=30) as c:
            for i in indices:
                response = c.post(
                    "/rooms",
                    json={
                        "name": f"{user_id} {i}",
                        "members": [user_id, partners[i % len(partners)]],
                        "systemMessage": i % 3 == 0,
                    },
                )
                if response.status_code != 200:
                    raise SystemExit(f"seeding failed: {response.status_code} {response.text}")

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(make, [range(w, rooms, workers) for w in range(workers)]))  # re-raises
    return token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=5000, help="rooms of the heavy user")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    if args.rooms <= 30:
        parser.error("--rooms must be more than 30")

    # Seeding makes thousands of API Key requests within a minute.
    os.environ["PARLEY_API_KEY_RATE_LIMIT"] = "10000000"
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
                partners = [f"partner-{i}" for i in range(20)]
                for p in partners:
                    api.post("/admin/clients", json={"_id": p}).raise_for_status()
                started = time.monotonic()
                tokens = {
                    10: seed_user(api, "light", 10, partners, 1),
                    30: seed_user(api, "page", 30, partners, 1),
                    args.rooms: seed_user(api, "heavy", args.rooms, partners, SEED_CLIENTS),
                }
                seeding = time.monotonic() - started
            cases = {}
            for rooms, token in tokens.items():
                headers = {"IM-CLIENT-KEY": keys["clientKey"], "IM-Authorization": token}
                listed = httpx.get(base + PAGE, headers=headers, timeout=30).json()["result"]
                # The answer is what it should be before it is timed.
                assert listed["totalCount"] == rooms, listed["totalCount"]
                assert len(listed["data"]) == min(rooms, 30)
                times = [
                    r["lastMessage"]["messageTimeMS"]
                    for r in listed["data"]
                    if r.get("lastMessage")
                ]
                assert times == sorted(times, reverse=True), "not newest activity first"
                cases[f"GET /rooms, member of {rooms:,}"] = (base + PAGE, headers)
            for url, headers in cases.values():  # warm caches
                measure(url, headers, 1, args.connections)
            results: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
            for round_no in range(args.rounds):
                order = list(cases) if round_no % 2 == 0 else list(reversed(cases))
                for name in order:
                    url, headers = cases[name]
                    result = measure(url, headers, args.seconds, args.connections)
                    if not result["rps"]:  # wrk counts none of the requests that time out
                        tail = "".join(server_log[-40:])
                        raise SystemExit(f"{name}: no response within the run; server:\n{tail}")
                    results[name].append(result)
        finally:
            stop_server(proc)

    loader = "wrk" if shutil.which("wrk") else "asyncio loader"
    storage = "PostgreSQL" if args.database_url else "SQLite"
    print(
        f"\nParley GET /rooms (limit 30, -lastMessage) — {storage}, 1 server process, {loader}, "
        f"{args.connections} connections, {args.rounds} rounds of {args.seconds:g} s (medians); "
        f"seeded {args.rooms + 40:,} rooms in {seeding:.0f} s\n"
    )
    medians = print_medians(results, "case", 34)
    light, page, heavy = (medians[n]["p50"] for n in cases)
    print(f"\np50 ratio {args.rooms:,} ÷ 10 rooms = {heavy / light:.2f}  (target ≤ 3)")
    print(f"p50 ratio {args.rooms:,} ÷ 30 rooms = {heavy / page:.2f}  (same page size)")


if __name__ == "__main__":
    main()
