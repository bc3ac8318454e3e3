"""Sending and changing messages: contract §3.7.

Who may do what (``caller`` is a user with a Client Key and token, or the API Key):

| operation                        | who                                                  |
|----------------------------------|------------------------------------------------------|
| send in a room                   | a member (the API Key: as any existing user)         |
| edit                             | the sender, while a member                           |
| recall                           | the sender while a member; the API Key               |
| delete for everyone (one, _all)  | the room's owner, managers, admins; the API Key      |
| hide for the room / by sender    | the room's owner, managers, admins; the API Key      |
| pin, unpin                       | the room's owner, managers, admins; the API Key      |
| react                            | a member                                             |
| hide for me                      | a member                                             |

A message id that names no message of a room the caller may see answers 404
``MESSAGE_NOT_FOUND`` — a non-member cannot learn that it exists. Every change bumps the
message's ``updatedAt`` (clients sync changes with ``afterTime`` on ``updatedAt``) and
publishes ``chat message`` with the new state after commit; SDKs upsert by ``_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.services.auth import Principal
from parley.services.clock import iso, now_ms
from parley.services.errors import InsufficientPermissions, InvalidRequest, NotFound, TooLarge
from parley.services.events import CHAT_MESSAGE, ROOM, USER_DELETE_MESSAGES, Event, EventBus
from parley.services.message_writer import MessageWriter, Send
from parley.services.messages import (
    RECALL,
    SYSTEM_TYPES,
    check_size,
    forget_mentions,
    hidden_stub,
    message_public,
    parse_input,
    refresh_mentioned,
    search_text,
)
from parley.services.params import acting_user, check_room_id, flag
from parley.services.rooms import RoomService, room_event_data
from parley.services.users import UserService, user_embedded
from parley.storage.db import Database
from parley.storage.tables import (
    HiddenMessageRow,
    MentionRow,
    MessageRow,
    RoomMemberRow,
    RoomRow,
)

MAX_REACTIONS = 1000

MAX_HIDE_IDS = 1000


@dataclass(frozen=True)
class MessageLimits:
    max_message_bytes: int = 65_536


def message_not_found() -> NotFound:
    return NotFound("Message not found", code="MESSAGE_NOT_FOUND")


class MessageService:
    def __init__(
        self,
        db: Database,
        users: UserService,
        rooms: RoomService,
        events: EventBus,
        writer: MessageWriter,
        limits: MessageLimits,
    ) -> None:
        self._db = db
        self._users = users
        self._rooms = rooms
        self._events = events
        self._writer = writer
        self.limits = limits

    # -- sending ------------------------------------------------------------------------

    async def send_in_room(self, caller: Principal, room_id: str, body: Any) -> dict[str, Any]:
        """``POST /rooms/{id}/message``: a new message, or with ``_id`` an edit, or with
        ``messageType: "recall"`` a recall."""
        if not isinstance(body, dict):
            raise InvalidRequest("The message must be a JSON object", code="INVALID_BODY")
        if body.get("messageType") == RECALL:
            return await self.recall(caller, room_id, body.get("_id"))
        if body.get("_id") is not None:
            return await self.edit(caller, room_id, body)
        sender = acting_user(caller)
        message = parse_input(body, max_bytes=self.limits.max_message_bytes)
        send = Send(
            caller.app_id,
            check_room_id(room_id),
            sender,
            message,
            members_only=not caller.is_admin,
        )
        return await self._writer.send(send)

    async def send_as(self, caller: Principal, body: Any) -> dict[str, Any]:
        """``POST /messages`` (API Key): post as any existing user. ``push`` and
        ``skipTotalBadge`` are accepted and checked; push delivery is not built yet."""
        if not isinstance(body, dict):
            raise InvalidRequest("The message must be a JSON object", code="INVALID_BODY")
        for name in ("room", "sender", "message", "messageType"):
            if body.get(name) is None:
                raise InvalidRequest(f"{name} is required", code="MISSING_PARAMETER")
        if not isinstance(body["sender"], str) or not 0 < len(body["sender"]) <= 255:
            raise InvalidRequest("sender must be a client id", code="INVALID_BODY")
        flag(body, "push", default=True)
        flag(body, "skipTotalBadge", default=False)
        message = parse_input(body, max_bytes=self.limits.max_message_bytes, default_type=None)
        send = Send(
            caller.app_id, check_room_id(body["room"]), body["sender"], message, members_only=False
        )
        return await self._writer.send(send)

    # -- changing -----------------------------------------------------------------------

    async def edit(self, caller: Principal, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        message_id = _message_id(body.get("_id"))
        user_id = acting_user(caller)
        async with self._db.write() as s:
            room, row, member = await self._locate(s, caller, message_id, room_id=room_id)
            if row.sender != user_id or member is None:
                raise InsufficientPermissions("Only the sender may edit a message")
            if row.message_type in SYSTEM_TYPES or row.message_type == RECALL:
                raise InvalidRequest(f"A {row.message_type} message cannot be edited")
            _require_open(room)
            changes = parse_input(
                {**body, "messageType": body.get("messageType", row.message_type)},
                max_bytes=self.limits.max_message_bytes,
            )
            fields = {**row.body, **changes.fields}
            if "mentions" not in body:
                fields["mentions"] = row.body.get("mentions", [])
            if "clientMessageId" in row.body:
                fields["clientMessageId"] = row.body["clientMessageId"]
            check_size(fields, self.limits.max_message_bytes)
            if changes.reply_to is not None:
                replied = await self._message(s, caller.app_id, changes.reply_to)
                if replied is None or replied.room_id != room.id or replied.hidden:
                    raise NotFound("reply names no message of this room", code="MESSAGE_NOT_FOUND")
                fields["reply"] = await self._public(s, replied)
                fields["reply"].pop("reply", None)
                row.reply_to = replied.id
            now = now_ms()
            row.message_type = changes.message_type
            row.body = fields
            row.search_text = search_text(row.message_type, fields)
            row.edited_at = row.updated_at = _later(now, row.updated_at)
            if "mentions" in body:
                before = await forget_mentions(s, room.app_id, room.id, row.seq)
                now_mentioned = [u for u in changes.mentions if u != row.sender]
                s.add_all(
                    MentionRow(app_id=room.app_id, room_id=room.id, user_id=u, seq=row.seq)
                    for u in now_mentioned
                )
                await s.flush()
                await refresh_mentioned(
                    s, room.app_id, room.id, sorted(set(before) | set(now_mentioned))
                )
            public = await self._public(s, row)
        await self._publish_change(caller.app_id, public)
        return public

    async def recall(self, caller: Principal, room_id: str, message_id: Any) -> dict[str, Any]:
        """The message stays in place, emptied: ``message: ""``, type ``recall``."""
        message_id = _message_id(message_id)
        async with self._db.write() as s:
            room, row, member = await self._locate(s, caller, message_id, room_id=room_id)
            if not caller.is_admin and (row.sender != caller.user_id or member is None):
                raise InsufficientPermissions("Only the sender may recall a message")
            if row.message_type in SYSTEM_TYPES:
                raise InvalidRequest(f"A {row.message_type} message cannot be recalled")
            kept = {"clientMessageId": row.body["clientMessageId"]} if row.client_msg_id else {}
            row.message_type = RECALL
            row.body = {"message": "", "mentions": [], **kept}
            row.search_text = None
            row.pinned = False
            row.reactions = None
            row.updated_at = _later(now_ms(), row.updated_at)
            mentioned = await forget_mentions(s, room.app_id, room.id, row.seq)
            await refresh_mentioned(s, room.app_id, room.id, mentioned)
            public = await self._public(s, row)
            replies = await self._requote(s, row, _quoted(public))
        for change in [public, *replies]:
            await self._publish_change(caller.app_id, change)
        return public

    async def delete(self, caller: Principal, room_id: str, message_id: str) -> dict[str, Any]:
        """``DELETE /rooms/{id}/messages/{id|_all}``: gone for everyone, for good."""
        async with self._db.write() as s:
            room = await self._rooms.room_row(s, caller.app_id, room_id, lock=True)
            member = await self._member(s, room, caller)
            if not self._rooms.is_superuser(room, member, caller):
                raise InsufficientPermissions(
                    "Only the room's owner, managers and admins may delete messages",
                    code="INSUFFICIENT_PERMISSION",
                )
            where = (MessageRow.app_id == room.app_id, MessageRow.room_id == room.id)
            members = (RoomMemberRow.app_id == room.app_id, RoomMemberRow.room_id == room.id)
            if message_id == "_all":
                count = (
                    await s.execute(select(func.count()).select_from(MessageRow).where(*where))
                ).scalar_one()
                await s.execute(delete(MessageRow).where(*where))
                await s.execute(
                    delete(MentionRow).where(
                        MentionRow.app_id == room.app_id, MentionRow.room_id == room.id
                    )
                )
                await s.execute(
                    delete(HiddenMessageRow).where(
                        HiddenMessageRow.app_id == room.app_id, HiddenMessageRow.room_id == room.id
                    )
                )
                await s.execute(
                    update(RoomMemberRow)
                    .where(*members)
                    .values(seen=0, mentioned=False, read_seq=room.last_seq)
                )
                room.message_count = 0
                room.last_message_id = None
                replies = []
            else:
                row = await self._message(s, room.app_id, _message_id(message_id))
                if row is None or row.room_id != room.id:
                    raise message_not_found()
                count = 1
                replies = await self._requote(
                    s, row, {"_id": row.id, "id": row.id, "isDeleted": True}
                )
                await s.delete(row)
                await s.execute(
                    delete(HiddenMessageRow).where(
                        HiddenMessageRow.app_id == room.app_id,
                        HiddenMessageRow.room_id == room.id,
                        HiddenMessageRow.message_id == row.id,
                    )
                )
                # The room counts one message fewer; so do those who had counted it as
                # seen (read it, or sent it): whoever had not has one unread fewer.
                await s.execute(
                    update(RoomMemberRow)
                    .where(
                        *members,
                        or_(
                            RoomMemberRow.read_seq >= row.seq,
                            RoomMemberRow.user_id == (row.sender or ""),
                        ),
                        RoomMemberRow.seen > 0,
                    )
                    .values(seen=RoomMemberRow.seen - 1)
                )
                mentioned = await forget_mentions(s, room.app_id, room.id, row.seq)
                await refresh_mentioned(s, room.app_id, room.id, mentioned)
                room.message_count = max(0, room.message_count - 1)
                if room.last_message_id == row.id:
                    await s.flush()
                    latest = (
                        await s.execute(
                            select(MessageRow.id, MessageRow.created_at)
                            .where(*where)
                            .order_by(MessageRow.seq.desc())
                            .limit(1)
                        )
                    ).first()
                    room.last_message_id = latest[0] if latest else None
            now = now_ms()
            view = (await self._rooms.views(s, [room], caller))[0]
        await self._events.publish(
            [Event(caller.app_id, ROOM, room_event_data(view), rooms=[room.id])]
        )
        for change in replies:
            await self._publish_change(caller.app_id, change)
        return {
            "deletedCount": count,
            "roomID": room.id,
            "messageID": message_id,
            "deletedBy": caller.user_id,
            "deletedAt": iso(now),
            "deletedAtMS": now,
        }

    async def set_hidden(self, caller: Principal, message_id: str, hidden: bool) -> dict[str, Any]:
        """``POST``/``DELETE /messages/{id}/hidden``: hidden from the room, reversibly."""
        async with self._db.write() as s:
            room, row, member = await self._locate(s, caller, _message_id(message_id))
            self._require_superuser(room, member, caller)
            row.hidden = hidden
            row.updated_at = _later(now_ms(), row.updated_at)
            public = await self._public(s, row)
            replies = await self._requote(s, row, _quoted(public))
        for change in [public, *replies]:
            await self._publish_change(caller.app_id, change)
        return public

    async def hide_by_sender(self, caller: Principal, body: Any, hidden: bool) -> dict[str, Any]:
        """``POST /messages/hide-by-sender-in-room`` (and ``unhide-``): every message of
        ``sender`` in ``room``."""
        if not isinstance(body, dict) or not body.get("room") or not body.get("sender"):
            raise InvalidRequest("room and sender are required", code="MISSING_PARAMETER")
        sender = body["sender"]
        if not isinstance(sender, str):
            raise InvalidRequest("sender must be a client id")
        async with self._db.write() as s:
            room = await self._rooms.room_row(s, caller.app_id, body["room"], lock=True)
            self._require_superuser(room, await self._member(s, room, caller), caller)
            changed = list(
                (
                    await s.execute(
                        select(MessageRow).where(
                            MessageRow.app_id == room.app_id,
                            MessageRow.room_id == room.id,
                            MessageRow.sender == sender,
                            MessageRow.hidden.is_(not hidden),
                        )
                    )
                ).scalars()
            )
            now = now_ms()
            for row in changed:
                row.hidden = hidden
                row.updated_at = _later(now, row.updated_at)
            publics = [await self._public(s, row) for row in changed]
        for public in publics:
            await self._publish_change(caller.app_id, public)
        count = len(changed)
        return {"room": room.id, "sender": sender, "count": count, "nModified": count}

    async def set_pinned(self, caller: Principal, message_id: str, pinned: bool) -> dict[str, Any]:
        """One pinned message per room: pinning one unpins the one before."""
        async with self._db.write() as s:
            room, row, member = await self._locate(s, caller, _message_id(message_id))
            self._require_superuser(room, member, caller)
            if row.message_type == RECALL and pinned:
                raise InvalidRequest("A recalled message cannot be pinned")
            now = now_ms()
            unpinned = []
            if pinned:
                previous = (
                    await s.execute(
                        select(MessageRow).where(
                            MessageRow.app_id == room.app_id,
                            MessageRow.room_id == room.id,
                            MessageRow.pinned.is_(True),
                            MessageRow.id != row.id,
                        )
                    )
                ).scalars()
                for old in previous:
                    old.pinned = False
                    old.updated_at = _later(now, old.updated_at)
                    unpinned.append(await self._public(s, old))
            row.pinned = pinned
            row.updated_at = _later(now, row.updated_at)
            public = await self._public(s, row)
        for change in [*unpinned, public]:
            await self._publish_change(caller.app_id, change)
        return public

    async def react(
        self, caller: Principal, message_id: str, reaction: Any, add: bool
    ) -> dict[str, Any]:
        """Add or remove the caller's ``reaction``; each (client, reaction) counts once."""
        if not isinstance(reaction, str) or not 0 < len(reaction) <= 64:
            raise InvalidRequest("reaction must be a string of 1 to 64 characters")
        user_id = acting_user(caller)
        async with self._db.write() as s:
            room, row, member = await self._locate(s, caller, _message_id(message_id))
            if member is None:
                raise message_not_found()
            _require_open(room)
            mine = {"client": user_id, "reaction": reaction}
            reactions = [r for r in (row.reactions or []) if r != mine]
            if add:
                if len(reactions) >= MAX_REACTIONS:
                    raise TooLarge(f"A message holds at most {MAX_REACTIONS} reactions")
                reactions.append(mine)
            if reactions != (row.reactions or []):
                row.reactions = reactions or None
                row.updated_at = _later(now_ms(), row.updated_at)
            public = await self._public(s, row)
        await self._publish_change(caller.app_id, public)
        return public

    # -- hiding for oneself ("delete for me") ------------------------------------------

    async def hide_for_me(
        self, caller: Principal, body: Any, *, everything: bool
    ) -> dict[str, Any]:
        """``POST /messages/user-delete`` (listed ids) and ``.../all-in-room``."""
        if not isinstance(body, dict) or not body.get("room"):
            raise InvalidRequest("room is required", code="MISSING_PARAMETER")
        wanted: list[str] = []
        if not everything:
            ids = body.get("messages")
            if not isinstance(ids, list) or not ids:
                raise InvalidRequest("messages must list message ids", code="MISSING_PARAMETER")
            if len(ids) > MAX_HIDE_IDS:
                raise TooLarge(f"At most {MAX_HIDE_IDS} messages per request")
            wanted = list(dict.fromkeys(_message_id(i) for i in ids))
        user_id = acting_user(caller)
        async with self._db.write() as s:
            room = await self._rooms.room_row(s, caller.app_id, body["room"])
            member = await self._member(s, room, caller)
            if member is None:
                raise InsufficientPermissions("Not a member of this room", code="NOT_ROOM_MEMBER")
            in_room = select(MessageRow.id).where(
                MessageRow.app_id == room.app_id, MessageRow.room_id == room.id
            )
            if not self._rooms.is_superuser(room, member, caller):
                in_room = in_room.where(MessageRow.hidden.is_(False))
            if not everything:
                in_room = in_room.where(MessageRow.id.in_(wanted))
            found = list((await s.execute(in_room.order_by(MessageRow.seq))).scalars())
            already = set(
                (
                    await s.execute(
                        select(HiddenMessageRow.message_id).where(
                            HiddenMessageRow.app_id == room.app_id,
                            HiddenMessageRow.user_id == user_id,
                            HiddenMessageRow.room_id == room.id,
                        )
                    )
                ).scalars()
            )
            now = now_ms()
            fresh = [m for m in found if m not in already]
            s.add_all(
                HiddenMessageRow(
                    app_id=room.app_id,
                    user_id=user_id,
                    room_id=room.id,
                    message_id=m,
                    created_at=now,
                )
                for m in fresh
            )
        hidden = {"room": room.id, "messages": found, "isUserDeleteAllMessagesInRoom": everything}
        await self._events.publish(
            [Event(caller.app_id, USER_DELETE_MESSAGES, hidden, users=[user_id])]
        )
        return {
            "n": len(found),
            "nModified": len(fresh),
            "ok": 1,
            "count": len(found),
            "room": room.id,
            "totalCount": len(found),
            "messages": found,
        }

    # -- helpers ------------------------------------------------------------------------

    async def _locate(
        self,
        s: AsyncSession,
        caller: Principal,
        message_id: str,
        *,
        room_id: str | None = None,
    ) -> tuple[RoomRow, MessageRow, RoomMemberRow | None]:
        """The message, its room and the caller's membership, all locked for the change:
        the room first, then the message — the order every writer takes, so that two
        changes cannot deadlock on PostgreSQL. 404 unless the caller is a member of the
        message's room (or the API Key), and for a message hidden from the room unless
        the caller is its sender or a superuser."""
        found = await self._message(s, caller.app_id, message_id)
        if found is None or (room_id is not None and found.room_id != check_room_id(room_id)):
            if room_id is not None:  # an unknown room is its own error
                await self._rooms.room_row(s, caller.app_id, room_id)
            raise message_not_found()
        room = await s.get(RoomRow, (found.app_id, found.room_id), with_for_update=True)
        row = await self._message(s, caller.app_id, message_id, lock=True)
        if room is None or row is None or row.room_id != room.id:
            raise message_not_found()
        member = await self._member(s, room, caller)
        if member is None and not caller.is_admin:
            raise message_not_found()
        superuser = self._rooms.is_superuser(room, member, caller)
        if row.hidden and not superuser and row.sender != caller.user_id:
            raise message_not_found()
        return room, row, member

    async def _member(
        self, s: AsyncSession, room: RoomRow, caller: Principal
    ) -> RoomMemberRow | None:
        return await self._rooms.member_of(s, room, caller.user_id)

    def _require_superuser(
        self, room: RoomRow, member: RoomMemberRow | None, caller: Principal
    ) -> None:
        if not self._rooms.is_superuser(room, member, caller):
            raise InsufficientPermissions(
                "Only the room's owner, managers and admins may do this",
                code="INSUFFICIENT_PERMISSIONS",
            )

    @staticmethod
    async def _message(
        s: AsyncSession, app_id: str, message_id: str, *, lock: bool = False
    ) -> MessageRow | None:
        query = select(MessageRow).where(MessageRow.app_id == app_id, MessageRow.id == message_id)
        if lock:  # and read it afresh: another change may have committed meanwhile
            query = query.with_for_update().execution_options(populate_existing=True)
        return (await s.execute(query)).scalar_one_or_none()

    async def _public(self, s: AsyncSession, row: MessageRow) -> dict[str, Any]:
        profiles = await self._users.profiles(row.app_id, [row.sender] if row.sender else [], s)
        sender = profiles.get(row.sender or "")
        return message_public(row, user_embedded(sender) if sender else None)

    async def _requote(
        self, s: AsyncSession, row: MessageRow, quoted: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Replies keep a copy of what they quote: after a recall, delete or hide of
        ``row`` they quote its new state instead (and count as changed)."""
        replies = list(
            (
                await s.execute(
                    select(MessageRow).where(
                        MessageRow.app_id == row.app_id,
                        MessageRow.room_id == row.room_id,
                        MessageRow.reply_to == row.id,
                    )
                )
            ).scalars()
        )
        now = now_ms()
        changed = []
        for reply in replies:
            reply.body = {**reply.body, "reply": quoted}
            reply.updated_at = _later(now, reply.updated_at)
            changed.append(await self._public(s, reply))
        return changed

    async def _publish_change(self, app_id: str, public: dict[str, Any]) -> None:
        """``chat message`` with the message's new state; a message hidden from the room
        goes out as a stub, so that its content reaches no one the history hides it from
        (the room's superusers read it from history)."""
        public = hidden_stub(public)
        await self._events.publish([Event(app_id, CHAT_MESSAGE, public, rooms=[public["room"]])])


def _quoted(public: dict[str, Any]) -> dict[str, Any]:
    """A message as a reply quotes it: one level deep, hidden content left out."""
    quoted = {k: v for k, v in hidden_stub(public).items() if k != "reply"}
    return quoted


def _message_id(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 64 or not value.isprintable():
        raise InvalidRequest("A message id is 1 to 64 printable characters", code="INVALID_BODY")
    return value


def _require_open(room: RoomRow) -> None:
    if room.status == 0:
        raise InsufficientPermissions("The room is frozen", code="ROOM_FROZEN")


def _later(now: int, previous: int) -> int:
    """A change's time: never before the previous one, so that ``updatedAt`` order is
    change order even when the clock steps back."""
    return max(now, previous + 1)
