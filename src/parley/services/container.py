"""Everything a node runs, wired once: the database, the broker and the services.

The HTTP app, the CLI and the tests build one :class:`Services` and call into it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from parley.background import cancel_and_wait
from parley.broker import Broker, create_broker
from parley.config import Settings
from parley.services.apps import AppService
from parley.services.auth import Authenticator
from parley.services.badges import BadgeService
from parley.services.batches import BatchService
from parley.services.changes import CHANNEL, Change, ChangeFeed
from parley.services.devices import DeviceService
from parley.services.events import EventBus
from parley.services.files import FileLimits, FileService
from parley.services.filestore import LocalDiskFileStore
from parley.services.groups import GroupService
from parley.services.history import HistoryService
from parley.services.keys import KeyService
from parley.services.message_writer import MessageWriter
from parley.services.messaging import MessageLimits, MessageService
from parley.services.operators import OperatorService
from parley.services.prefs import PrefService
from parley.services.presence import Presence
from parley.services.ratelimit import MemoryRateLimiter, RedisRateLimiter
from parley.services.rooms import RoomLimits, RoomService
from parley.services.search import SearchService
from parley.services.usage import UsageRecorder
from parley.services.users import UserService
from parley.storage.db import Database

log = logging.getLogger("parley")


class Services:
    def __init__(self, settings: Settings, *, broker: Broker | None = None) -> None:
        self.settings = settings
        self.db = Database(settings.effective_database_url)
        self.broker = broker or create_broker(settings.redis_url)
        master = settings.master_secret()
        limiter: MemoryRateLimiter | RedisRateLimiter = MemoryRateLimiter()
        if settings.redis_url and hasattr(self.broker, "client"):
            limiter = RedisRateLimiter(self.broker.client)
        self.usage = UsageRecorder()
        self.presence = Presence(self.db, getattr(self.broker, "client", None))
        self.auth = Authenticator(
            self.db,
            master,
            limiter,
            self.usage,
            default_rate_limit=settings.api_key_rate_limit,
            cache_seconds=settings.auth_cache_seconds,
        )
        self.changes = ChangeFeed(self.db, self.broker, self._apply_change)
        self.apps = AppService(self.db, master, self.changes)
        self.keys = KeyService(self.db, master, self.changes)
        # Dashboard accounts and sessions (parley.dashboard); sign-ins share the limiter.
        self.operators = OperatorService(self.db, master, limiter, self.apps, settings)
        self.users = UserService(
            self.db,
            self.auth,
            self.changes,
            settings.token_lifetime_days,
            profile_cache_seconds=settings.auth_cache_seconds,
        )
        self.events = EventBus(self.broker)
        self.prefs = PrefService(self.db, self.events)
        self.devices = DeviceService(self.db, self.users)
        self.groups = GroupService(self.db, self.users)
        self.rooms = RoomService(
            self.db,
            self.users,
            self.prefs,
            self.groups,
            self.events,
            RoomLimits(
                max_members=settings.max_room_members,
                max_page=settings.max_page_size,
                max_invitees=settings.max_invitees,
            ),
        )
        self.writer = MessageWriter(
            self.db, self.users, self.events, max_batch=settings.message_batch_max
        )
        self.messaging = MessageService(
            self.db,
            self.users,
            self.rooms,
            self.events,
            self.writer,
            MessageLimits(max_message_bytes=settings.max_message_bytes),
        )
        self.history = HistoryService(
            self.db, self.users, self.rooms, max_page=settings.max_page_size
        )
        self.badges = BadgeService(self.db, self.auth)
        self.batches = BatchService(
            self.db,
            self.users,
            self.rooms,
            self.writer,
            max_message_bytes=settings.max_message_bytes,
        )
        self.search = SearchService(self.db, self.rooms, max_page=settings.max_page_size)
        self.files = FileService(
            self.db,
            LocalDiskFileStore(settings.data_dir / "files"),
            master,
            FileLimits(
                max_file_bytes=settings.max_file_bytes,
                max_image_pixels=settings.max_image_pixels,
                file_types=settings.file_types,
                signed_url_seconds=settings.signed_url_seconds,
            ),
        )
        self._tasks: list[asyncio.Task[None]] = []
        # Called after a credential change has been applied to this node's caches (None:
        # after a broker outage, when anything may have changed). The real-time gateway
        # re-checks its sockets' credentials here.
        self.change_listeners: list[Callable[[Change | None], None]] = []

    def _apply_change(self, change: Change) -> None:
        """Drop what a change makes stale from this node's caches."""
        if change.kind == "profile":
            self.users.forget_profile(change.app_id, change.subject)
        elif change.kind == "profiles":
            self.users.forget_profiles(change.app_id)
        elif change.kind == "user":
            self.auth.forget_user(change.app_id, change.subject)
            self.users.forget_profile(change.app_id, change.subject)
        else:
            self.auth.forget_app(change.app_id)
            self.users.forget_profiles(change.app_id)
        for listener in self.change_listeners:
            listener(change)

    def _forget_everything(self) -> None:
        """After a broker outage nothing cached can be trusted to be current."""
        self.auth.forget_everything()
        self.users.forget_all_profiles()
        for listener in self.change_listeners:
            listener(None)

    async def start(self) -> None:
        """Connect the broker and start the background work of a serving node."""
        self.broker.subscribe(CHANNEL, self.changes.on_broker_message)
        self.broker.on_reconnect(self._forget_everything)
        await self.broker.start()
        await self.changes.prime()
        self._tasks = [
            asyncio.create_task(self.changes.poll_forever(self.settings.change_poll_seconds)),
            asyncio.create_task(self._flush_usage_forever()),
        ]
        await self.batches.start()
        await self.presence.start()

    async def close(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        await self.batches.close()
        await self.presence.close()
        await self.writer.close()
        with contextlib.suppress(Exception):
            await self.usage.flush(self.db)
        await self.broker.close()
        await self.db.close()

    async def _flush_usage_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.usage_flush_seconds)
            await self.usage.flush(self.db)
