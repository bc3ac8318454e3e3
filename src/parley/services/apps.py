"""Applications (tenants): create, list, show, update, delete."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.services import crypto
from parley.services.changes import Change, ChangeFeed
from parley.services.clock import iso, now_ms
from parley.services.errors import Conflict, InvalidRequest, NotFound
from parley.services.keys import (
    add_api_key,
    add_client_key,
    client_key_token,
    live_api_keys,
    live_client_key,
)
from parley.storage.db import Database
from parley.storage.tables import AppDomainRow, AppRow

_HOST = re.compile(
    r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)
_IPV6 = re.compile(r"^\[[0-9a-f:.]+\]$")
_ORIGIN = re.compile(r"^https?://[^/\s?#]+$")


@dataclass
class AppView:
    id: str
    name: str
    domains: list[str]
    allowed_origins: list[str]
    rate_limit_per_minute: int | None
    created_at: str | None
    api_keys: list[str] = field(default_factory=list)  # displays only, never the secret
    client_key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "domains": self.domains,
            "allowedOrigins": self.allowed_origins,
            "rateLimitPerMinute": self.rate_limit_per_minute,
            "createdAt": self.created_at,
            "apiKeys": self.api_keys,
            "clientKey": self.client_key,
        }


@dataclass
class NewApp:
    """A freshly created app: the only time its API Key is ever shown."""

    app: AppView
    api_key: str
    client_key: str


def normalize_domain(domain: str) -> str:
    value = domain.strip().lower().rstrip(".")
    if value.startswith(("http://", "https://")):
        raise InvalidRequest(f"Domain {domain!r} must be a host name, without scheme")
    if not (_HOST.match(value) or _IPV6.match(value)):
        raise InvalidRequest(f"Domain {domain!r} is not a valid host name")
    return value


def normalize_origin(origin: str) -> str:
    value = origin.strip().rstrip("/")
    if not _ORIGIN.match(value):
        raise InvalidRequest(f"Origin {origin!r} must look like https://host[:port]")
    scheme, _, rest = value.partition("://")
    return f"{scheme.lower()}://{rest.lower()}"


class AppService:
    def __init__(self, db: Database, master: bytes, changes: ChangeFeed) -> None:
        self._db = db
        self._master = master
        self._changes = changes

    async def create(
        self, name: str, domains: list[str] | None = None, origins: list[str] | None = None
    ) -> NewApp:
        name = _valid_name(name)
        domains = _unique([normalize_domain(d) for d in domains or []])
        origins = _unique([normalize_origin(o) for o in origins or []])
        now = now_ms()
        app_id = str(uuid.uuid4())
        async with self._db.write() as s:
            await self._check_domains_free(s, app_id, domains)
            s.add(
                AppRow(
                    id=app_id,
                    name=name,
                    allowed_origins=origins,
                    token_salt=crypto.new_salt(),
                    created_at=now,
                    updated_at=now,
                )
            )
            await s.flush()
            s.add_all(AppDomainRow(domain=d, app_id=app_id) for d in domains)
            api_key = await add_api_key(s, app_id)
            client_key = await add_client_key(s, self._master, app_id)
            # New domains change every node's Host → app map, including servers that
            # learn of it only through the change log (an app created with the CLI).
            await self._changes.record(s, Change(app_id, "app"))
        await self._changes.announce(Change(app_id, "app"))
        return NewApp(await self.show(app_id), api_key, client_key)

    async def list_all(self) -> list[AppView]:
        async with self._db.read() as s:
            rows = (await s.execute(select(AppRow).order_by(AppRow.created_at))).scalars().all()
            return [await self._view(s, row) for row in rows]

    async def count(self) -> int:
        async with self._db.read() as s:
            return int((await s.execute(select(func.count()).select_from(AppRow))).scalar_one())

    async def resolve(self, ref: str) -> str:
        """An app id from an id or a (unique) name, as the CLI accepts either."""
        async with self._db.read() as s:
            rows = (
                (
                    await s.execute(
                        select(AppRow.id).where(or_(AppRow.id == ref, AppRow.name == ref))
                    )
                )
                .scalars()
                .all()
            )
        if not rows:
            raise NotFound(f"No application {ref!r}", code="APP_NOT_FOUND")
        if len(rows) > 1:
            raise InvalidRequest(f"Several applications are named {ref!r}; use the id")
        return rows[0]

    async def show(self, app_id: str) -> AppView:
        async with self._db.read() as s:
            row = await s.get(AppRow, app_id)
            if row is None:
                raise NotFound(f"No application {app_id!r}", code="APP_NOT_FOUND")
            return await self._view(s, row)

    async def update(
        self,
        app_id: str,
        *,
        name: str | None = None,
        domains: list[str] | None = None,
        origins: list[str] | None = None,
        rate_limit_per_minute: int | None = None,
    ) -> AppView:
        async with self._db.write() as s:
            row = await s.get(AppRow, app_id)
            if row is None:
                raise NotFound(f"No application {app_id!r}", code="APP_NOT_FOUND")
            if name is not None:
                row.name = _valid_name(name)
            if origins is not None:
                row.allowed_origins = _unique([normalize_origin(o) for o in origins])
            if rate_limit_per_minute is not None:
                if rate_limit_per_minute < 1:
                    raise InvalidRequest("The rate limit must be at least 1 per minute")
                row.rate_limit_per_minute = rate_limit_per_minute
            if domains is not None:
                wanted = _unique([normalize_domain(d) for d in domains])
                await self._check_domains_free(s, app_id, wanted)
                await s.execute(delete(AppDomainRow).where(AppDomainRow.app_id == app_id))
                s.add_all(AppDomainRow(domain=d, app_id=app_id) for d in wanted)
            row.updated_at = now_ms()
            await self._changes.record(s, Change(app_id, "app"))
        await self._changes.announce(Change(app_id, "app"))
        return await self.show(app_id)

    async def delete(self, app_id: str) -> None:
        """Delete the app and everything in it; its keys and tokens stop working at once."""
        async with self._db.write() as s:
            row = await s.get(AppRow, app_id)
            if row is None:
                raise NotFound(f"No application {app_id!r}", code="APP_NOT_FOUND")
            await s.delete(row)
            await self._changes.record(s, Change(app_id, "app"))
        await self._changes.announce(Change(app_id, "app"))

    async def _check_domains_free(self, s: AsyncSession, app_id: str, domains: list[str]) -> None:
        if not domains:
            return
        taken = (
            (
                await s.execute(
                    select(AppDomainRow.domain).where(
                        AppDomainRow.domain.in_(domains), AppDomainRow.app_id != app_id
                    )
                )
            )
            .scalars()
            .all()
        )
        if taken:
            raise Conflict(
                f"Domain already serves another application: {', '.join(taken)}",
                code="DOMAIN_TAKEN",
            )

    async def _view(self, s: AsyncSession, row: AppRow) -> AppView:
        domains = (
            (
                await s.execute(
                    select(AppDomainRow.domain)
                    .where(AppDomainRow.app_id == row.id)
                    .order_by(AppDomainRow.domain)
                )
            )
            .scalars()
            .all()
        )
        live_key = await live_client_key(s, row.id)
        return AppView(
            id=row.id,
            name=row.name,
            domains=list(domains),
            allowed_origins=list(row.allowed_origins),
            rate_limit_per_minute=row.rate_limit_per_minute,
            created_at=iso(row.created_at),
            api_keys=[k.display for k in await live_api_keys(s, row.id)],
            client_key=client_key_token(self._master, live_key) if live_key else None,
        )


def _valid_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidRequest("An application name has 1 to 200 characters")
    return name


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))
