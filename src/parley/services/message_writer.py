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

On SQLite the writer also fills the full-text index, off the send path: a send's
transaction only notes the message in the search backlog (migration 0008), and the writer
indexes the backlog many messages at a time — when no send has come for a moment, when
enough messages wait, or when the oldest has waited long enough. A search indexes what
still waits before it reads (``SearchBacklog.catch_up``), so it misses no acked message.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Connection,
    Select,
    Table,
    TextClause,
    bindparam,
    insert,
    select,
    text,
    update,
)

from parley.background import cancel_and_wait
from parley.services.clock import now_ms
from parley.services.errors import (
    Conflict,
    InsufficientPermissions,
    InvalidRequest,
    NotFound,
    ParleyError,
)
from parley.services.events import CHAT_MESSAGE, Event, EventBus
from parley.services.ids import object_id
from parley.services.messages import MessageInput, message_public, search_text
from parley.services.users import UserService, user_embedded
from parley.storage.db import Database, SearchBacklog
from parley.storage.driver import execute_rows, fetch
from parley.storage.tables import GroupMemberRow, MentionRow, MessageRow, RoomMemberRow, RoomRow

log = logging.getLogger("parley.messages")

# When the writer indexes the search backlog (SQLite): after this long without a send...
INDEX_IDLE_SECONDS = 0.02
# ...or at once when this many messages wait: a pass of 200 costs a third a message of
# what indexing each send's batch did (FTS5 writes a segment a transaction; measured,
# larger passes save little more), and takes a few milliseconds, a short pause between
# two batches of sends...
INDEX_BATCH = 200
# ...or when the oldest waiting message has waited this long under a steady trickle.
INDEX_MAX_DELAY_SECONDS = 1.0
# The most messages one pass takes (a long backlog is indexed over several).
INDEX_PASS_LIMIT = 1000

_members = cast(Table, RoomMemberRow.__table__)
_rooms = cast(Table, RoomRow.__table__)
_messages = cast(Table, MessageRow.__table__)
_mentions = cast(Table, MentionRow.__table__)
_group_members = cast(Table, GroupMemberRow.__table__)
UPDATE_ROOM = (
    update(_rooms)
    .where(_rooms.c.app_id == bindparam("k_app"), _rooms.c.id == bindparam("k_room"))
    .values(
        last_seq=bindparam("k_seq"),
        message_count=bindparam("k_count"),
        last_message_id=bindparam("k_last"),
        last_message_at=bindparam("k_now"),
    )
)
# A sender has seen its own messages: its unread count stays as it was while the room's
# message count grows (RoomMemberRow.seen; the other members' rows are not written).
SENDER_SAW = (
    update(_members)
    .where(
        _members.c.app_id == bindparam("k_app"),
        _members.c.room_id == bindparam("k_room"),
        _members.c.user_id == bindparam("k_user"),
    )
    .values(seen=_members.c.seen + bindparam("k_count"))
)
INSERT_MESSAGE = insert(_messages)
MESSAGE_JSON_COLUMNS = frozenset(c.name for c in _messages.columns if isinstance(c.type, JSON))
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
    row: Any  # a stored row, or the values of a new one (same attribute names)
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
        self._backlog: SearchBacklog | None = db.search_backlog
        # Messages this writer stored that may still wait for the index, and since when.
        # Unknown at start (a restart may have left some): one pass finds out.
        self._unindexed = 1 if self._backlog is not None else 0
        self._unindexed_since = time.monotonic()

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
        await cancel_and_wait(self._task)
        for send in self._queue:
            if not send.future.done():
                send.future.set_exception(ParleyError("The server is shutting down"))
        self._queue.clear()

    async def _run(self) -> None:
        while True:
            await self._wait_for_sends()
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: len(batch)]
                await self._commit(batch)
                if self._index_due():
                    await self._index_backlog()

    async def _wait_for_sends(self) -> None:
        """Until a send is queued; the search backlog is indexed meanwhile when the wait
        lasts (the writer is idle)."""
        while not self._queue:
            self._wakeup.clear()
            if not self._unindexed:
                await self._wakeup.wait()
                continue
            try:
                async with asyncio.timeout(INDEX_IDLE_SECONDS):
                    await self._wakeup.wait()
            except TimeoutError:
                await self._index_backlog()

    def _index_due(self) -> bool:
        return self._unindexed >= INDEX_BATCH or (
            self._unindexed > 0
            and time.monotonic() - self._unindexed_since >= INDEX_MAX_DELAY_SECONDS
        )

    async def _index_backlog(self) -> None:
        assert self._backlog is not None
        try:
            done = await self._backlog.index(INDEX_PASS_LIMIT)
        except Exception:
            # The messages stay in the backlog: the next send's pass retries, and a
            # search indexes them before it reads.
            log.exception("indexing messages for search failed")
            self._unindexed = 0
            return
        more = done.last is not None and done.newest is not None and done.last < done.newest
        self._unindexed = max(1, self._unindexed - done.taken) if more else 0
        self._unindexed_since = time.monotonic()

    def _note_unindexed(self, stored: list[_Stored]) -> None:
        if self._backlog is None:
            return
        added = sum(1 for x in stored if x.new and x.row.search_text is not None)
        if added and not self._unindexed:
            self._unindexed_since = time.monotonic()
        self._unindexed += added

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
        self._note_unindexed(stored)
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
        """Check and store ``batch``: reads that need no lock first (sender profiles,
        quoted replies), then one transaction of a fixed number of statements."""
        by_app: dict[str, list[Send]] = defaultdict(list)
        for send in batch:
            by_app[send.app_id].append(send)
        profiles: dict[str, dict[str, dict[str, Any]]] = {}
        replies: dict[str, dict[str, dict[str, Any]]] = {}
        for app_id, sends in by_app.items():
            profiles[app_id] = await self._users.profiles(app_id, sorted({x.sender for x in sends}))
            replies[app_id] = await self._replies(app_id, sends)

        def work(conn: Connection) -> tuple[list[_Stored], list[tuple[Send, ParleyError]]]:
            stored: list[_Stored] = []
            errors: list[tuple[Send, ParleyError]] = []
            for app_id in sorted(by_app):
                _store_app(
                    conn,
                    app_id,
                    by_app[app_id],
                    profiles[app_id],
                    replies[app_id],
                    stored,
                    errors,
                )
            return stored, errors

        stored, errors = await self._db.run_in_transaction(work)
        for item in stored:
            sender = profiles[item.send.app_id].get(item.row.sender or "")
            item.public = message_public(item.row, user_embedded(sender) if sender else None)
        return stored, errors

    async def _replies(self, app_id: str, sends: list[Send]) -> dict[str, dict[str, Any]]:
        """The replied messages, as quoted in a reply (one level deep)."""
        ids = sorted({x.input.reply_to for x in sends if x.input.reply_to})
        if not ids:
            return {}
        async with self._db.read() as s:
            rows = list(
                (
                    await s.execute(
                        select(MessageRow).where(
                            MessageRow.app_id == app_id,
                            MessageRow.id.in_(ids),
                            MessageRow.hidden.is_(False),  # hidden content is quoted by no one
                        )
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


def _store_app(
    conn: Connection,
    app_id: str,
    sends: list[Send],
    profiles: dict[str, dict[str, Any]],
    replies: dict[str, dict[str, Any]],
    stored: list[_Stored],
    errors: list[tuple[Send, ParleyError]],
) -> None:
    """One app's sends, inside the writer's transaction (synchronous Core: see
    Database.run_in_transaction)."""
    room_ids = sorted({x.room_id for x in sends})
    params = {f"r{i}": room_id for i, room_id in enumerate(room_ids)}
    rooms = {
        room_id: _RoomState(room_id, last_seq, message_count, status)
        for room_id, last_seq, message_count, status in fetch(
            conn, _lock_rooms_query(len(room_ids)), {"k_app": app_id, **params}
        )
    }
    # Read the clock once the rooms are locked: another node's batch for these rooms has
    # committed by now, so history's time order agrees with the sequence order.
    now = now_ms()
    memberships = _memberships(conn, app_id, {(x.room_id, x.sender) for x in sends})
    known = _known_client_ids(conn, app_id, sends)

    new_rows: list[dict[str, Any]] = []
    mention_rows: list[dict[str, Any]] = []
    added: dict[str, int] = defaultdict(int)
    own: dict[tuple[str, str], int] = defaultdict(int)
    mentioned: set[tuple[str, str]] = set()
    for send in sends:
        room = rooms.get(send.room_id)
        key = (send.room_id, send.input.client_msg_id or "")
        try:
            if room is None:
                raise NotFound(f"Room {send.room_id} not found", code="ROOM_NOT_FOUND")
            if send.sender not in profiles:
                raise NotFound(f"No user {send.sender}", code="CLIENT_NOT_FOUND")
            if send.input.client_msg_id and key in known:
                if known[key].sender != send.sender:
                    raise Conflict(
                        "Another sender used this clientMessageId in this room",
                        code="CLIENT_MESSAGE_ID_TAKEN",
                    )
                stored.append(_Stored(send, known[key], new=False))
                continue
            is_member = (room.id, send.sender) in memberships or _member_via_group(
                conn, app_id, room.id, send.sender
            )
            if send.members_only and not is_member:
                raise InsufficientPermissions("Not a member of this room", code="NOT_ROOM_MEMBER")
            if room.status == 0:
                raise InsufficientPermissions("The room is frozen", code="ROOM_FROZEN")
            fields = dict(send.input.fields)
            if send.input.reply_to is not None:
                replied = replies.get(send.input.reply_to)
                if replied is None or replied["room"] != room.id:
                    raise NotFound("reply names no message of this room", code="MESSAGE_NOT_FOUND")
                fields["reply"] = replied
        except ParleyError as error:
            errors.append((send, error))
            continue
        room.last_seq += 1
        room.message_count += 1
        values: dict[str, Any] = {
            "app_id": app_id,
            "room_id": room.id,
            "seq": room.last_seq,
            "id": object_id(),
            "sender": send.sender,
            "message_type": send.input.message_type,
            "body": fields,
            "client_msg_id": send.input.client_msg_id,
            "search_text": search_text(send.input.message_type, fields),
            "pinned": False,
            "hidden": False,
            "reactions": None,
            "batch_id": send.batch_id,
            "reply_to": send.input.reply_to,
            "edited_at": None,
            "created_at": now,
            "updated_at": now,
        }
        room.last_message_id = values["id"]
        new_rows.append(values)
        row = SimpleNamespace(**values)
        if send.input.client_msg_id:
            known[key] = row
        added[room.id] += 1
        own[(room.id, send.sender)] += 1
        for user in send.input.mentions:
            if user != send.sender:
                mentioned.add((room.id, user))
                mention_rows.append(
                    {"app_id": app_id, "room_id": room.id, "user_id": user, "seq": room.last_seq}
                )
        stored.append(_Stored(send, row, new=True))

    if not new_rows:
        return
    execute_rows(conn, INSERT_MESSAGE, new_rows, json_columns=MESSAGE_JSON_COLUMNS)
    if mention_rows:
        conn.execute(insert(_mentions), mention_rows)
    execute_rows(
        conn,
        UPDATE_ROOM,
        [
            {
                "k_app": app_id,
                "k_room": r.id,
                "k_seq": r.last_seq,
                "k_count": r.message_count,
                "k_last": r.last_message_id,
                "k_now": now,
            }
            for r in rooms.values()
            if r.id in added
        ],
    )
    execute_rows(
        conn,
        SENDER_SAW,
        [{"k_app": app_id, "k_room": r, "k_user": u, "k_count": n} for (r, u), n in own.items()],
    )
    if mentioned:
        conn.execute(
            MARK_MENTIONED,
            [{"k_app": app_id, "k_room": r, "k_user": u} for r, u in sorted(mentioned)],
        )


@dataclass
class _RoomState:
    id: str
    last_seq: int
    message_count: int
    status: int
    last_message_id: str | None = None


def _memberships(
    conn: Connection, app_id: str, pairs: set[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which (room, sender) pairs are direct memberships: one primary-key lookup a pair.
    (``room IN (...) AND user IN (...)`` probes every room with every sender: a full
    batch has a few hundred of each.)"""
    ordered = sorted(pairs)
    params: dict[str, Any] = {"app": app_id}
    for i, (room_id, user_id) in enumerate(ordered):
        params[f"r{i}"] = room_id
        params[f"u{i}"] = user_id
    return {
        (room_id, user_id)
        for room_id, user_id in fetch(conn, _membership_query(len(ordered)), params)
    }


@functools.lru_cache(maxsize=1024)
def _lock_rooms_query(rooms: int) -> Select[Any]:
    """The state of ``rooms`` rooms (parameters k_app, r0, r1...), locked until the
    transaction ends, in id order. One statement per number of rooms, compiled once."""
    return (
        select(_rooms.c.id, _rooms.c.last_seq, _rooms.c.message_count, _rooms.c.status)
        .where(
            _rooms.c.app_id == bindparam("k_app"),
            _rooms.c.id.in_([bindparam(f"r{i}") for i in range(rooms)]),
        )
        .order_by(_rooms.c.id)
        .with_for_update()
    )


@functools.lru_cache(maxsize=1024)
def _membership_query(pairs: int) -> TextClause:
    # SQL text of its own per batch size: compiled once each (a VALUES construct with
    # data would be compiled anew for every batch).
    rows = ", ".join(f"(:r{i}, :u{i})" for i in range(pairs))  # placeholders only
    return text(
        f"WITH wanted (room_id, user_id) AS (VALUES {rows})"  # noqa: S608
        " SELECT m.room_id, m.user_id FROM wanted JOIN room_members m"
        " ON m.app_id = :app AND m.room_id = wanted.room_id AND m.user_id = wanted.user_id"
    )


def _known_client_ids(
    conn: Connection, app_id: str, sends: list[Send]
) -> dict[tuple[str, str], Any]:
    wanted = {(x.room_id, x.input.client_msg_id) for x in sends if x.input.client_msg_id}
    if not wanted:
        return {}
    rows = conn.execute(
        select(_messages).where(
            _messages.c.app_id == app_id,
            _messages.c.room_id.in_(sorted({r for r, _ in wanted})),
            _messages.c.client_msg_id.in_(sorted({c for _, c in wanted if c})),
            _messages.c.client_msg_id.is_not(None),  # lets the partial index serve
        )
    )
    return {(r.room_id, r.client_msg_id or ""): r for r in rows}


def _member_via_group(conn: Connection, app_id: str, room_id: str, user_id: str) -> bool:
    """Whether one of the user's groups is a member of the room."""
    groups = select(_group_members.c.group_id).where(
        _group_members.c.app_id == app_id, _group_members.c.user_id == user_id
    )
    found = conn.execute(
        select(_members.c.user_id)
        .where(
            _members.c.app_id == app_id,
            _members.c.room_id == room_id,
            _members.c.user_id.in_(groups),
        )
        .limit(1)
    )
    return found.first() is not None


def _fail(batch: list[Send], error: BaseException) -> None:
    for send in batch:
        if not send.future.done():
            send.future.set_exception(error)
