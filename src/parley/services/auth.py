"""The auth layer: turns the credentials of a request (HTTP headers, later a socket
handshake) into a :class:`Principal`, or raises the contract's error. One code path for
every route and every transport.

Verified keys and tokens are cached per node. The cache is a speed-up, never the
authority on revocation: every revocation drops the affected entries at once on the node
that made it, on every other node through the broker, and — should a broker message be
lost — through the change log that each node polls (see :mod:`parley.services.changes`).
"""

from __future__ import annotations

import enum
import functools
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, String, bindparam, select

from parley.services import crypto
from parley.services.batched import BatchedLookup, chunks_by_app
from parley.services.clock import now_ms
from parley.services.errors import (
    ClientKeyMismatch,
    InsufficientPermissions,
    InvalidApiKey,
    InvalidClientKey,
    InvalidToken,
    MissingApiKey,
    MissingClientKey,
    ParleyError,
    RateLimitExceeded,
)
from parley.services.ratelimit import MemoryRateLimiter, RedisRateLimiter
from parley.services.usage import UsageRecorder
from parley.storage.db import Database
from parley.storage.driver import fetch
from parley.storage.tables import ApiKeyRow, AppDomainRow, AppRow, ClientKeyRow, UserTokenRow

MAX_TOKEN_LENGTH = 4096
_NEVER = 2**62


class Access(enum.Enum):
    """Which credential an operation needs. An API Key may call everything but PUBLIC
    operations need nothing at all."""

    PUBLIC = "public"  # no credential
    ADMIN = "admin"  # API Key only
    USER = "user"  # Client Key + user token (or API Key, acting as admin)
    CLIENT_KEY = "client_key"  # Client Key alone (or API Key)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a caller presented, already pulled out of its transport."""

    api_key: str | None = None
    client_key: str | None = None
    token: str | None = None
    host: str | None = None  # without port, lower case
    origin: str | None = None
    acting_user: str | None = None  # IM-CLIENT-ID: honoured for API Key callers only


@dataclass(frozen=True, slots=True)
class Principal:
    app_id: str
    is_admin: bool
    user_id: str | None
    key_kind: str  # "api" | "client"
    key_id: str
    token_hash: str | None = None  # the digest of the user token it came with (logout)


@dataclass(frozen=True, slots=True)
class AppInfo:
    id: str
    allowed_origins: frozenset[str]
    rate_limit: int | None
    token_secret: bytes


@dataclass(frozen=True, slots=True)
class _ApiKey:
    id: str
    app_id: str
    expires_at: int | None
    revoked_at: int | None


@dataclass(frozen=True, slots=True)
class _ClientKey:
    id: str
    app_id: str
    secret: bytes
    revoked_at: int | None
    grace_until: int | None


@dataclass(frozen=True, slots=True)
class _Token:
    user_id: str
    expires_at: int


class TtlCache:
    """A dict whose entries expire; a safety net under explicit invalidation.

    Every drop bumps ``generation``. A caller that reads the database to fill an entry
    notes the generation first and passes it to :meth:`put`, which stores nothing if a drop
    happened meanwhile — so a read that raced with a revocation cannot re-cache the
    revoked credential.
    """

    def __init__(self, ttl: float, max_entries: int = 200_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.generation = 0
        self._data: dict[Any, tuple[float, Any]] = {}
        self._groups: dict[Any, set[Any]] = {}
        self._grouped = 0

    def get(self, key: Any) -> Any:
        hit = self._data.get(key)
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            self._data.pop(key, None)
            return None
        return hit[1]

    def put(self, key: Any, value: Any, generation: int, group: Any = None) -> None:
        """Store ``value`` unless a drop happened since ``generation`` was read. A
        ``group`` (say, one user's entries) can later be dropped without a scan."""
        if generation != self.generation:
            return
        if len(self._data) >= self.max_entries or self._grouped > 2 * self.max_entries:
            self._data.clear()
            self._groups.clear()
            self._grouped = 0
        self._data[key] = (time.monotonic() + self.ttl, value)
        if group is not None:
            self._groups.setdefault(group, set()).add(key)
            self._grouped += 1

    def drop_group(self, group: Any) -> None:
        self.generation += 1
        for key in self._groups.pop(group, ()):
            self._data.pop(key, None)

    def drop(self, key: Any) -> None:
        self.generation += 1
        self._data.pop(key, None)

    def drop_where(self, predicate: Any) -> None:
        self.generation += 1
        for key in [k for k, v in self._data.items() if predicate(k, v[1])]:
            del self._data[key]

    def clear(self) -> None:
        self.generation += 1
        self._data.clear()
        self._groups.clear()
        self._grouped = 0


class Authenticator:
    def __init__(
        self,
        db: Database,
        master: bytes,
        limiter: MemoryRateLimiter | RedisRateLimiter,
        usage: UsageRecorder,
        *,
        default_rate_limit: int,
        cache_seconds: float,
    ) -> None:
        self._db = db
        self._master = master
        self._limiter = limiter
        self._usage = usage
        self._default_rate_limit = default_rate_limit
        self._apps = TtlCache(cache_seconds)
        self._api_keys = TtlCache(cache_seconds)
        self._client_keys = TtlCache(cache_seconds)
        # Client Key strings whose signature checked out: a dict hit instead of a JWT
        # parse and an HMAC per request. Only verified keys enter, so garbage cannot fill it.
        self._verified_client_keys = TtlCache(cache_seconds, max_entries=10_000)
        self._tokens = TtlCache(cache_seconds)
        # Tokens not in the cache, looked up together when asked together (sockets
        # connecting at once): one read for many.
        self._token_rows: BatchedLookup[tuple[str, str], _Token] = BatchedLookup(self._read_tokens)
        self._principals = TtlCache(cache_seconds, max_entries=100_000)
        self._domains: dict[str, str] | None = None
        self._domains_loaded = 0.0
        self._domains_generation = 0
        self._cache_seconds = cache_seconds

    # -- the one entry point -------------------------------------------------------------

    async def authenticate(self, creds: Credentials, access: Access) -> Principal | None:
        """The principal for ``creds`` on an operation needing ``access``, or an AuthError.

        Order of checks (the contract's error table):
        a valid API Key is an admin on every operation; a present but bad one is refused
        even where a Client Key would do. Otherwise admin operations refuse (403 for a
        valid Client Key, 401 for none); user operations need a valid Client Key for the
        request's Host and Origin, then a valid token of that key's app.
        """
        if access is Access.PUBLIC:
            return None
        if creds.api_key:
            return await self._admin(creds)
        if access is Access.ADMIN:
            if creds.client_key:
                principal, _ = await self._client(creds, need_token=False, record=False)
                self._usage.record(
                    "client",
                    principal.key_id,
                    principal.app_id,
                    creds.origin,
                    InsufficientPermissions.code,
                )
                raise InsufficientPermissions()
            raise MissingApiKey()
        need_token = access is Access.USER
        # The whole answer for these exact credentials, Host and Origin is cached: a
        # returning caller costs one lookup. Any revocation clears this cache.
        # Keyed on what decides the answer (not IM-CLIENT-ID, which a Client Key caller
        # cannot use), and only for ordinary Host/Origin sizes: a caller cannot grow it
        # with junk headers.
        cache_key = (creds.client_key, creds.token, creds.host, creds.origin, need_token)
        cacheable = len(creds.host or "") <= 255 and len(creds.origin or "") <= 255
        hit = self._principals.get(cache_key) if cacheable else None
        if hit is not None and now_ms() < hit[1]:
            principal = hit[0]
            self._usage.record("client", principal.key_id, principal.app_id, creds.origin, None)
            return principal
        generation = self._principals.generation
        principal, valid_until = await self._client(creds, need_token=need_token)
        if cacheable:
            group = (principal.app_id, principal.user_id)
            self._principals.put(cache_key, (principal, valid_until), generation, group)
        return principal

    async def _admin(self, creds: Credentials) -> Principal:
        assert creds.api_key is not None
        key = await self.verify_api_key(creds.api_key)
        app = await self.app(key.app_id)
        limit = app.rate_limit if app and app.rate_limit else self._default_rate_limit
        retry_after = await self._limiter.hit("api:" + key.id, limit)
        if retry_after:
            self._usage.record("api", key.id, key.app_id, creds.origin, RateLimitExceeded.code)
            raise RateLimitExceeded(retry_after)
        self._usage.record("api", key.id, key.app_id, creds.origin, None)
        return Principal(key.app_id, True, creds.acting_user or None, "api", key.id)

    async def _client(
        self, creds: Credentials, *, need_token: bool, record: bool = True
    ) -> tuple[Principal, int]:
        """The principal and the time (ms) until which it holds: the token's expiry or
        the end of the key's grace period, whichever comes first."""
        if not creds.client_key:
            raise MissingClientKey()
        key = await self.verify_client_key(creds.client_key)
        valid_until = key.grace_until if key.revoked_at is not None and key.grace_until else _NEVER
        try:
            app = await self.app(key.app_id)
            if app is None:
                raise InvalidClientKey()
            await self._check_domain(app, creds)
            user_id = token_hash = None
            if need_token:
                token = await self.verify_token(app.id, creds.token)
                user_id, valid_until = token.user_id, min(valid_until, token.expires_at)
                token_hash = crypto.digest(creds.token or "")
        except ParleyError as exc:
            self._usage.record("client", key.id, key.app_id, creds.origin, exc.code)
            raise
        if record:
            self._usage.record("client", key.id, key.app_id, creds.origin, None)
        principal = Principal(key.app_id, False, user_id, "client", key.id, token_hash)
        return principal, valid_until

    async def _check_domain(self, app: AppInfo, creds: Credentials) -> None:
        if creds.host:
            served_by = (await self._domain_map()).get(creds.host)
            # A Host that names no app falls back to the key's app (one-app servers,
            # direct IP access); a Host that names another app is a mismatch.
            if served_by is not None and served_by != app.id:
                raise ClientKeyMismatch()
        if creds.origin and app.allowed_origins and creds.origin not in app.allowed_origins:
            raise ClientKeyMismatch("Client key is not allowed from this Origin")

    # -- verification of each credential -----------------------------------------------

    async def verify_api_key(self, raw: str) -> _ApiKey:
        if not crypto.api_key_well_formed(raw):
            raise InvalidApiKey()
        key_hash = crypto.digest(raw)
        key: _ApiKey | None = self._api_keys.get(key_hash)
        if key is None:
            generation = self._api_keys.generation
            async with self._db.read() as s:
                row = (
                    await s.execute(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash))
                ).scalar_one_or_none()
            if row is None:
                raise InvalidApiKey()
            key = _ApiKey(row.id, row.app_id, row.expires_at, row.revoked_at)
            self._api_keys.put(key_hash, key, generation)
        now = now_ms()
        if key.revoked_at is not None or (key.expires_at is not None and now >= key.expires_at):
            self._usage.record("api", key.id, key.app_id, None, InvalidApiKey.code)
            raise InvalidApiKey("The provided API key has been revoked")
        return key

    async def verify_client_key(self, raw: str) -> _ClientKey:
        key: _ClientKey | None = self._verified_client_keys.get(raw)
        if key is None:
            generation = self._verified_client_keys.generation
            key = await self._verify_client_key_signature(raw)
            self._verified_client_keys.put(raw, key, generation)
        if key.revoked_at is not None and (key.grace_until is None or now_ms() >= key.grace_until):
            self._usage.record("client", key.id, key.app_id, None, InvalidClientKey.code)
            raise InvalidClientKey("The provided client key has been revoked")
        return key

    async def _verify_client_key_signature(self, raw: str) -> _ClientKey:
        try:
            payload = crypto.read_jwt_payload(raw)
        except ValueError:
            raise InvalidClientKey() from None
        kid, app_id = payload.get("kid"), payload.get("clientId")
        if not crypto.is_id(kid) or not isinstance(app_id, str):
            raise InvalidClientKey()
        assert isinstance(kid, str)
        key: _ClientKey | None = self._client_keys.get(kid)
        if key is None:
            generation = self._client_keys.generation
            async with self._db.read() as s:
                row = await s.get(ClientKeyRow, kid)
            if row is None:
                raise InvalidClientKey()
            secret = crypto.derive_secret(self._master, "client-key:" + row.app_id, row.salt)
            key = _ClientKey(row.id, row.app_id, secret, row.revoked_at, row.grace_until)
            self._client_keys.put(kid, key, generation)
        if key.app_id != app_id or not crypto.jwt_signature_valid(raw, key.secret):
            raise InvalidClientKey()
        return key

    async def verify_token(self, app_id: str, raw: str | None) -> _Token:
        if not raw or len(raw) > MAX_TOKEN_LENGTH:
            raise InvalidToken()
        token_hash = crypto.digest(raw)
        cache_key = (app_id, token_hash)
        token: _Token | None = self._tokens.get(cache_key)
        if token is None:
            generation = self._tokens.generation
            token = await self._token_rows.get(cache_key)
            if token is None:
                raise InvalidToken()
            self._tokens.put(cache_key, token, generation, (app_id, token.user_id))
        if now_ms() >= token.expires_at:
            raise InvalidToken("The user token has expired")
        return token

    async def _read_tokens(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], _Token]:
        return await self._db.run_read(lambda conn: _tokens(conn, keys))

    async def app(self, app_id: str) -> AppInfo | None:
        info: AppInfo | None = self._apps.get(app_id)
        if info is None:
            generation = self._apps.generation
            async with self._db.read() as s:
                row = await s.get(AppRow, app_id)
            if row is None:
                return None
            info = AppInfo(
                row.id,
                frozenset(row.allowed_origins or ()),
                row.rate_limit_per_minute,
                crypto.derive_secret(self._master, "user-token:" + row.id, row.token_salt),
            )
            self._apps.put(app_id, info, generation)
        return info

    async def _domain_map(self) -> dict[str, str]:
        if self._domains is None or time.monotonic() - self._domains_loaded > self._cache_seconds:
            generation = self._domains_generation
            async with self._db.read() as s:
                rows = (await s.execute(select(AppDomainRow.domain, AppDomainRow.app_id))).all()
            loaded = {r.domain: r.app_id for r in rows}
            if generation == self._domains_generation:  # no app changed during the read
                self._domains, self._domains_loaded = loaded, time.monotonic()
            return loaded
        return self._domains

    # -- invalidation ----------------------------------------------------------------

    def forget_app(self, app_id: str) -> None:
        """Everything about an app changed: keys revoked or rotated, domains, deletion."""
        self._principals.clear()
        self._apps.drop(app_id)
        self._api_keys.drop_where(lambda _k, v: v.app_id == app_id)
        self._client_keys.drop_where(lambda _k, v: v.app_id == app_id)
        self._verified_client_keys.drop_where(lambda _k, v: v.app_id == app_id)
        self._tokens.drop_where(lambda k, _v: k[0] == app_id)
        self._domains = None
        self._domains_generation += 1

    def forget_user(self, app_id: str, user_id: str) -> None:
        """A user's tokens changed (bound, reissued, revoked)."""
        self._principals.drop_group((app_id, user_id))
        self._tokens.drop_group((app_id, user_id))

    def forget_everything(self) -> None:
        for cache in (
            self._apps,
            self._api_keys,
            self._client_keys,
            self._verified_client_keys,
            self._tokens,
            self._principals,
        ):
            cache.clear()
        self._domains = None
        self._domains_generation += 1


@functools.lru_cache(maxsize=1024)
def _tokens_query(tokens: int) -> Select[str, str, int]:
    """The users and expiry of ``tokens`` token hashes (parameters k_app, t0, t1...)."""
    hashes = [bindparam(f"t{i}", type_=String) for i in range(tokens)]
    return select(UserTokenRow.token_hash, UserTokenRow.user_id, UserTokenRow.expires_at).where(
        UserTokenRow.app_id == bindparam("k_app"), UserTokenRow.token_hash.in_(hashes)
    )


def _tokens(conn: Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], _Token]:
    found: dict[tuple[str, str], _Token] = {}
    for app_id, hashes in chunks_by_app(keys):
        params = {"k_app": app_id, **{f"t{i}": h for i, h in enumerate(hashes)}}
        for token_hash, user_id, expires_at in fetch(conn, _tokens_query(len(hashes)), params):
            found[(app_id, token_hash)] = _Token(user_id, expires_at)
    return found
