"""Presence: which users have a live, authenticated socket, and how many sockets an app has.

Each node counts its own sockets in memory; that count is exact for the node. With Redis
(a cluster), every node also keeps its counts in a Redis hash of its own,
``parley:presence:<node>``, and lists itself with an expiry time in the sorted set
``parley:presence:nodes``. A reader asks its own counters first, then the hashes of the
nodes whose expiry is in the future. A node that dies stops renewing its entry, so its
users go offline within ``NODE_TTL`` seconds without anyone cleaning up after it.

Node hashes hold absolute counts (``HSET field n`` / ``HDEL``), never increments: a write
that is retried, or a full rewrite after Redis restarted and lost everything, cannot
count a socket twice.

When a user's last socket on a node closes, the time is written to ``users.last_active_at``
(batched: one statement per flush). ``lastActiveTime`` of a user with a socket open is now.

Each app's busiest moment of the day goes to ``socket_peaks``: every ``HEARTBEAT`` seconds a
node with sockets of the app adds the most it held since its last sample to what the other
nodes hold now, and raises the day's row if that is higher. On one node the peak is exact;
across nodes it is the highest such sample (nodes peaking a moment apart are not summed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import Counter
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update

from parley.background import cancel_and_wait
from parley.services.clock import iso, now_ms, utc_day
from parley.storage.db import Database
from parley.storage.tables import AppRow, SocketPeakRow, UserRow

log = logging.getLogger("parley.presence")

KEY_PREFIX = "parley:presence:"
NODES_KEY = KEY_PREFIX + "nodes"
HEARTBEAT = 2.0  # seconds between renewals of a node's entry
NODE_TTL = 6.0  # a node not heard of for this long counts as gone
_user_table = cast(Table, UserRow.__table__)
MARKER = "node"  # a field of every node hash (see _write_to_redis)
SEP = "\x1f"  # between the parts of a hash field; app ids are UUIDs


def _user_field(app_id: str, user_id: str) -> str:
    return f"u{SEP}{app_id}{SEP}{user_id}"


def _app_field(app_id: str) -> str:
    return f"a{SEP}{app_id}"


class Presence:
    def __init__(
        self,
        db: Database,
        redis: Any = None,
        *,
        node_id: str | None = None,
        heartbeat: float = HEARTBEAT,
        node_ttl: float = NODE_TTL,
    ) -> None:
        self._db = db
        self._redis = redis
        self.node_id = node_id or secrets.token_hex(8)
        self.heartbeat = heartbeat
        self.node_ttl = node_ttl
        self._users: Counter[tuple[str, str]] = Counter()
        self._apps: Counter[str] = Counter()
        # The most sockets this node held per app since the last peak sample, and the
        # highest sample recorded per (app, day), so an unchanged count is not rewritten.
        self._held_most: dict[str, int] = {}
        self._recorded_peaks: dict[tuple[str, str], int] = {}
        # Fields whose count changed since the last write to Redis; None: rewrite them all
        # (at start, and after Redis lost or refused a write).
        self._dirty: set[str] | None = None
        self._wake = asyncio.Event()
        self._last_active: dict[tuple[str, str], int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # -- this node's sockets ---------------------------------------------------------------

    def connected(self, app_id: str, user_id: str) -> None:
        self._users[(app_id, user_id)] += 1
        self._apps[app_id] += 1
        if self._apps[app_id] > self._held_most.get(app_id, 0):
            self._held_most[app_id] = self._apps[app_id]
        self._touched(app_id, user_id)

    def disconnected(self, app_id: str, user_id: str) -> None:
        key = (app_id, user_id)
        if self._users[key] <= 0:
            return
        self._users[key] -= 1
        self._apps[app_id] -= 1
        if self._users[key] == 0:
            del self._users[key]
            self._last_active[key] = now_ms()
        if self._apps[app_id] == 0:
            del self._apps[app_id]
        self._touched(app_id, user_id)

    def local_count(self, app_id: str) -> int:
        return self._apps.get(app_id, 0)

    async def daily_peaks(self, app_id: str, since_day: str) -> dict[str, int]:
        """The most sockets the app had open at once on each UTC day from ``since_day``
        (``YYYY-MM-DD``) on, as far as the samples saw; days without sockets are absent."""
        with contextlib.suppress(Exception):  # the rows already written still answer
            await self.record_peaks()
        async with self._db.read() as s:
            rows = await s.execute(
                select(SocketPeakRow.day, SocketPeakRow.peak).where(
                    SocketPeakRow.app_id == app_id, SocketPeakRow.day >= since_day
                )
            )
            return {day: int(peak) for day, peak in rows}

    def _touched(self, app_id: str, user_id: str) -> None:
        if self._redis is None:
            return
        if self._dirty is not None:
            self._dirty.update((_user_field(app_id, user_id), _app_field(app_id)))
        self._wake.set()

    # -- questions about the whole cluster --------------------------------------------------

    async def online(self, app_id: str, user_ids: Iterable[str]) -> set[str]:
        """Which of ``user_ids`` have a socket on any node."""
        wanted = list(dict.fromkeys(user_ids))
        found = {u for u in wanted if (app_id, u) in self._users}
        rest = [u for u in wanted if u not in found]
        if not rest or self._redis is None:
            return found
        fields = [_user_field(app_id, u) for u in rest]
        for counts in await self._from_other_nodes(fields):
            found.update(u for u, n in zip(rest, counts, strict=True) if n and int(n) > 0)
        return found

    async def connection_count(self, app_id: str) -> int:
        """Sockets the app has open on every node."""
        total = self.local_count(app_id)
        for counts in await self._from_other_nodes([_app_field(app_id)]):
            total += int(counts[0] or 0)
        return total

    async def _from_other_nodes(self, fields: list[str]) -> list[list[Any]]:
        if self._redis is None:
            return []
        try:
            nodes = await self._redis.zrangebyscore(NODES_KEY, now_ms(), "+inf")
            others = [n.decode() for n in nodes if n.decode() != self.node_id]
            if not others:
                return []
            async with self._redis.pipeline(transaction=False) as pipe:
                for node in others:
                    pipe.hmget(KEY_PREFIX + node, fields)
                return list(await pipe.execute())
        except Exception as exc:  # an outage degrades to this node's view
            log.warning("presence: Redis unreachable (%s); answering for this node only", exc)
            return []

    # -- users' Client objects ---------------------------------------------------------------

    async def annotate(
        self, app_id: str, people: Iterable[Any], *, last_active: bool = False
    ) -> None:
        """Set ``isSocketConnected`` on user objects (group entries and bare ids are left
        alone) and, with ``last_active``, ``lastActiveTime(MS)``: now for a user online,
        else when its last socket closed (0: never connected)."""
        users = [p for p in people if isinstance(p, dict) and p.get("clientType") != "group"]
        ids = [str(p.get("_id")) for p in users]
        online = await self.online(app_id, ids)
        now = now_ms()
        since = await self._last_active_of(app_id, [u for u in ids if u not in online])
        for person, user_id in zip(users, ids, strict=True):
            person["isSocketConnected"] = user_id in online
            if last_active:
                when = now if user_id in online else since.get(user_id) or 0
                person["lastActiveTime"] = iso(when) if when else None
                person["lastActiveTimeMS"] = when

    async def _last_active_of(self, app_id: str, user_ids: list[str]) -> dict[str, int]:
        if not user_ids:
            return {}
        async with self._db.read() as s:
            rows = await s.execute(
                select(_user_table.c.id, _user_table.c.last_active_at).where(
                    _user_table.c.app_id == app_id, _user_table.c.id.in_(user_ids[:1000])
                )
            )
            found = {user_id: when for user_id, when in rows if when}
        for user_id in user_ids:  # times not flushed yet are newer
            if (app_id, user_id) in self._last_active:
                found[user_id] = self._last_active[(app_id, user_id)]
        return found

    # -- background work -------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._flush_last_active_forever())]
        if self._redis is not None:
            self._dirty = None
            self._tasks.append(asyncio.create_task(self._sync_forever()))

    async def close(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        for key in list(self._users):  # what is open now closes with this node
            self._last_active[key] = now_ms()
        with contextlib.suppress(Exception):
            await self.flush_last_active()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.zrem(NODES_KEY, self.node_id)
                await self._redis.delete(KEY_PREFIX + self.node_id)

    async def _sync_forever(self) -> None:
        """Write changed counts to Redis as they happen and renew this node's entry every
        ``HEARTBEAT`` seconds; after a failure, rewrite everything."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.heartbeat)
            self._wake.clear()
            try:
                await self._write_to_redis()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # retried from scratch next round
                log.warning("presence: Redis write failed (%s); retrying", exc)
                self._dirty = None
                await asyncio.sleep(0.2)

    async def _write_to_redis(self) -> None:
        dirty, self._dirty = self._dirty, set()
        full = dirty is None
        if dirty is None:
            dirty = {_user_field(*key) for key in self._users}
            dirty |= {_app_field(app_id) for app_id in self._apps}
        key = KEY_PREFIX + self.node_id
        ttl_ms = int(self.node_ttl * 1000)
        async with self._redis.pipeline(transaction=True) as pipe:
            # The marker field keeps the hash in being: finding it gone means Redis lost
            # this node's counts (a restart), and they are written again in full.
            pipe.hexists(key, MARKER)
            if full:
                pipe.delete(key)
            pipe.hset(key, MARKER, 1)
            for field in dirty:
                count = self._count_of(field)
                if count > 0:
                    pipe.hset(key, field, count)
                else:
                    pipe.hdel(key, field)
            pipe.pexpire(key, ttl_ms + 1000)
            pipe.zadd(NODES_KEY, {self.node_id: now_ms() + ttl_ms})
            pipe.zremrangebyscore(NODES_KEY, "-inf", now_ms() - 60_000)
            had_marker = (await pipe.execute())[0]
        if not full and not had_marker:
            log.info("presence: Redis lost this node's counts; writing them again")
            self._dirty = None
            self._wake.set()

    def _count_of(self, field: str) -> int:
        kind, *ids = field.split(SEP, 2)  # a user id may hold anything
        if kind == "a":
            return self._apps.get(ids[0], 0)
        return self._users.get((ids[0], ids[1]), 0)

    async def _flush_last_active_forever(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self.flush_last_active()
                await self.record_peaks()
            except Exception as exc:  # kept for the next round
                log.warning("presence: could not record last activity (%s)", exc)

    async def record_peaks(self) -> None:
        """Raise today's ``socket_peaks`` row of every app this node held sockets of
        since the last call to (most held here) + (open on the other nodes now)."""
        held, self._held_most = self._held_most, dict(self._apps)
        if not held:
            return
        day = utc_day(now_ms() // 1000)
        apps = list(held)
        samples = dict(held)
        for counts in await self._from_other_nodes([_app_field(a) for a in apps]):
            for app_id, n in zip(apps, counts, strict=True):
                samples[app_id] += int(n or 0)
        rises = {a: n for a, n in samples.items() if n > self._recorded_peaks.get((a, day), 0)}
        if not rises:
            return
        try:
            async with self._db.write() as s:
                live = set(
                    (await s.execute(select(AppRow.id).where(AppRow.id.in_(rises)))).scalars()
                )
                known = [a for a in rises if a in live]  # not deleted meanwhile
                if not known:
                    return
                await s.execute(
                    self._db.insert_ignoring_duplicates(SocketPeakRow),
                    [{"app_id": a, "day": day, "peak": 0} for a in known],
                )
                table = cast(Table, SocketPeakRow.__table__)
                await (await s.connection()).execute(
                    update(table)
                    .where(
                        table.c.app_id == bindparam("a"),
                        table.c.day == day,
                        table.c.peak < bindparam("n"),
                    )
                    .values(peak=bindparam("n")),
                    [{"a": a, "n": rises[a]} for a in known],
                )
        except Exception:
            for app_id, n in held.items():  # sampled again with the next call
                self._held_most[app_id] = max(self._held_most.get(app_id, 0), n)
            raise
        self._recorded_peaks = {k: v for k, v in self._recorded_peaks.items() if k[1] == day}
        self._recorded_peaks.update({(a, day): n for a, n in rises.items()})

    async def flush_last_active(self) -> None:
        """Write the pending ``last_active_at`` times, one statement for all of them."""
        if not self._last_active:
            return
        pending, self._last_active = self._last_active, {}
        rows = [{"a": a, "u": u, "t": t} for (a, u), t in pending.items()]
        statement = (
            update(_user_table)
            .where(_user_table.c.app_id == bindparam("a"), _user_table.c.id == bindparam("u"))
            .values(last_active_at=bindparam("t"))
        )
        try:
            async with self._db.write() as s:
                await (await s.connection()).execute(statement, rows)
        except Exception:
            for key, t in pending.items():  # not lost: retried with the next flush
                self._last_active.setdefault(key, t)
            raise
