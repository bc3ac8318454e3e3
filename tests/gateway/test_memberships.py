"""The rooms a connecting socket follows (directly and through user groups), and the
batched lookups behind them: sockets connecting together share reads, a lookup sees what
was committed before it asked, and a failed read fails every lookup it was to answer."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from parley.services.batched import BatchedLookup
from tests.conftest import AppKeys, Server, issue_token, ok
from tests.gateway.test_socketio import connect, eventually, run


def test_a_socket_follows_its_rooms_and_those_of_its_groups(
    server: Server, app_keys: AppKeys, admin: httpx.Client
) -> None:
    tokens = {name: issue_token(admin, name) for name in ("dana", "eli", "finn")}
    ok(admin.post("/admin/groups", json={"_id": "support", "nickname": "S", "members": ["dana"]}))
    ok(admin.post("/rooms", json={"_id": "desk", "name": "Desk", "members": ["support"]}))
    ok(admin.post("/rooms", json={"_id": "own", "name": "Own", "members": ["dana", "eli"]}))
    ok(admin.post("/rooms", json={"_id": "other", "name": "Other", "members": ["finn"]}))

    def send(room: str, sender: str) -> None:
        body = {"room": room, "sender": sender, "message": room, "messageType": "text"}
        ok(admin.post("/messages", json=body))

    async def go() -> None:
        # Connected together: their lookups share reads, and each gets its own rooms.
        sockets = await asyncio.gather(
            *(
                connect(server, auth={"clientKey": app_keys.client_key, "token": tokens[name]})
                for name in ("dana", "eli", "finn")
            )
        )
        (_, dana), (_, eli), (_, finn) = sockets
        for room, sender in (("desk", "finn"), ("own", "eli"), ("other", "finn")):
            await asyncio.to_thread(send, room, sender)

        def rooms(heard: list[tuple[str, Any]]) -> set[str]:
            return {data["room"] for name, data in heard if name == "chat message"}

        await eventually(lambda: rooms(dana) == {"desk", "own"} and rooms(finn) == {"other"})
        await eventually(lambda: rooms(eli) == {"own"})
        await asyncio.sleep(0.2)  # nothing else arrives
        assert (rooms(dana), rooms(eli), rooms(finn)) == ({"desk", "own"}, {"own"}, {"other"})
        for client, _ in sockets:
            await client.disconnect()

    run(go())


async def settle() -> None:
    """Let every task that can run, run."""
    for _ in range(10):
        await asyncio.sleep(0)


class Reads:
    """A read function that records its batches and is released by the test."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def __call__(self, keys: list[str]) -> dict[str, str]:
        self.batches.append(list(keys))
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return {key: key.upper() for key in keys if not key.startswith("missing")}


def test_lookups_asked_during_a_read_share_the_next_one() -> None:
    async def go() -> None:
        reads = Reads()
        lookup: BatchedLookup[str, str] = BatchedLookup(reads)
        first = asyncio.create_task(lookup.get("a"))
        await settle()
        assert reads.batches == [["a"]]  # alone: read at once
        later = [asyncio.create_task(lookup.get(k)) for k in ("b", "c", "b", "missing")]
        await settle()
        assert reads.batches == [["a"]]  # they wait for the read running
        reads.release.set()
        assert await first == "A"
        assert await asyncio.gather(*later) == ["B", "C", "B", None]
        # One more read for all four, started after they were asked, each key once.
        assert reads.batches == [["a"], ["b", "c", "missing"]]

    asyncio.run(go())


def test_a_failed_read_fails_its_lookups_and_the_next_read_happens() -> None:
    async def go() -> None:
        reads = Reads()
        lookup: BatchedLookup[str, str] = BatchedLookup(reads)
        reads.fail = RuntimeError("database unavailable")
        asked = [asyncio.create_task(lookup.get(k)) for k in ("a", "b")]
        await settle()
        reads.release.set()
        for task in asked:
            with pytest.raises(RuntimeError, match="unavailable"):
                await task
        reads.fail = None
        assert await lookup.get("c") == "C"

    asyncio.run(go())


def test_a_cancelled_lookup_leaves_the_others_answered() -> None:
    async def go() -> None:
        reads = Reads()
        lookup: BatchedLookup[str, str] = BatchedLookup(reads)
        gone = asyncio.create_task(lookup.get("a"))
        kept = asyncio.create_task(lookup.get("a"))
        await settle()
        gone.cancel()
        reads.release.set()
        assert await kept == "A"
        assert gone.cancelled()

    asyncio.run(go())
