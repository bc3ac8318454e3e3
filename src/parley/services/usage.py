"""Usage monitoring per key: requests, rejections by error code, last use, Origins seen.

Requests are counted in memory and written in batches (one upsert per key and day every
few seconds), so monitoring costs no database write per request. A node that dies loses
at most its last unflushed interval of counts.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from parley.services.clock import iso, now_ms, utc_day
from parley.storage.db import Database
from parley.storage.tables import AppRow, KeyUsageRow

log = logging.getLogger("parley.usage")
MAX_ORIGINS_PER_DAY = 50


@dataclass
class _Tally:
    app_id: str
    requests: int = 0
    rejections: Counter[str] = field(default_factory=Counter)
    origins: set[str] = field(default_factory=set)
    last_used_at: int = 0


class UsageRecorder:
    def __init__(self) -> None:
        self._pending: dict[tuple[str, str, str], _Tally] = {}

    def record(
        self, key_kind: str, key_id: str, app_id: str, origin: str | None, error: str | None
    ) -> None:
        now = now_ms()
        day = utc_day(now // 1000)
        tally = self._pending.get((key_kind, key_id, day))
        if tally is None:
            tally = self._pending[(key_kind, key_id, day)] = _Tally(app_id)
        tally.requests += 1
        tally.last_used_at = now
        if error:
            tally.rejections[error] += 1
        if origin and len(tally.origins) < MAX_ORIGINS_PER_DAY:
            tally.origins.add(origin[:200])

    async def flush(self, db: Database) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        try:
            async with db.write() as s:
                app_ids = {t.app_id for t in pending.values()}
                live = set(
                    (await s.execute(select(AppRow.id).where(AppRow.id.in_(app_ids)))).scalars()
                )
                mine = {k: t for k, t in pending.items() if t.app_id in live}
                if not mine:  # every app of these counts was deleted meanwhile
                    return
                # Nodes flush the same (key, day) rows: create the missing ones without
                # failing on another node's insert, then lock them while adding, so no
                # node's counts overwrite another's.
                insert = db.insert_ignoring_duplicates(KeyUsageRow)
                await s.execute(
                    insert.values(
                        [
                            {
                                "key_kind": kind,
                                "key_id": key_id,
                                "day": day,
                                "app_id": tally.app_id,
                                "requests": 0,
                                "rejections": {},
                                "origins": [],
                                "last_used_at": 0,
                            }
                            for (kind, key_id, day), tally in mine.items()
                        ]
                    )
                )
                for (kind, key_id, day), tally in mine.items():
                    row = await s.get(KeyUsageRow, (kind, key_id, day), with_for_update=True)
                    assert row is not None
                    row.requests += tally.requests
                    merged = Counter(row.rejections) + tally.rejections
                    row.rejections = dict(merged)
                    origins = list(dict.fromkeys([*row.origins, *sorted(tally.origins)]))
                    row.origins = origins[:MAX_ORIGINS_PER_DAY]
                    row.last_used_at = max(row.last_used_at, tally.last_used_at)
        except Exception:
            log.warning("usage flush failed; retrying later", exc_info=True)
            for key, tally in pending.items():
                kept = self._pending.setdefault(key, _Tally(tally.app_id))
                kept.requests += tally.requests
                kept.rejections += tally.rejections
                kept.origins |= tally.origins
                kept.last_used_at = max(kept.last_used_at, tally.last_used_at)


async def usage_report(db: Database, app_id: str) -> list[dict[str, Any]]:
    """Per key and day, newest first, as stored (flush first for up-to-the-second figures)."""
    async with db.read() as s:
        rows = (
            await s.execute(
                select(KeyUsageRow)
                .where(KeyUsageRow.app_id == app_id)
                .order_by(KeyUsageRow.day.desc(), KeyUsageRow.key_kind, KeyUsageRow.key_id)
            )
        ).scalars()
        return [
            {
                "day": r.day,
                "keyKind": r.key_kind,
                "keyId": r.key_id,
                "requests": r.requests,
                "rejections": dict(r.rejections),
                "origins": list(r.origins),
                "lastUsedAt": iso(r.last_used_at),
            }
            for r in rows
        ]
