"""Presence on its own: counting a node's sockets, the last-active time kept in the
database, and (with Redis) what one node learns of another's sockets — including a node
that dies without a word and a Redis that forgot everything.

Each test builds its own ``Presence`` objects on the running server's loop and database;
two objects sharing one Redis are two nodes."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from parley.services.clock import now_ms, utc_day
from parley.services.container import Services
from parley.services.presence import KEY_PREFIX, Presence
from tests.conftest import AppKeys, Server, ok

FAST = {"heartbeat": 0.1, "node_ttl": 0.6}


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def some_app() -> str:
    """An app id no other test uses: nodes of one Redis see each other's apps."""
    return "app-" + secrets.token_hex(6)


def test_a_node_counts_its_sockets(server: Server) -> None:
    async def go(services: Services) -> None:
        presence = Presence(services.db)
        app = some_app()
        presence.connected(app, "alice")
        presence.connected(app, "alice")  # a second tab
        presence.connected(app, "bob")
        assert await presence.online(app, ["alice", "bob", "carol"]) == {"alice", "bob"}
        assert await presence.connection_count(app) == 3
        presence.disconnected(app, "alice")
        assert await presence.online(app, ["alice"]) == {"alice"}  # one tab still open
        presence.disconnected(app, "alice")
        presence.disconnected(app, "alice")  # one too many: ignored, never negative
        assert await presence.online(app, ["alice", "bob"]) == {"bob"}
        assert await presence.connection_count(app) == 1
        assert await presence.connection_count(some_app()) == 0

    server.call(go)


def test_last_active_is_recorded_when_the_last_socket_closes(
    server: Server, app_keys: AppKeys, admin: httpx.Client
) -> None:
    for name in ("dora", "ezra", "finn"):
        ok(admin.post("/admin/clients", json={"_id": name, "nickname": name}))

    async def go(services: Services) -> None:
        presence = Presence(services.db)
        app = app_keys.id
        presence.connected(app, "dora")
        presence.connected(app, "ezra")
        presence.disconnected(app, "ezra")
        await presence.flush_last_active()
        people: list[dict[str, Any]] = [
            {"_id": "dora", "lastActiveTimeMS": 0},
            {"_id": "ezra"},
            {"_id": "finn"},
            {"_id": "team", "clientType": "group"},
            "a bare id",
        ]
        before = now_ms() - 5_000
        await presence.annotate(app, people, last_active=True)
        dora, ezra, finn, team = people[:4]
        assert dora["isSocketConnected"] is True and dora["lastActiveTimeMS"] >= before
        assert ezra["isSocketConnected"] is False and ezra["lastActiveTimeMS"] >= before
        assert ezra["lastActiveTime"].endswith("Z")
        assert finn == {
            "_id": "finn",
            "isSocketConnected": False,
            "lastActiveTime": None,
            "lastActiveTimeMS": 0,
        }
        assert "isSocketConnected" not in team
        # Without last_active only the connection flag is set.
        members = [{"_id": "dora"}, {"_id": "finn"}]
        await presence.annotate(app, members)
        assert members == [
            {"_id": "dora", "isSocketConnected": True},
            {"_id": "finn", "isSocketConnected": False},
        ]

    server.call(go)


def test_each_days_peak_is_kept_in_the_database(server: Server, app_keys: AppKeys) -> None:
    async def go(services: Services) -> None:
        presence, app = Presence(services.db), app_keys.id
        today = utc_day(now_ms() // 1000)
        for n in range(4):
            presence.connected(app, f"peak-{n}")
        for n in range(3):
            presence.disconnected(app, f"peak-{n}")
        # Three of the four left before the sample: the sample still saw four at once.
        assert (await presence.daily_peaks(app, today))[today] == 4
        presence.connected(app, "peak-0")  # two now: the day's peak stays four
        assert (await presence.daily_peaks(app, today))[today] == 4
        # A node started later (a restart) still reads the day's peak from the database.
        assert (await Presence(services.db).daily_peaks(app, today))[today] == 4
        for n in range(3):
            presence.connected(app, f"more-{n}")  # five: a new peak
        assert await presence.daily_peaks(app, today) == {today: 5}
        assert await presence.daily_peaks(app, "9999-01-01") == {}
        await presence.record_peaks()
        # A sample for an app deleted meanwhile is dropped, not an error.
        presence.connected("app-gone-" + secrets.token_hex(4), "x")
        await presence.record_peaks()

    server.call(go)


# -- two nodes, one Redis ------------------------------------------------------------------


def two_nodes(
    server: Server, redis_url: str, test: Callable[[Presence, Presence, Any], Awaitable[None]]
) -> None:
    import redis.asyncio as aioredis

    async def go(services: Services) -> None:
        client = aioredis.Redis.from_url(redis_url)
        one = Presence(services.db, client, **FAST)  # type: ignore[arg-type]
        two = Presence(services.db, client, **FAST)  # type: ignore[arg-type]
        await one.start()
        await two.start()
        try:
            await test(one, two, client)
        finally:
            await one.close()
            await two.close()
            await client.aclose()

    server.call(go)


@pytest.mark.redis
def test_nodes_see_each_others_sockets(server: Server, redis_url: str) -> None:
    app = some_app()

    async def test(one: Presence, two: Presence, _redis: Any) -> None:
        one.connected(app, "alice")
        two.connected(app, "bob")
        two.connected(app, "bob")

        async def both_online() -> bool:
            return await one.online(app, ["alice", "bob"]) == {"alice", "bob"}

        await eventually(both_online)
        assert await two.online(app, ["alice", "bob", "carol"]) == {"alice", "bob"}
        assert await one.connection_count(app) == 3
        assert await two.connection_count(app) == 3
        one.disconnected(app, "alice")

        async def alice_gone() -> bool:
            return await two.online(app, ["alice"]) == set()

        await eventually(alice_gone)
        assert await one.connection_count(app) == 2

    two_nodes(server, redis_url, test)


@pytest.mark.redis
def test_a_days_peak_counts_the_sockets_of_every_node(
    server: Server, redis_url: str, app_keys: AppKeys
) -> None:
    app = app_keys.id  # a real app: peaks are stored against it
    today = utc_day(now_ms() // 1000)

    async def test(one: Presence, two: Presence, _redis: Any) -> None:
        before = (await one.daily_peaks(app, today)).get(today, 0)
        for n in range(before + 2):
            one.connected(app, f"node-one-{n}")
        two.connected(app, "node-two")

        async def seen_by_one() -> bool:
            return await one.connection_count(app) == before + 3

        await eventually(seen_by_one)
        await one.record_peaks()  # two held on one, one open on the other node now
        assert (await two.daily_peaks(app, today))[today] == before + 3

    two_nodes(server, redis_url, test)


@pytest.mark.redis
def test_a_dead_nodes_users_go_offline(server: Server, redis_url: str) -> None:
    app = some_app()

    async def test(one: Presence, two: Presence, _redis: Any) -> None:
        one.connected(app, "alice")

        async def seen() -> bool:
            return await two.online(app, ["alice"]) == {"alice"}

        await eventually(seen)
        # Node one dies: it stops renewing its entry and cleans nothing up.
        for task in one._tasks:
            task.cancel()

        async def gone() -> bool:
            return await two.online(app, ["alice"]) == set()

        started = asyncio.get_running_loop().time()
        await eventually(gone)
        assert asyncio.get_running_loop().time() - started <= FAST["node_ttl"] + 1.0
        assert await two.connection_count(app) == 0

    two_nodes(server, redis_url, test)


@pytest.mark.redis
def test_counts_come_back_after_redis_forgets_them(server: Server, redis_url: str) -> None:
    app = some_app()

    async def test(one: Presence, two: Presence, redis: Any) -> None:
        one.connected(app, "alice")
        one.connected(app, "bob")

        async def seen() -> bool:
            return await two.connection_count(app) == 2

        await eventually(seen)
        # What a Redis restart does to this node's hash (the rest of the database is
        # other tests' business, so only this key goes).
        await redis.delete(KEY_PREFIX + one.node_id)
        assert await two.connection_count(app) == 0
        await eventually(seen)
        assert await two.online(app, ["alice", "bob"]) == {"alice", "bob"}

    two_nodes(server, redis_url, test)


@pytest.mark.redis
def test_a_closed_node_leaves_no_trace(server: Server, redis_url: str) -> None:
    app = some_app()

    async def test(one: Presence, two: Presence, redis: Any) -> None:
        one.connected(app, "alice")

        async def seen() -> bool:
            return await two.online(app, ["alice"]) == {"alice"}

        await eventually(seen)
        await one.close()
        assert await two.online(app, ["alice"]) == set()
        assert not await redis.exists(KEY_PREFIX + one.node_id)

    two_nodes(server, redis_url, test)
