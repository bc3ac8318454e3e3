"""Dashboard operators: accounts, sign-in sessions, and which applications each one owns.

- Passwords are hashed with argon2id (argon2-cffi), on a worker thread: a hash takes tens
  of milliseconds of CPU and would otherwise stall every request of the node.
- A session id is 256 random bits, handed to the browser once; the database keeps only
  its SHA-256 digest and an expiry, so any node can check a cookie. Every sign-in issues
  a new id (a planted id is never promoted to a signed-in one) and a password change
  ends every session of the account.
- Sign-in attempts are counted per account and per client address with the server's
  rate limiter (in Redis when there is one, so a cluster shares the count).
- An application belongs to the operator who created it in the dashboard. Apps created
  with the CLI have no owner until ``parley operator create --owns-all`` or
  ``parley operator grant`` gives them one; the first account signed up on a fresh
  server adopts them too.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import ClassVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from parley.config import Settings
from parley.services import crypto
from parley.services.apps import AppService, AppView, NewApp
from parley.services.clock import now_ms
from parley.services.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    ParleyError,
    RateLimitExceeded,
)
from parley.services.ratelimit import MemoryRateLimiter, RedisRateLimiter
from parley.storage.db import Database
from parley.storage.tables import AppRow, OperatorAppRow, OperatorRow, OperatorSessionRow

ENVIRONMENTS = ("production", "staging", "development")
MIN_PASSWORD = 10
MAX_PASSWORD = 512  # hashing cost grows with length: a bound keeps it a bound
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}$")
# Serializes account creation on PostgreSQL, so that two "first" sign-ups at once cannot
# both find the table empty (SQLite's writer already runs one write at a time).
_CREATE_LOCK = 0x0008_0001


class LoginFailed(ParleyError):
    code = "LOGIN_FAILED"
    default_message = "The email or password is incorrect"


class SignupClosed(ParleyError):
    code = "SIGNUP_CLOSED"
    default_message = "Sign-up is closed on this server"


@dataclass(frozen=True)
class Operator:
    id: str
    email: str


@dataclass(frozen=True)
class OwnedApp:
    app: AppView
    environment: str


def normalize_email(email: str) -> str:
    value = email.strip().lower()
    if not _EMAIL.match(value):
        raise InvalidRequest("Enter an email address such as you@example.com")
    return value


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidRequest(f"A password has at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidRequest(f"A password has at most {MAX_PASSWORD} characters")


def session_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class OperatorService:
    # Verified against when an email is unknown, so that a failed sign-in takes as long
    # whether or not the account exists. Made on first use: hashing is slow on purpose.
    _decoy_hash: ClassVar[str | None] = None

    def __init__(
        self,
        db: Database,
        master: bytes,
        limiter: MemoryRateLimiter | RedisRateLimiter,
        apps: AppService,
        settings: Settings,
    ) -> None:
        self._db = db
        self._limiter = limiter
        self._apps = apps
        self._settings = settings
        self._hasher = PasswordHasher()  # argon2id with the library's current parameters
        self._signing_key = crypto.derive_secret(master, "dashboard", "")

    # -- signatures (CSRF tokens, one-time reveals) ----------------------------------------

    def sign(self, *parts: str) -> str:
        message = "\0".join(parts).encode()
        return hmac.new(self._signing_key, message, hashlib.sha256).hexdigest()

    def signature_valid(self, signature: str, *parts: str) -> bool:
        return hmac.compare_digest(signature.encode(), self.sign(*parts).encode())

    # -- accounts ---------------------------------------------------------------------------

    async def count(self) -> int:
        async with self._db.read() as s:
            total = await s.execute(select(func.count()).select_from(OperatorRow))
            return int(total.scalar_one())

    async def signup_allowed(self) -> bool:
        mode = self._settings.dashboard_signup
        return mode == "open" or (mode == "first" and await self.count() == 0)

    async def sign_up(self, email: str, password: str, client: str) -> tuple[Operator, str]:
        """A new account from the sign-up form, signed in: (operator, session id)."""
        mode = self._settings.dashboard_signup
        if mode == "closed":
            raise SignupClosed()
        await self._limit(f"dashboard:ip:{client}", self._settings.dashboard_login_attempts_per_ip)
        operator = await self.create(email, password, only_if_first=mode == "first")
        return operator, await self._new_session(operator.id)

    async def create(
        self,
        email: str,
        password: str,
        *,
        only_if_first: bool = False,
        owns_unowned: bool = False,
    ) -> Operator:
        """Create an account. ``only_if_first``: refuse unless no account exists yet; the
        first account then adopts the apps that have no owner (``owns_unowned``)."""
        email = normalize_email(email)
        check_password(password)
        password_hash = await asyncio.to_thread(self._hasher.hash, password)
        now = now_ms()
        operator = Operator(crypto.new_id(), email)
        async with self._db.write() as s:
            if not self._db.is_sqlite:
                await s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CREATE_LOCK})
            count = (await s.execute(select(func.count()).select_from(OperatorRow))).scalar_one()
            if only_if_first and count:
                raise SignupClosed("Sign-up is closed: this server already has an account")
            taken = await s.execute(select(OperatorRow.id).where(OperatorRow.email == email))
            if taken.first() is not None:
                raise Conflict("An account with this email already exists", code="EMAIL_TAKEN")
            s.add(
                OperatorRow(
                    id=operator.id,
                    email=email,
                    password_hash=password_hash,
                    created_at=now,
                    password_changed_at=now,
                )
            )
            await s.flush()
            if owns_unowned or only_if_first:
                await self._adopt_unowned(s, operator.id)
        return operator

    async def find(self, email: str) -> Operator:
        email = email.strip().lower()
        async with self._db.read() as s:
            row = (
                await s.execute(select(OperatorRow).where(OperatorRow.email == email))
            ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"No operator {email!r}", code="OPERATOR_NOT_FOUND")
        return Operator(row.id, row.email)

    async def set_password(self, operator_id: str, password: str) -> None:
        """Replace the password and end every session of the account."""
        check_password(password)
        password_hash = await asyncio.to_thread(self._hasher.hash, password)
        async with self._db.write() as s:
            row = await s.get(OperatorRow, operator_id)
            if row is None:
                raise NotFound("No such operator", code="OPERATOR_NOT_FOUND")
            row.password_hash = password_hash
            row.password_changed_at = now_ms()
            await s.execute(
                delete(OperatorSessionRow).where(OperatorSessionRow.operator_id == operator_id)
            )

    async def change_password(self, operator: Operator, current: str, new: str, client: str) -> str:
        """Check the current password, set the new one, end every session and return a
        fresh one for the browser that asked."""
        check_password(new)
        await self._verify(operator.email, current, client)
        await self.set_password(operator.id, new)
        return await self._new_session(operator.id)

    # -- sessions ---------------------------------------------------------------------------

    async def log_in(
        self, email: str, password: str, client: str, *, replacing: str | None = None
    ) -> tuple[Operator, str]:
        """Check the credentials and start a session: (operator, new session id). The
        browser's previous session, if any, ends: an id never survives a sign-in."""
        operator = await self._verify(email, password, client)
        if replacing:
            await self.log_out(replacing)
        return operator, await self._new_session(operator.id)

    async def session(self, raw: str | None) -> Operator | None:
        """The operator a session cookie belongs to, while it lasts."""
        if not raw or len(raw) > 100:
            return None
        async with self._db.read() as s:
            found = (
                await s.execute(
                    select(OperatorRow.id, OperatorRow.email)
                    .join(OperatorSessionRow, OperatorSessionRow.operator_id == OperatorRow.id)
                    .where(
                        OperatorSessionRow.id_hash == session_digest(raw),
                        OperatorSessionRow.expires_at > now_ms(),
                    )
                )
            ).first()
        return Operator(found.id, found.email) if found else None

    async def log_out(self, raw: str) -> None:
        async with self._db.write() as s:
            await s.execute(
                delete(OperatorSessionRow).where(OperatorSessionRow.id_hash == session_digest(raw))
            )

    async def _new_session(self, operator_id: str) -> str:
        raw = secrets.token_urlsafe(32)
        now = now_ms()
        lifetime = int(self._settings.dashboard_session_hours * 3_600_000)
        async with self._db.write() as s:
            # Expired sessions go whenever someone signs in: no sweeper needed.
            await s.execute(delete(OperatorSessionRow).where(OperatorSessionRow.expires_at <= now))
            s.add(
                OperatorSessionRow(
                    id_hash=session_digest(raw),
                    operator_id=operator_id,
                    created_at=now,
                    expires_at=now + lifetime,
                )
            )
        return raw

    async def _verify(self, email: str, password: str, client: str) -> Operator:
        settings = self._settings
        email = email.strip().lower()[:254]  # longer is no address: it only names the count
        # Counted before the password is checked: a refused attempt costs no hashing.
        await self._limit(f"dashboard:ip:{client}", settings.dashboard_login_attempts_per_ip)
        await self._limit(f"dashboard:account:{email}", settings.dashboard_login_attempts)
        async with self._db.read() as s:
            row = (
                await s.execute(select(OperatorRow).where(OperatorRow.email == email))
            ).scalar_one_or_none()
        if row is None or len(password) > MAX_PASSWORD:
            await asyncio.to_thread(self._check, await self._decoy(), password[:MAX_PASSWORD])
            raise LoginFailed()
        if not await asyncio.to_thread(self._check, row.password_hash, password):
            raise LoginFailed()
        if self._hasher.check_needs_rehash(row.password_hash):
            await self._rehash(row.id, password)
        return Operator(row.id, row.email)

    def _check(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def _decoy(self) -> str:
        if OperatorService._decoy_hash is None:
            decoy = secrets.token_urlsafe(16)
            OperatorService._decoy_hash = await asyncio.to_thread(self._hasher.hash, decoy)
        return OperatorService._decoy_hash

    async def _rehash(self, operator_id: str, password: str) -> None:
        """Hashing parameters grow with the library's defaults; upgrade on sign-in."""
        password_hash = await asyncio.to_thread(self._hasher.hash, password)
        async with self._db.write() as s:
            row = await s.get(OperatorRow, operator_id)
            if row is not None:
                row.password_hash = password_hash

    async def _limit(self, key: str, limit: int) -> None:
        wait = await self._limiter.hit(key, limit, self._settings.dashboard_login_window_seconds)
        if wait:
            raise RateLimitExceeded(wait)

    # -- applications -----------------------------------------------------------------------

    async def apps_of(self, operator_id: str) -> list[OwnedApp]:
        async with self._db.read() as s:
            rows = (
                await s.execute(
                    select(OperatorAppRow.app_id, OperatorAppRow.environment)
                    .join(AppRow, AppRow.id == OperatorAppRow.app_id)
                    .where(OperatorAppRow.operator_id == operator_id)
                    .order_by(AppRow.created_at, AppRow.id)
                )
            ).all()
        owned = []
        for app_id, environment in rows:
            try:
                owned.append(OwnedApp(await self._apps.show(app_id), environment))
            except NotFound:  # deleted since the list was read
                continue
        return owned

    async def owned_app(self, operator_id: str, app_id: str) -> OwnedApp:
        """The app if this operator owns it; any other app — someone else's or none at
        all — is the same NotFound, so ids of other tenants cannot be probed."""
        async with self._db.read() as s:
            environment = (
                await s.execute(
                    select(OperatorAppRow.environment).where(
                        OperatorAppRow.app_id == app_id, OperatorAppRow.operator_id == operator_id
                    )
                )
            ).scalar_one_or_none()
        if environment is None:
            raise NotFound(f"No application {app_id!r}", code="APP_NOT_FOUND")
        return OwnedApp(await self._apps.show(app_id), environment)

    async def create_app(
        self, operator_id: str, name: str, environment: str, domains: list[str]
    ) -> NewApp:
        environment = check_environment(environment)
        new = await self._apps.create(name, domains)
        await self.assign(operator_id, new.app.id, environment)
        return new

    async def set_environment(self, operator_id: str, app_id: str, environment: str) -> None:
        environment = check_environment(environment)
        async with self._db.write() as s:
            row = await s.get(OperatorAppRow, app_id)
            if row is None or row.operator_id != operator_id:
                raise NotFound(f"No application {app_id!r}", code="APP_NOT_FOUND")
            row.environment = environment

    async def assign(self, operator_id: str, app_id: str, environment: str | None = None) -> None:
        """Make the operator the app's owner (replacing any earlier owner)."""
        async with self._db.write() as s:
            if await s.get(AppRow, app_id) is None:
                raise NotFound(f"No application {app_id!r}", code="APP_NOT_FOUND")
            row = await s.get(OperatorAppRow, app_id)
            if row is None:
                s.add(
                    OperatorAppRow(
                        app_id=app_id,
                        operator_id=operator_id,
                        environment=environment or ENVIRONMENTS[0],
                        created_at=now_ms(),
                    )
                )
            else:
                row.operator_id = operator_id
                if environment:
                    row.environment = environment

    async def adopt_unowned(self, operator_id: str) -> int:
        async with self._db.write() as s:
            return await self._adopt_unowned(s, operator_id)

    @staticmethod
    async def _adopt_unowned(s: AsyncSession, operator_id: str) -> int:
        owned = select(OperatorAppRow.app_id)
        unowned = (await s.execute(select(AppRow.id).where(AppRow.id.not_in(owned)))).scalars()
        now = now_ms()
        rows = [
            OperatorAppRow(
                app_id=app_id, operator_id=operator_id, environment=ENVIRONMENTS[0], created_at=now
            )
            for app_id in unowned
        ]
        s.add_all(rows)
        return len(rows)


def check_environment(environment: str) -> str:
    value = environment.strip().lower()
    if value not in ENVIRONMENTS:
        raise InvalidRequest(f"The environment is one of: {', '.join(ENVIRONMENTS)}")
    return value
