"""An app's users (IMKIT "clients") and their access tokens.

Tokens come in two kinds: issued by Parley (an HS256 JWT carrying the user ``id``, which
web SDKs decode locally) or assigned by the customer's backend (an opaque string with an
expiry). Both are stored only as SHA-256 digests, unique per app. Issuing or binding a
token replaces the user's earlier tokens, as the IMKIT docs specify; ``DELETE`` revokes one
or all.
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.services import crypto
from parley.services.auth import AppInfo, Authenticator, TtlCache
from parley.services.changes import Change, ChangeFeed
from parley.services.clock import iso, now_ms, parse_time
from parley.services.errors import Conflict, InvalidRequest, NotFound, TooLarge
from parley.services.query_filter import build_filter
from parley.storage.db import Database
from parley.storage.tables import UserRow, UserTokenRow

MAX_USER_ID = 255
MAX_PROFILE_BYTES = 16_384
MAX_TOKEN = 4096
DEFAULT_PAGE, MAX_PAGE = 50, 100
MAX_BATCH = 1000

# Keys with a meaning of their own (wire name → column, longest accepted value); never
# stored among a user's custom fields.
KNOWN_FIELDS = {
    "nickname": ("nickname", 255),
    "avatarUrl": ("avatar_url", 4096),
    "description": ("description", 4096),
}
# Fields a user may not set on itself (the backend may, with the API Key).
SERVER_KEPT = {"isRobot", "mute", "notificationEnabled"}
LATEST_TIME_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
RESERVED = {
    "_id",
    "id",
    "appID",
    "__v",
    "token",
    "expirationDate",
    "expirationDateMS",
    "issueAccessToken",
    "createdAt",
    "updatedAt",
    "createdAtMS",
    "updatedAtMS",
    "lastLoginTime",
    "lastLoginTimeMS",
    "isSocketConnected",
    "clientId",
}


def user_public(row: UserRow) -> dict[str, Any]:
    """The contract's Client object."""
    return {
        **row.profile,
        "_id": row.id,
        "id": row.id,
        "appID": row.app_id,
        "__v": 0,
        "nickname": row.nickname,
        "avatarUrl": row.avatar_url,
        "description": row.description,
        "isRobot": bool(row.profile.get("isRobot", False)),
        "mute": row.profile.get("mute", []),
        "notificationEnabled": row.profile.get("notificationEnabled", True),
        "lastLoginTime": iso(row.last_login_at),
        "lastLoginTimeMS": row.last_login_at or 0,
        "createdAt": iso(row.created_at),
        "createdAtMS": row.created_at,
        "updatedAt": iso(row.updated_at),
        "updatedAtMS": row.updated_at,
    }


EMBEDDED_FIELDS = (
    "_id",
    "id",
    "nickname",
    "avatarUrl",
    "description",
    "isRobot",
    "lastLoginTimeMS",
)


def user_embedded(profile: dict[str, Any]) -> dict[str, Any]:
    """The short Client form embedded as a message sender or room member; the status a
    user set on itself (``POST /me``) travels with it, so members of its rooms see it."""
    embedded = {**{k: profile.get(k) for k in EMBEDDED_FIELDS}, "clientType": "user"}
    if profile.get("status") is not None:
        embedded["status"] = profile["status"]
    return embedded


def token_record(row: UserTokenRow, user_id: str) -> dict[str, Any]:
    """What a revocation reports of a token: never the token itself, which is not stored."""
    return {
        "client": user_id,
        "expirationDate": iso(row.expires_at),
        "expirationDateMS": row.expires_at,
        "createdAt": iso(row.created_at),
        "issued": row.issued,
    }


class UserService:
    def __init__(
        self,
        db: Database,
        auth: Authenticator,
        changes: ChangeFeed,
        token_lifetime_days: int,
        profile_cache_seconds: float = 60.0,
    ) -> None:
        self._db = db
        self._auth = auth
        self._changes = changes
        self._lifetime_ms = token_lifetime_days * 86_400_000
        # Public profiles by (app, user): GET /me and every embedded sender read them far
        # more often than anyone writes them. Dropped on every change (see forget_*).
        self._profiles = TtlCache(profile_cache_seconds)

    async def upsert(self, app_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /admin/clients: create or partially update; optionally issue or bind a token."""
        user_id = _user_id(body.get("_id"))
        issue = body.get("issueAccessToken", False)
        if not isinstance(issue, bool):
            raise InvalidRequest("issueAccessToken must be a boolean")
        assigned = body.get("token")
        if assigned is not None and issue:
            raise InvalidRequest("Send either issueAccessToken or token, not both")
        expires_at = None
        if body.get("expirationDate") is not None:
            if assigned is None and not issue:
                raise InvalidRequest("expirationDate goes with token or issueAccessToken")
            expires_at = _future_time(body["expirationDate"])
        if assigned is not None:
            assigned = _token_text(assigned)
            expires_at = expires_at or now_ms() + self._lifetime_ms
        token: str | None = None
        # Read before the write transaction: never wait for a second connection while
        # holding one.
        app = await self._auth.app(app_id) if issue else None
        async with self._db.write() as s:
            row = await self._apply_profile(s, app_id, user_id, body)
            if issue:
                token, expires_at = self._issue(app, row, expires_at)
            secret = token or assigned
            if secret:
                await self._replace_tokens(s, row, secret, expires_at, issued=issue)
                await self._changes.record(s, Change(app_id, "user", user_id))
            result = user_public(row)
        # A token change is a revocation (logged for every node); a profile change only
        # needs caches refreshed, which the broker does.
        await self._changes.announce(Change(app_id, "user" if secret else "profile", user_id))
        if secret:
            result["token"] = secret
            result["expirationDate"] = iso(expires_at)
            result["expirationDateMS"] = expires_at
            result["issueAccessToken"] = issue
        return result

    async def upsert_many(self, app_id: str, items: Any) -> int:
        """POST /admin/clients/list: profiles only, no tokens."""
        if not isinstance(items, list):
            raise InvalidRequest("data must be a list of clients", code="MISSING_PARAMETER")
        if len(items) > MAX_BATCH:
            raise TooLarge(f"At most {MAX_BATCH} clients per call")
        for item in items:
            if not isinstance(item, dict):
                raise InvalidRequest("Each client must be an object")
            if "token" in item or "issueAccessToken" in item:
                raise InvalidRequest("Tokens are not accepted in a batch; use /admin/clients")
        async with self._db.write() as s:
            for item in items:
                await self._apply_profile(s, app_id, _user_id(item.get("_id")), item)
        await self._changes.announce(Change(app_id, "profiles"))
        return len(items)

    async def search(self, app_id: str, q: Any, skip: int, limit: int) -> dict[str, Any]:
        if limit > MAX_PAGE:
            raise TooLarge(f"limit may be at most {MAX_PAGE}", code="RESULT_TOO_LARGE")
        if limit < 0 or skip < 0:
            raise InvalidRequest("skip and limit must not be negative")
        limit = limit or DEFAULT_PAGE
        condition = build_filter(
            q or {},
            {
                "_id": UserRow.id,
                "id": UserRow.id,
                "nickname": UserRow.nickname,
                "avatarUrl": UserRow.avatar_url,
                "description": UserRow.description,
            },
        )
        where = (UserRow.app_id == app_id, condition)
        async with self._db.read() as s:
            total = await s.execute(select(func.count()).select_from(UserRow).where(*where))
            rows = (
                (
                    await s.execute(
                        select(UserRow).where(*where).order_by(UserRow.id).offset(skip).limit(limit)
                    )
                )
                .scalars()
                .all()
            )
            return {"totalCount": total.scalar_one(), "data": [user_public(r) for r in rows]}

    async def get(self, app_id: str, user_id: str) -> dict[str, Any]:
        """A user's profile by an id from the request (checked first)."""
        return await self.profile(app_id, _user_id(user_id))

    async def profile(self, app_id: str, user_id: str) -> dict[str, Any]:
        """A user's profile by an id that is known to be well formed (an authenticated
        caller's own id)."""
        profile: dict[str, Any] | None = self._profiles.get((app_id, user_id))
        if profile is None:
            generation = self._profiles.generation
            async with self._db.read() as s:
                row = await s.get(UserRow, (app_id, user_id))
            if row is None:
                raise NotFound(f"Client {user_id!r} not found", code="CLIENT_NOT_FOUND")
            profile = user_public(row)
            self._profiles.put((app_id, user_id), profile, generation)
        return dict(profile)

    async def profiles(
        self, app_id: str, user_ids: list[str], session: AsyncSession | None = None
    ) -> dict[str, dict[str, Any]]:
        """Profiles of several users at once (one query for the ones not cached); ids
        that name no user are left out. A caller inside a transaction passes its
        ``session``: opening a second connection while holding one can exhaust the pool
        under load, every request holding one connection and waiting for another."""
        found: dict[str, dict[str, Any]] = {}
        missing = []
        for user_id in dict.fromkeys(user_ids):
            cached = self._profiles.get((app_id, user_id))
            if cached is None:
                missing.append(user_id)
            else:
                found[user_id] = cached
        if not missing:
            return found
        generation = self._profiles.generation
        if session is not None:
            await self._load_profiles(session, app_id, missing, found, generation)
        else:
            async with self._db.read() as s:
                await self._load_profiles(s, app_id, missing, found, generation)
        return found

    async def _load_profiles(
        self,
        s: AsyncSession,
        app_id: str,
        missing: list[str],
        found: dict[str, dict[str, Any]],
        generation: int,
    ) -> None:
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            query = select(UserRow).where(UserRow.app_id == app_id, UserRow.id.in_(chunk))
            for row in (await s.execute(query)).scalars():
                found[row.id] = user_public(row)
                self._profiles.put((app_id, row.id), found[row.id], generation)

    def forget_profile(self, app_id: str, user_id: str) -> None:
        self._profiles.drop((app_id, user_id))

    def forget_all_profiles(self) -> None:
        self._profiles.clear()

    def forget_profiles(self, app_id: str) -> None:
        self._profiles.drop_where(lambda key, _v: key[0] == app_id)

    async def update_profile(
        self, app_id: str, user_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """POST /me: the user edits its own profile (never its id or tokens)."""
        async with self._db.write() as s:
            if await s.get(UserRow, (app_id, user_id)) is None:
                raise NotFound(f"Client {user_id!r} not found", code="CLIENT_NOT_FOUND")
            own = {k: v for k, v in body.items() if k not in SERVER_KEPT}
            row = await self._apply_profile(s, app_id, user_id, own)
            result = user_public(row)
        await self._changes.announce(Change(app_id, "profile", user_id))
        return result

    async def set_server_kept(self, app_id: str, user_id: str, change: Any) -> dict[str, Any]:
        """Change fields the user may not write directly (mute list, notifications) through
        ``change(profile) -> profile``; returns the Client."""
        async with self._db.write() as s:
            row = await s.get(UserRow, (app_id, user_id))
            if row is None:
                raise NotFound(f"Client {user_id!r} not found", code="CLIENT_NOT_FOUND")
            row.profile = change(dict(row.profile))
            row.updated_at = now_ms()
            result = user_public(row)
        await self._changes.announce(Change(app_id, "profile", user_id))
        return result

    async def revoke_tokens_by_digest(
        self, app_id: str, user_id: str, *, only: str | None = None, keep: str | None = None
    ) -> list[dict[str, Any]]:
        """Revoke the token with digest ``only``, or every token but ``keep`` (logout)."""
        async with self._db.write() as s:
            query = select(UserTokenRow).where(
                UserTokenRow.app_id == app_id, UserTokenRow.user_id == user_id
            )
            if only is not None:
                query = query.where(UserTokenRow.token_hash == only)
            if keep is not None:
                query = query.where(UserTokenRow.token_hash != keep)
            rows = (await s.execute(query)).scalars().all()
            for row in rows:
                await s.delete(row)
            await self._changes.record(s, Change(app_id, "user", user_id))
        await self._changes.announce(Change(app_id, "user", user_id))
        return [token_record(r, user_id) for r in rows]

    async def bind_token(
        self, app_id: str, user_id: str, token: Any, expiration: Any
    ) -> dict[str, Any]:
        """PUT /admin/clients/{id}/token: the backend assigns a token; old ones die at once."""
        user_id = _user_id(user_id)
        if token is None:
            raise InvalidRequest("token is required", code="MISSING_PARAMETER")
        token = _token_text(token)
        if expiration is None:
            raise InvalidRequest("expirationDate is required", code="MISSING_PARAMETER")
        expires_at = _future_time(expiration)
        async with self._db.write() as s:
            row = await s.get(UserRow, (app_id, user_id))
            if row is None:
                raise NotFound(f"Client {user_id!r} not found", code="CLIENT_NOT_FOUND")
            await self._replace_tokens(s, row, token, expires_at, issued=False)
            row.updated_at = now_ms()
            await self._changes.record(s, Change(app_id, "user", user_id))
            result = user_public(row)
        await self._changes.announce(Change(app_id, "user", user_id))
        return {
            **result,
            "token": token,
            "client": user_id,
            "issueAccessToken": False,
            "expirationDate": iso(expires_at),
            "expirationDateMS": expires_at,
        }

    async def revoke_tokens(self, app_id: str, user_id: str, token: Any = None) -> dict[str, Any]:
        """DELETE /admin/clients/{id}/token: one token (if given) or all of them."""
        user_id = _user_id(user_id)
        async with self._db.write() as s:
            if await s.get(UserRow, (app_id, user_id)) is None:
                raise NotFound(f"Client {user_id!r} not found", code="CLIENT_NOT_FOUND")
            query = select(UserTokenRow).where(
                UserTokenRow.app_id == app_id, UserTokenRow.user_id == user_id
            )
            if token is not None:
                query = query.where(UserTokenRow.token_hash == crypto.digest(_token_text(token)))
            rows = (await s.execute(query)).scalars().all()
            if token is not None and not rows:
                raise NotFound("Specified token not found for this client", code="TOKEN_NOT_FOUND")
            for row in rows:
                await s.delete(row)
            await self._changes.record(s, Change(app_id, "user", user_id))
        await self._changes.announce(Change(app_id, "user", user_id))
        return {
            "success": True,
            "message": "Token revoked successfully"
            if token is not None
            else "All tokens revoked successfully",
            "revokedTokens": len(rows),
            "data": [token_record(r, user_id) for r in rows],
        }

    # -- helpers ----------------------------------------------------------------------

    async def _apply_profile(
        self, s: AsyncSession, app_id: str, user_id: str, body: dict[str, Any]
    ) -> UserRow:
        now = now_ms()
        row = await s.get(UserRow, (app_id, user_id))
        if row is None:
            row = UserRow(app_id=app_id, id=user_id, profile={}, created_at=now, updated_at=now)
            s.add(row)
        for wire, (attr, longest) in KNOWN_FIELDS.items():
            if wire in body:
                value = body[wire]
                if value is not None and not isinstance(value, str):
                    raise InvalidRequest(f"{wire} must be a string")
                if value is not None and len(value) > longest:
                    raise InvalidRequest(f"{wire} has at most {longest} characters")
                setattr(row, attr, value)
        custom = {k: v for k, v in body.items() if k not in KNOWN_FIELDS and k not in RESERVED}
        if custom:
            profile = {**row.profile, **custom}
            try:
                size = len(orjson.dumps(profile))
            except orjson.JSONEncodeError:
                raise InvalidRequest(
                    "Custom fields must nest less than 250 levels and hold 64-bit integers"
                ) from None
            if size > MAX_PROFILE_BYTES:
                raise TooLarge(f"Custom fields exceed {MAX_PROFILE_BYTES} bytes")
            row.profile = profile
        row.updated_at = now
        return row

    def _issue(
        self, app: AppInfo | None, row: UserRow, expires_at: int | None = None
    ) -> tuple[str, int]:
        """A server-signed token for ``row``, valid for the default lifetime or until
        ``expires_at``."""
        if app is None:
            raise NotFound("No such application", code="APP_NOT_FOUND")
        now = now_ms()
        expires_at = expires_at or now + self._lifetime_ms
        claims: dict[str, Any] = {"id": row.id}
        if row.nickname:
            claims["nickname"] = row.nickname
        if row.avatar_url:
            claims["avatarUrl"] = row.avatar_url
        claims.update(iat=now // 1000, exp=expires_at // 1000, jti=secrets.token_urlsafe(12))
        return crypto.sign_jwt(claims, app.token_secret), expires_at

    async def _replace_tokens(
        self, s: AsyncSession, row: UserRow, token: str, expires_at: int | None, *, issued: bool
    ) -> None:
        assert expires_at is not None
        token_hash = crypto.digest(token)
        owner = (
            await s.execute(
                select(UserTokenRow.user_id).where(
                    UserTokenRow.app_id == row.app_id, UserTokenRow.token_hash == token_hash
                )
            )
        ).scalar_one_or_none()
        if owner is not None and owner != row.id:
            raise Conflict("This token already belongs to another client", code="TOKEN_CONFLICT")
        await s.execute(
            delete(UserTokenRow).where(
                UserTokenRow.app_id == row.app_id, UserTokenRow.user_id == row.id
            )
        )
        await s.flush()
        s.add(
            UserTokenRow(
                app_id=row.app_id,
                user_id=row.id,
                token_hash=token_hash,
                issued=issued,
                expires_at=expires_at,
                created_at=now_ms(),
            )
        )
        try:
            await s.flush()
        except IntegrityError:  # another request bound the same token a moment ago
            raise Conflict(
                "This token already belongs to another client", code="TOKEN_CONFLICT"
            ) from None


def _user_id(value: Any) -> str:
    if value is None:
        raise InvalidRequest("_id is required", code="MISSING_PARAMETER")
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        raise InvalidRequest("_id must be a non-empty printable string", code="INVALID_USER_ID")
    if "/" in value:  # it could never be named in a URL path like /admin/clients/{id}
        raise InvalidRequest("_id may not contain '/'", code="INVALID_USER_ID")
    if len(value) > MAX_USER_ID:
        raise InvalidRequest(f"_id has at most {MAX_USER_ID} characters", code="INVALID_USER_ID")
    return value


def _token_text(value: Any) -> str:
    """A token travels in an HTTP header: visible ASCII only, or it could never be sent."""
    if not isinstance(value, str) or not value:
        raise InvalidRequest("token must be a non-empty string")
    if len(value) > MAX_TOKEN or not all("!" <= c <= "~" for c in value):
        raise InvalidRequest(
            f"token must be at most {MAX_TOKEN} visible ASCII characters, without spaces"
        )
    return value


def _future_time(value: Any) -> int:
    try:
        ms = parse_time(value)
    except (ValueError, TypeError, OverflowError):
        raise InvalidRequest("expirationDate must be an ISO-8601 date or epoch ms") from None
    if ms <= now_ms():
        raise InvalidRequest("expirationDate must be in the future")
    if ms > LATEST_TIME_MS:
        raise InvalidRequest("expirationDate must be before the year 10000")
    return ms
