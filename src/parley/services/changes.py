"""Revocations reach every node.

A service that revokes something calls :meth:`ChangeFeed.record` inside its transaction
(a row in ``auth_changes``) and :meth:`ChangeFeed.announce` after commit. Announcing drops
the cached entries on this node at once and publishes on the broker, which drops them on
the other nodes within milliseconds. Each node also polls the log every second, which
covers a broker message lost to a Redis restart and revocations made by another process
such as the CLI while the server runs on the in-memory broker.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.broker import Broker
from parley.services.clock import now_ms
from parley.storage.db import Database
from parley.storage.tables import AuthChangeRow

log = logging.getLogger("parley.changes")
CHANNEL = "auth-changes"
POLL_OVERLAP = 1000  # ids below the highest seen that are read again (late commits)...
# ...if recorded this recently: a transaction commits within seconds of recording its
# change, so older rows were seen already. Without this bound every poll read the last
# thousand rows again (a second's worth on a server issuing tokens briskly).
LATE_COMMIT_MS = 60_000
KEEP_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Change:
    app_id: str
    kind: str  # "app" | "user" (tokens) | "profile" (one user) | "profiles" (all of an app)
    subject: str = ""


class ChangeFeed:
    def __init__(self, db: Database, broker: Broker, apply: Callable[[Change], None]) -> None:
        self._db = db
        self._broker = broker
        self._apply = apply
        self._node = secrets.token_hex(8)  # to skip our own changes echoed by the broker
        self._seen: set[int] = set()  # change ids applied, above the poll floor
        self._recorded: dict[Change, AuthChangeRow] = {}
        self._max_id = 0
        self._last_cleanup = 0

    async def record(self, session: AsyncSession, change: Change) -> None:
        row = AuthChangeRow(
            app_id=change.app_id, kind=change.kind, subject=change.subject, at=now_ms()
        )
        session.add(row)
        # Kept until announce(): once committed, the row's id marks the change as applied
        # here, so that the next poll does not apply it a second time (dropping caches
        # filled since). A rolled-back change is never announced; the cap bounds those.
        if len(self._recorded) > 1000:
            self._recorded.clear()
        self._recorded[change] = row

    async def announce(self, change: Change) -> None:
        row = self._recorded.pop(change, None)
        if row is not None and row.id is not None:
            self._seen.add(row.id)
        self._apply(change)
        await self._broker.publish(
            CHANNEL,
            orjson.dumps(
                {"a": change.app_id, "k": change.kind, "s": change.subject, "n": self._node}
            ),
        )

    def on_broker_message(self, data: bytes) -> None:
        try:
            msg = orjson.loads(data)
            if msg.get("n") == self._node:
                return
            self._apply(Change(str(msg["a"]), str(msg["k"]), str(msg.get("s", ""))))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("ignored a malformed change message")

    async def poll_once(self) -> None:
        """Apply the log rows this node has not seen. Ids, not clocks: rows are read from
        a little below the highest id seen, since ids may commit out of order."""
        floor = max(0, self._max_id - POLL_OVERLAP)
        since = now_ms() - LATE_COMMIT_MS
        async with self._db.read() as s:
            rows = (
                await s.execute(
                    select(
                        AuthChangeRow.id,
                        AuthChangeRow.app_id,
                        AuthChangeRow.kind,
                        AuthChangeRow.subject,
                    )
                    .where(AuthChangeRow.id > floor, AuthChangeRow.at >= since)
                    .order_by(AuthChangeRow.id)
                )
            ).all()
        for row in rows:
            if row.id not in self._seen:
                self._seen.add(row.id)
                self._apply(Change(row.app_id, row.kind, row.subject))
            self._max_id = max(self._max_id, row.id)
        floor = self._max_id - POLL_OVERLAP
        self._seen = {i for i in self._seen if i > floor}
        now = now_ms()
        if now - self._last_cleanup > 600_000:
            self._last_cleanup = now
            async with self._db.write() as s:
                await s.execute(delete(AuthChangeRow).where(AuthChangeRow.at < now - KEEP_MS))

    async def prime(self) -> None:
        """Start from the end of the log: a fresh node has an empty cache."""
        async with self._db.read() as s:
            latest = (await s.execute(select(func.max(AuthChangeRow.id)))).scalar()
        self._max_id = int(latest or 0)
        floor = self._max_id - POLL_OVERLAP
        async with self._db.read() as s:
            ids = await s.execute(select(AuthChangeRow.id).where(AuthChangeRow.id > floor))
            self._seen = set(ids.scalars())

    async def poll_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.poll_once()
            except Exception:
                log.warning("change log poll failed", exc_info=True)
