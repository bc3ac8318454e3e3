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
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.broker import Broker
from parley.services.clock import now_ms
from parley.storage.db import Database
from parley.storage.tables import AuthChangeRow

log = logging.getLogger("parley.changes")
CHANNEL = "auth-changes"
POLL_WINDOW_MS = 30_000  # rows this recent are read on each poll (commit order may lag)
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
        self._seen: dict[int, int] = {}  # change id → its time, for rows in the poll window
        self._last_cleanup = 0

    async def record(self, session: AsyncSession, change: Change) -> None:
        session.add(
            AuthChangeRow(
                app_id=change.app_id, kind=change.kind, subject=change.subject, at=now_ms()
            )
        )

    async def announce(self, change: Change) -> None:
        self._apply(change)
        await self._broker.publish(
            CHANNEL, orjson.dumps({"a": change.app_id, "k": change.kind, "s": change.subject})
        )

    def on_broker_message(self, data: bytes) -> None:
        try:
            msg = orjson.loads(data)
            self._apply(Change(str(msg["a"]), str(msg["k"]), str(msg.get("s", ""))))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("ignored a malformed change message")

    async def poll_once(self) -> None:
        now = now_ms()
        async with self._db.read() as s:
            rows = (
                (
                    await s.execute(
                        select(AuthChangeRow).where(AuthChangeRow.at >= now - POLL_WINDOW_MS)
                    )
                )
                .scalars()
                .all()
            )
        for row in rows:
            if row.id not in self._seen:
                self._seen[row.id] = row.at
                self._apply(Change(row.app_id, row.kind, row.subject))
        horizon = now - 2 * POLL_WINDOW_MS
        self._seen = {i: at for i, at in self._seen.items() if at >= horizon}
        if now - self._last_cleanup > 600_000:
            self._last_cleanup = now
            async with self._db.write() as s:
                await s.execute(delete(AuthChangeRow).where(AuthChangeRow.at < now - KEEP_MS))

    async def prime(self) -> None:
        """Mark what is already in the log as seen: a fresh node has an empty cache."""
        async with self._db.read() as s:
            rows = (
                await s.execute(
                    select(AuthChangeRow.id, AuthChangeRow.at).where(
                        AuthChangeRow.at >= now_ms() - POLL_WINDOW_MS
                    )
                )
            ).all()
        self._seen = {r.id: r.at for r in rows}

    async def poll_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.poll_once()
            except Exception:
                log.warning("change log poll failed", exc_info=True)
