"""The figures behind the usage page: per UTC day over a window ending today.

Requests and rejections come from the per-key usage rows (``key_usage``), flushed first
so the page is current to the second; messages and active users (distinct senders) from
the messages themselves; live sockets from presence (every node) and the daily peaks from
presence's samples (``socket_peaks``, every node).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from parley.services.clock import now_ms
from parley.services.container import Services
from parley.services.keys import live_api_keys, live_client_key
from parley.storage.tables import ApiKeyRow, ClientKeyRow, KeyUsageRow, MessageRow, UserRow

WINDOWS = (7, 30, 90)
DAY_MS = 86_400_000


@dataclass
class KeyUsage:
    kind: str  # "api" | "client"
    key_id: str
    label: str
    status: str  # "live" | "overlap" | "grace" | "revoked"
    status_until: int | None = None
    requests: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    rejections: Counter[str] = field(default_factory=Counter)
    origins: list[str] = field(default_factory=list)
    last_used_at: int = 0

    @property
    def total(self) -> int:
        return sum(self.requests)

    @property
    def total_rejected(self) -> int:
        return sum(self.rejected)


@dataclass
class AppUsage:
    days: list[str]
    requests: list[int]
    rejected: list[int]
    rejections: list[tuple[str, int]]  # by error code, most first
    messages: list[int]
    active_users: list[int]  # distinct senders per day
    active_total: int  # distinct senders over the window
    users_total: int
    live_sockets: int
    peak_sockets: int  # today, all nodes
    peaks: list[int]  # most sockets at once per day
    keys: list[KeyUsage]

    @property
    def has_requests(self) -> bool:
        return any(self.requests)

    @property
    def has_messages(self) -> bool:
        return any(self.messages)


def day_list(days: int, today: datetime | None = None) -> list[str]:
    """The last ``days`` UTC days, oldest first, as ``YYYY-MM-DD``."""
    end = (today or datetime.now(UTC)).date()
    return [(end - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]


def _day_of(epoch_day: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=epoch_day)).date().isoformat()


async def app_usage(svc: Services, app_id: str, days: int) -> AppUsage:
    await svc.usage.flush(svc.db)
    names = day_list(days)
    index = {d: i for i, d in enumerate(names)}
    keys = await _keys(svc, app_id, names, index)
    messages, senders = [0] * days, [0] * days
    since = _epoch_ms(names[0])
    async with svc.db.read() as s:
        per_day = (MessageRow.created_at // DAY_MS).label("d")
        rows = await s.execute(
            select(per_day, func.count(), func.count(func.distinct(MessageRow.sender)))
            .where(MessageRow.app_id == app_id, MessageRow.created_at >= since)
            .group_by(per_day)
        )
        for epoch_day, count, distinct in rows:
            i = index.get(_day_of(int(epoch_day)))
            if i is not None:
                messages[i], senders[i] = int(count), int(distinct)
        active_total = (
            await s.execute(
                select(func.count(func.distinct(MessageRow.sender))).where(
                    MessageRow.app_id == app_id, MessageRow.created_at >= since
                )
            )
        ).scalar_one()
        users_total = (
            await s.execute(
                select(func.count()).select_from(UserRow).where(UserRow.app_id == app_id)
            )
        ).scalar_one()
    rejections: Counter[str] = Counter()
    for key in keys:
        rejections += key.rejections
    live = await svc.presence.connection_count(app_id)
    by_day = await svc.presence.daily_peaks(app_id, names[0])
    peaks = [by_day.get(day, 0) for day in names]
    peaks[-1] = max(peaks[-1], live)  # the next sample has not seen the latest sockets yet
    return AppUsage(
        days=names,
        requests=[sum(k.requests[i] for k in keys) for i in range(days)],
        rejected=[sum(k.rejected[i] for k in keys) for i in range(days)],
        rejections=rejections.most_common(),
        messages=messages,
        active_users=senders,
        active_total=int(active_total),
        users_total=int(users_total),
        live_sockets=live,
        peak_sockets=peaks[-1],
        peaks=peaks,
        keys=keys,
    )


def _epoch_ms(day: str) -> int:
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return int(start.timestamp()) * 1000


async def _keys(
    svc: Services, app_id: str, names: list[str], index: dict[str, int]
) -> list[KeyUsage]:
    """Every key that is live now or was used in the window, with its daily figures."""
    now = now_ms()
    found: dict[tuple[str, str], KeyUsage] = {}
    async with svc.db.read() as s:
        api_keys = await s.execute(
            select(ApiKeyRow).where(ApiKeyRow.app_id == app_id).order_by(ApiKeyRow.created_at)
        )
        for api_key in api_keys.scalars():
            found[("api", api_key.id)] = _api_key(api_key, now, len(names))
        client_keys = await s.execute(
            select(ClientKeyRow)
            .where(ClientKeyRow.app_id == app_id)
            .order_by(ClientKeyRow.created_at)
        )
        for client_key in client_keys.scalars():
            found[("client", client_key.id)] = _client_key(client_key, now, len(names))
        usage = await s.execute(
            select(KeyUsageRow).where(KeyUsageRow.app_id == app_id, KeyUsageRow.day >= names[0])
        )
        used: set[tuple[str, str]] = set()
        for row in usage.scalars():
            key = found.get((row.key_kind, row.key_id))
            i = index.get(row.day)
            if key is None or i is None:
                continue
            used.add((row.key_kind, row.key_id))
            _add_day(key, i, row)
    return [k for ident, k in found.items() if k.status != "revoked" or ident in used]


def _add_day(key: KeyUsage, i: int, row: KeyUsageRow) -> None:
    rejections: dict[str, Any] = dict(row.rejections)
    key.requests[i] += int(row.requests)
    key.rejected[i] += sum(int(v) for v in rejections.values())
    key.rejections.update({str(k): int(v) for k, v in rejections.items()})
    key.origins = list(dict.fromkeys([*key.origins, *row.origins]))
    key.last_used_at = max(key.last_used_at, int(row.last_used_at))


def _api_key(row: ApiKeyRow, now: int, days: int) -> KeyUsage:
    status, until = "live", None
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        status = "revoked"
    elif row.expires_at is not None:
        status, until = "overlap", row.expires_at
    return KeyUsage("api", row.id, row.display, status, until, [0] * days, [0] * days)


def _client_key(row: ClientKeyRow, now: int, days: int) -> KeyUsage:
    status, until = "live", None
    if row.revoked_at is not None:
        status = "revoked"
        if row.grace_until is not None and row.grace_until > now:
            status, until = "grace", row.grace_until
    label = f"Client Key {row.id[:8]}"
    return KeyUsage("client", row.id, label, status, until, [0] * days, [0] * days)


@dataclass
class KeyOverview:
    """What the settings page lists besides the live Client Key itself."""

    api_keys: list[ApiKeyRow]  # working now, oldest first (a rotated one may be ending)
    client_key_created_at: int | None
    client_keys_in_grace: list[ClientKeyRow]


async def key_overview(svc: Services, app_id: str) -> KeyOverview:
    now = now_ms()
    async with svc.db.read() as s:
        api_keys = await live_api_keys(s, app_id)
        live = await live_client_key(s, app_id)
        graced = (
            await s.execute(
                select(ClientKeyRow)
                .where(ClientKeyRow.app_id == app_id, ClientKeyRow.grace_until > now)
                .order_by(ClientKeyRow.grace_until)
            )
        ).scalars()
        return KeyOverview(list(api_keys), live.created_at if live else None, list(graced))
