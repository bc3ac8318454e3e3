"""API Keys and Client Keys of an application: issue, show, rotate, revoke.

Both kinds are created inside the caller's transaction; revocations are recorded in the
change log and must be announced by the caller after commit (see ``KeyService``).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.services import crypto
from parley.services.changes import Change, ChangeFeed
from parley.services.clock import now_ms
from parley.services.errors import Conflict, NotFound
from parley.storage.db import Database
from parley.storage.tables import ApiKeyRow, ClientKeyRow


def client_key_token(master: bytes, row: ClientKeyRow) -> str:
    """The Client Key JWT of a key row. Deterministic, so it can be shown again any time
    without being stored: it is public by design, only its signing secret is not."""
    secret = crypto.derive_secret(master, "client-key:" + row.app_id, row.salt)
    return crypto.sign_jwt(
        {"clientId": row.app_id, "createAt": row.created_at, "kid": row.id}, secret
    )


async def add_api_key(session: AsyncSession, app_id: str) -> str:
    plain = crypto.new_api_key()
    session.add(
        ApiKeyRow(
            id=crypto.new_id(),
            app_id=app_id,
            key_hash=crypto.digest(plain),
            display=crypto.api_key_display(plain),
            created_at=now_ms(),
        )
    )
    return plain


async def add_client_key(session: AsyncSession, master: bytes, app_id: str) -> str:
    row = ClientKeyRow(
        id=crypto.new_id(), app_id=app_id, salt=crypto.new_salt(), created_at=now_ms()
    )
    session.add(row)
    return client_key_token(master, row)


async def live_api_keys(s: AsyncSession, app_id: str) -> list[ApiKeyRow]:
    """API Keys that work now: not revoked, overlap (if any) not over."""
    now = now_ms()
    rows = (
        await s.execute(
            select(ApiKeyRow)
            .where(ApiKeyRow.app_id == app_id, ApiKeyRow.revoked_at.is_(None))
            .order_by(ApiKeyRow.created_at)
        )
    ).scalars()
    return [r for r in rows if r.expires_at is None or r.expires_at > now]


async def live_client_key(s: AsyncSession, app_id: str) -> ClientKeyRow | None:
    """The app's one live Client Key (keys in a grace period are no longer "live")."""
    return (
        await s.execute(
            select(ClientKeyRow)
            .where(ClientKeyRow.app_id == app_id, ClientKeyRow.revoked_at.is_(None))
            .order_by(ClientKeyRow.created_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


class KeyService:
    def __init__(self, db: Database, master: bytes, changes: ChangeFeed) -> None:
        self._db = db
        self._master = master
        self._changes = changes

    # -- API Keys -----------------------------------------------------------------

    async def rotate_api_key(self, app_id: str, overlap_seconds: int = 0) -> str:
        """A new API Key; the old ones stop at once, or after ``overlap_seconds``."""
        now = now_ms()
        async with self._db.write() as s:
            live = await live_api_keys(s, app_id)
            for row in live:
                if overlap_seconds > 0:
                    until = now + overlap_seconds * 1000
                    row.expires_at = min(row.expires_at or until, until)
                else:
                    row.revoked_at = now
            plain = await add_api_key(s, app_id)
            await self._changes.record(s, Change(app_id, "app"))
        await self._changes.announce(Change(app_id, "app"))
        return plain

    async def revoke_api_keys(self, app_id: str) -> int:
        """Revoke every API Key of the app; ``rotate`` issues a new one."""
        async with self._db.write() as s:
            live = await live_api_keys(s, app_id)
            for row in live:
                row.revoked_at = now_ms()
            await self._changes.record(s, Change(app_id, "app"))
        await self._changes.announce(Change(app_id, "app"))
        return len(live)

    # -- Client Keys ----------------------------------------------------------------

    async def client_key(self, app_id: str) -> str:
        async with self._db.read() as s:
            row = await live_client_key(s, app_id)
        if row is None:
            raise NotFound("The application has no live Client Key", code="CLIENT_KEY_NOT_FOUND")
        return client_key_token(self._master, row)

    async def revoke_client_key(
        self, app_id: str, grace_seconds: int = 0, *, rotated_only: bool = False
    ) -> list[str]:
        """Revoke the live Client Key (after ``grace_seconds``), and end at once the grace
        of keys rotated out earlier: revoking is what one does when a key has leaked.
        ``rotated_only`` ends only those graces and keeps the live key.
        Returns the ids of the keys that stop working."""
        now = now_ms()
        async with self._db.write() as s:
            row = None if rotated_only else await live_client_key(s, app_id)
            in_grace = (
                (
                    await s.execute(
                        select(ClientKeyRow).where(
                            ClientKeyRow.app_id == app_id, ClientKeyRow.grace_until > now
                        )
                    )
                )
                .scalars()
                .all()
            )
            if row is None and not in_grace:
                raise NotFound(
                    "The application has no Client Key to revoke", code="CLIENT_KEY_NOT_FOUND"
                )
            for old in in_grace:
                old.grace_until = now
            if row is not None:
                self._revoke(row, grace_seconds)
            await self._changes.record(s, Change(app_id, "app"))
        await self._changes.announce(Change(app_id, "app"))
        return [k.id for k in (*in_grace, *([row] if row else []))]

    async def generate_client_key(self, app_id: str) -> str:
        """Issue the app's Client Key; refused while one is live (one per app: revoke first)."""
        async with self._db.write() as s:
            if await live_client_key(s, app_id) is not None:
                raise Conflict(
                    "The application already has a live Client Key; revoke it first",
                    code="CLIENT_KEY_EXISTS",
                )
            return await add_client_key(s, self._master, app_id)

    async def rotate_client_key(self, app_id: str, grace_seconds: int = 0) -> str:
        """Revoke + generate in one step; the old key still works for ``grace_seconds``."""
        async with self._db.write() as s:
            row = await live_client_key(s, app_id)
            if row is not None:
                self._revoke(row, grace_seconds)
            token = await add_client_key(s, self._master, app_id)
            await self._changes.record(s, Change(app_id, "app"))
        await self._changes.announce(Change(app_id, "app"))
        return token

    @staticmethod
    def _revoke(row: ClientKeyRow, grace_seconds: int) -> None:
        now = now_ms()
        row.revoked_at = now
        row.grace_until = now + grace_seconds * 1000 if grace_seconds > 0 else None
