"""Settings, read from ``PARLEY_*`` environment variables (CLI flags override them).

The defaults run the embedded server: a SQLite file under the data directory and the
in-memory broker, so ``parley run`` needs no other service.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARLEY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 3100
    data_dir: Path = Path("parley-data")
    # Empty means the embedded SQLite file ``<data_dir>/parley.db``.
    database_url: str = ""
    # Empty means the in-memory broker (one node only).
    redis_url: str = ""
    # Master secret from which every signing secret is derived. Empty means the file
    # ``<data_dir>/secret.key``, created on first use. Nodes of one cluster must share it.
    secret_key: str = Field(default="", repr=False)

    api_key_rate_limit: int = 1000  # requests per minute per API Key
    token_lifetime_days: int = 7  # server-issued user tokens
    max_body_bytes: int = 1_048_576
    max_room_members: int = 10_000
    max_page_size: int = 1000  # rooms per page of GET /rooms (limit 0 means this many)
    max_invitees: int = 1000  # members added by one request
    # Files (POST /files/{bucket}): an upload's request body may be this large (plus a
    # little for the form around the file); every other body keeps max_body_bytes.
    max_file_bytes: int = 20 * 1024 * 1024
    # Images with more pixels are refused: decoding one takes memory in proportion (a
    # few bytes a pixel), and a small file can declare a huge image. Pillow's own
    # decompression-bomb limit (about 89 million) caps this whatever it is set to.
    max_image_pixels: int = 50_000_000
    # Comma-separated types or type/* patterns an upload may have ("*" = any). Types a
    # browser would run when served back (HTML, SVG, XML, JavaScript) are refused always.
    file_types: str = "*"
    signed_url_seconds: int = 3600  # lifetime of a GET /files/...?signedUrlOnly=1 URL
    max_message_bytes: int = 65_536  # a message's JSON, beyond the server's own fields
    # Sends waiting together are stored in one transaction, up to this many (1: one
    # transaction per message).
    message_batch_max: int = 256
    # Engine.IO heartbeat: the server pings this often, and closes a socket that has sent
    # nothing for interval + timeout.
    socket_ping_interval: float = 25.0
    socket_ping_timeout: float = 20.0
    # A socket not authenticated this long after it opened is closed (Socket.IO's
    # connectTimeout): an idle handshake would hold its connection for ever.
    socket_connect_timeout: float = 45.0
    trust_proxy: bool = False  # honour X-Forwarded-Host / X-Forwarded-For
    access_log: bool = False  # off by default: query strings can carry tokens
    log_level: str = "info"

    # Verified credentials are cached per node; revocations arrive through the broker and,
    # as a safety net for missed broker messages, through a change log polled this often.
    auth_cache_seconds: float = 60.0
    change_poll_seconds: float = 1.0
    usage_flush_seconds: float = 5.0

    # The operators' dashboard (/dashboard). Sign-up: "first" lets one account sign up
    # while none exists (later ones come from `parley operator create`), "open" lets
    # anyone, "closed" no one.
    dashboard_signup: Literal["first", "open", "closed"] = "first"
    dashboard_session_hours: float = 12.0  # a session ends this long after sign-in
    # Sign-in attempts per window, per account and per client address (X-Forwarded-For
    # with trust_proxy); counted in Redis when there is one, so across the cluster.
    dashboard_login_attempts: int = 10
    dashboard_login_attempts_per_ip: int = 50
    dashboard_login_window_seconds: int = 300

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'parley.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    def master_secret(self) -> bytes:
        """The server's master secret; created under the data dir when none is configured."""
        if self.secret_key:
            return self.secret_key.encode()
        path = self.data_dir / "secret.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process created it first
                pass
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(32))
        return path.read_text().strip().encode()
