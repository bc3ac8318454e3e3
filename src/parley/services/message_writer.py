"""Group commit for sends: many messages, one transaction.

Each send waits in a queue; one task per node takes everything queued, checks and stores
it in one transaction with a constant number of statements, commits, and only then
answers every waiting sender and publishes the events, in sequence order. Under light load
a batch holds one message and the latency is one transaction; under heavy load batches
grow and the cost of a commit is shared. ``max_batch=1`` gives one transaction per
message (the baseline ``bench/ingest.py`` compares against).

Per-room order: sequence numbers come from the room row, locked for the transaction
(``FOR UPDATE`` on PostgreSQL, where several nodes write; SQLite has a single writer).
Rooms are locked in id order so that two nodes' batches cannot deadlock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.services.clock import now_ms
from parley.services.errors import (
    Conflict,
    InsufficientPermissions,
    InvalidRequest,
    NotFound,
    ParleyError,
)
from parley.services.events import CHAT_MESSAGE, Event, EventBus
from parley.services.groups import groups_of
from parley.services.ids import object_id
from parley.services.messages import MessageInput, message_public, search_text
from parley.services.users import UserService, user_embedded
from parley.storage.db import Database
from parley.storage.tables import MentionRow, MessageRow, RoomMemberRow, RoomRow

log = logging.getLogger("parley.messages")

_members = cast(Table, RoomMemberRow.__table__)
BUMP_ROOM_MEMBERS = (
    update(_members)
    .where(_members.c.app_id == bindparam("k_app"), _members.c.room_id == bindparam("k_room"))
    .values(activity_at=bindparam("k_now"), badge=_members.c.badge + bindparam("k_count"))
)
UNBUMP_SENDER = (
    update(_members)
    .where(
        _members.c.app_id == bindparam("k_app"),
        _members.c.room_id == bindparam("k_room"),
        _members.c.user_id == bindparam("k_user"),
    )
    .values(badge=_members.c.badge - bindparam("k_count"))
)
MARK_MENTIONED = (
    update(_members)
    .where(
        _members.c.app_id == bindparam("k_app"),
        _members.c.room_id == bindparam("k_room"),
        _members.c.user_id == bindparam("k_user"),
    )
    .values(mentioned=True)
)


@dataclass
class Send:
    """One message to store. ``members_only``: the sender must be a member (every send
    but the API Key's, which may post as any existing user)."""

    app_id: str
    room_id: str
    sender: str
    input: MessageInput
    members_only: bool = True
    batch_id: str | None = None
    future: asyncio.Future[dict[str, Any]] = field(init=False, repr=False)


@dataclass
class _Stored:
    send: Send
    row: MessageRow
    new: bool
    public: dict[str, Any] = field(default_factory=dict)


class MessageWriter:
    def __init__(
        self, db: Database, users: UserService, events: EventBus, *, max_batch: int
    ) -> None:
        self._db = db
        self._users = users
        self._events = events
        self._max_batch = max(1, max_batch)
        self._queue: list[Send] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def send(self, send: Send) -> dict[str, Any]:
        """Store ``send`` and return the stored message (the stored one again when its
        client id was seen before). Returns only after the commit."""
        send.future = asyncio.get_running_loop().create_future()
        self._queue.append(send)
        self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="parley-message-writer")
        return await send.future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for send in self._queue:
            if not send.future.done():
                send.future.set_exception(ParleyError("The server is shutting down"))
        self._queue.clear()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: len(batch)]
                await self._commit(batch)

    async def _commit(self, batch: list[Send]) -> None:
        try:
            try:
                stored, errors = await self._store(batch)
            except Conflict:
                # Another node stored one of these client ids a moment ago: once more,
                # and the retry finds the stored messages.
                stored, errors = await self._store(batch)
        except InvalidRequest as exc:
            if len(batch) > 1:
                # The database refused something the checks let through: find the one
                # send at fault instead of failing everyone queued beside it.
                for send in batch:
                    await self._commit([send])
                return
            _fail(batch, exc)
            return
        except Exception as exc:  # the whole transaction failed: tell every sender
            if not isinstance(exc, ParleyError):
                log.exception("storing a batch of %d messages failed", len(batch))
            _fail(batch, exc)
            return
        for send, error in errors:
            if not send.future.done():
                send.future.set_exception(error)
        events = []
        for item in stored:
            if not item.send.future.done():
                item.send.future.set_result(item.public)
            if item.new:
                events.append(
                    Event(item.send.app_id, CHAT_MESSAGE, item.public, rooms=[item.row.room_id])
                )
        if events:
            try:
                await self._events.publish(events)
            except Exception:  # the messages are stored; a reconnecting client resumes
                log.exception("publishing %d message events failed", len(events))

    async def _store(
        self, batch: list[Send]
    ) -> tuple[list[_Stored], list[tuple[Send, ParleyError]]]:
        stored: list[_Stored] = []
        errors: list[tuple[Send, ParleyError]] = []
        async with self._db.write() as s:
            by_app: dict[str, list[Send]] = defaultdict(list)
            for send in batch:
                by_app[send.app_id].append(send)
            for app_id in sorted(by_app):
                await self._store_app(s, app_id, by_app[app_id], stored, errors)
        return stored, errors

    async def _store_app(
        self,
        s: AsyncSession,
        app_id: str,
        sends: list[Send],
        stored: list[_Stored],
        errors: list[tuple[Send, ParleyError]],
    ) -> None:
        now = now_ms()
        room_ids = sorted({x.room_id for x in sends})
        rooms = {
            r.id: r
            for r in (
                await s.execute(
                    select(RoomRow)
                    .where(RoomRow.app_id == app_id, RoomRow.id.in_(room_ids))
                    .order_by(RoomRow.id)
                    .with_for_update()
                )
            ).scalars()
        }
        senders = sorted({x.sender for x in sends})
        memberships = set(
            (
                await s.execute(
                    select(RoomMemberRow.room_id, RoomMemberRow.user_id).where(
                        RoomMemberRow.app_id == app_id,
                        RoomMemberRow.room_id.in_(room_ids),
                        RoomMemberRow.user_id.in_(senders),
                    )
                )
            ).all()
        )
        profiles = await self._users.profiles(app_id, senders, s)
        known = await self._known_client_ids(s, app_id, sends)
        replies = await self._replies(s, app_id, sends)

        bumps: dict[str, int] = defaultdict(int)
        own: dict[tuple[str, str], int] = defaultdict(int)
        mentioned: set[tuple[str, str]] = set()
        new_rows: list[MessageRow] = []
        mention_rows: list[MentionRow] = []
        for send in sends:
            room = rooms.get(send.room_id)
            try:
                if room is None:
                    raise NotFound(f"Room {send.room_id} not found", code="ROOM_NOT_FOUND")
                if send.sender not in profiles:
                    raise NotFound(f"No user {send.sender}", code="CLIENT_NOT_FOUND")
                key = (room.id, send.input.client_msg_id or "")
                if send.input.client_msg_id and key in known:
                    if known[key].sender != send.sender:
                        raise Conflict(
                            "Another sender used this clientMessageId in this room",
                            code="CLIENT_MESSAGE_ID_TAKEN",
                        )
                    stored.append(_Stored(send, known[key], new=False))
                    continue
                is_member = (room.id, send.sender) in memberships or (
                    await self._member_via_group(s, room, send.sender)
                )
                if send.members_only and not is_member:
                    raise InsufficientPermissions(
                        "Not a member of this room", code="NOT_ROOM_MEMBER"
                    )
                if room.status == 0:
                    raise InsufficientPermissions("The room is frozen", code="ROOM_FROZEN")
                fields = dict(send.input.fields)
                if send.input.reply_to is not None:
                    replied = replies.get(send.input.reply_to)
                    if replied is None or replied["room"] != room.id:
                        raise NotFound(
                            "reply names no message of this room", code="MESSAGE_NOT_FOUND"
                        )
                    fields["reply"] = replied
            except ParleyError as error:
                errors.append((send, error))
                continue
            room.last_seq += 1
            room.message_count += 1
            room.last_message_at = now
            row = MessageRow(
                app_id=app_id,
                room_id=room.id,
                seq=room.last_seq,
                id=object_id(),
                sender=send.sender,
                message_type=send.input.message_type,
                body=fields,
                client_msg_id=send.input.client_msg_id,
                search_text=search_text(send.input.message_type, fields),
                pinned=False,
                hidden=False,
                batch_id=send.batch_id,
                created_at=now,
                updated_at=now,
            )
            room.last_message_id = row.id
            new_rows.append(row)
            if send.input.client_msg_id:
                known[key] = row
            bumps[room.id] += 1
            own[(room.id, send.sender)] += 1
            for user in send.input.mentions:
                if user != send.sender:
                    mentioned.add((room.id, user))
                    mention_rows.append(
                        MentionRow(app_id=app_id, room_id=room.id, user_id=user, seq=row.seq)
                    )
            stored.append(_Stored(send, row, new=True))

        s.add_all(new_rows)
        s.add_all(mention_rows)
        await s.flush()
        if bumps:
            await s.execute(
                BUMP_ROOM_MEMBERS,
                [
                    {"k_app": app_id, "k_room": r, "k_now": now, "k_count": n}
                    for r, n in bumps.items()
                ],
            )
            await s.execute(
                UNBUMP_SENDER,
                [
                    {"k_app": app_id, "k_room": r, "k_user": u, "k_count": n}
                    for (r, u), n in own.items()
                ],
            )
        if mentioned:
            await s.execute(
                MARK_MENTIONED,
                [{"k_app": app_id, "k_room": r, "k_user": u} for r, u in sorted(mentioned)],
            )
        for item in stored:
            if item.send.app_id == app_id and not item.public:
                sender = profiles.get(item.row.sender or "")
                item.public = message_public(item.row, user_embedded(sender) if sender else None)

    async def _known_client_ids(
        self, s: AsyncSession, app_id: str, sends: list[Send]
    ) -> dict[tuple[str, str], MessageRow]:
        wanted = {(x.room_id, x.input.client_msg_id) for x in sends if x.input.client_msg_id}
        if not wanted:
            return {}
        rows = (
            await s.execute(
                select(MessageRow).where(
                    MessageRow.app_id == app_id,
                    MessageRow.room_id.in_(sorted({r for r, _ in wanted})),
                    MessageRow.client_msg_id.in_(sorted({c for _, c in wanted if c})),
                )
            )
        ).scalars()
        return {(r.room_id, r.client_msg_id or ""): r for r in rows}

    async def _replies(
        self, s: AsyncSession, app_id: str, sends: list[Send]
    ) -> dict[str, dict[str, Any]]:
        """The replied messages, as quoted in a reply (one level deep)."""
        ids = sorted({x.input.reply_to for x in sends if x.input.reply_to})
        if not ids:
            return {}
        rows = list(
            (
                await s.execute(
                    select(MessageRow).where(MessageRow.app_id == app_id, MessageRow.id.in_(ids))
                )
            ).scalars()
        )
        senders = await self._users.profiles(app_id, [r.sender for r in rows if r.sender], s)
        quoted = {}
        for r in rows:
            sender = senders.get(r.sender or "")
            quoted[r.id] = message_public(r, user_embedded(sender) if sender else None)
            quoted[r.id].pop("reply", None)
        return quoted

    @staticmethod
    async def _member_via_group(s: AsyncSession, room: RoomRow, user_id: str) -> bool:
        groups = await groups_of(s, room.app_id, user_id)
        if not groups:
            return False
        found = await s.execute(
            select(RoomMemberRow.user_id)
            .where(
                RoomMemberRow.app_id == room.app_id,
                RoomMemberRow.room_id == room.id,
                RoomMemberRow.user_id.in_(groups),
            )
            .limit(1)
        )
        return found.first() is not None


def _fail(batch: list[Send], error: BaseException) -> None:
    for send in batch:
        if not send.future.done():
            send.future.set_exception(error)
