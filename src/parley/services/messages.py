"""Messages: what a message is on the wire, how a client's input becomes one, and the
storing step every path shares (:func:`append_message` for system messages written inside
another change; :mod:`parley.services.message_writer` for sends, many per transaction).

Contract §4.3: a message carries any fields its sender gives (stored verbatim in ``body``)
beside the ones the server owns (ids, room, sender, times, reactions, pins, flags).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.services.clock import iso, now_ms
from parley.services.errors import InvalidRequest, TooLarge
from parley.services.ids import object_id
from parley.storage.tables import MentionRow, MessageRow, RoomMemberRow, RoomRow

# Messages the server writes for room changes (contract §4.3, "System messages"). No
# caller may send one of these types: they would pass for the server's own.
SYSTEM_TYPES = frozenset(
    {
        "joinRoom",
        "leaveRoom",
        "addMember",
        "addMembers",
        "deleteMember",
        "deleteMembers",
        "cancelInvitations",
        "assignAdmin",
    }
)
RECALL = "recall"
# Types whose search text includes the file's name ("files" search, contract §3.7).
FILE_TYPES = frozenset({"file", "image", "video", "audio"})

# Fields the server owns: a client's values for them are dropped, never stored.
SERVER_FIELDS = frozenset(
    {
        "_id",
        "id",
        "appID",
        "__v",
        "room",
        "sender",
        "messageType",
        "messageTime",
        "messageTimeMS",
        "createdAt",
        "createdAtMS",
        "updatedAt",
        "updatedAtMS",
        "editedAt",
        "editedAtMS",
        "reactions",
        "reactionCount",
        "pinned",
        "isPined",
        "isHidden",
        "isDeleted",
        "batchID",
        "status",
        "seq",
        "push",
        "skipTotalBadge",
        "clientMessageId",
    }
)
# What a room hears of a message hidden from it (events, resume): that it is hidden, not
# what it says. Superusers read the whole message from history.
HIDDEN_STUB_FIELDS = ("_id", "id", "appID", "room", "seq", "isHidden", "updatedAt", "updatedAtMS")
MAX_CLIENT_ID = 64
MAX_MENTIONS = 200
MAX_SEARCH_TEXT = 10_000
MAX_TYPE = 64


@dataclass
class MessageInput:
    """A client's message after checking: its type, its verbatim fields, and the parts
    the server acts on."""

    message_type: str
    fields: dict[str, Any]
    client_msg_id: str | None = None
    mentions: list[str] = field(default_factory=list)
    reply_to: str | None = None


def parse_input(body: Any, *, max_bytes: int, default_type: str | None = "text") -> MessageInput:
    """Check a MessageInput (contract §4.3) and split it into what is stored verbatim and
    what the server acts on. Raises 400 for wrong types, 413 for an oversized message."""
    if not isinstance(body, dict):
        raise InvalidRequest("The message must be a JSON object", code="INVALID_BODY")
    message_type = body.get("messageType", default_type)
    if message_type is None:
        raise InvalidRequest("messageType is required", code="MISSING_PARAMETER")
    if not isinstance(message_type, str) or not 0 < len(message_type) <= MAX_TYPE:
        raise InvalidRequest(
            f"messageType must be a string of 1 to {MAX_TYPE} characters", code="INVALID_BODY"
        )
    if message_type in SYSTEM_TYPES or message_type == "typing":
        raise InvalidRequest(f"{message_type} messages are written by the server only")
    if message_type == RECALL:
        raise InvalidRequest("A recall names the message: send its _id", code="INVALID_BODY")
    client_msg_id = body.get("clientMessageId")
    if client_msg_id is not None and (
        not isinstance(client_msg_id, str) or not 0 < len(client_msg_id) <= MAX_CLIENT_ID
    ):
        raise InvalidRequest(
            f"clientMessageId must be a string of 1 to {MAX_CLIENT_ID} characters",
            code="INVALID_BODY",
        )
    mentions = body.get("mentions", [])
    if mentions is None:
        mentions = []
    if (
        not isinstance(mentions, list)
        or len(mentions) > MAX_MENTIONS
        or not all(isinstance(m, str) and 0 < len(m) <= 255 for m in mentions)
    ):
        raise InvalidRequest(
            f"mentions must be a list of at most {MAX_MENTIONS} user ids", code="INVALID_BODY"
        )
    reply = body.get("reply")
    reply_to: str | None = None
    if isinstance(reply, dict):  # some clients send the whole replied message
        reply = reply.get("_id") or reply.get("id")
    if reply is not None:
        if not isinstance(reply, str) or not 0 < len(reply) <= 64:
            raise InvalidRequest("reply must be the id of a message", code="INVALID_BODY")
        reply_to = reply
    fields = {k: v for k, v in body.items() if k not in SERVER_FIELDS and k != "reply"}
    fields["mentions"] = mentions
    if client_msg_id is not None:
        fields["clientMessageId"] = client_msg_id
    _check_storable(fields)
    check_size(fields, max_bytes)
    mentions = list(dict.fromkeys(mentions))
    return MessageInput(message_type, fields, client_msg_id, mentions, reply_to)


def check_size(fields: dict[str, Any], max_bytes: int) -> None:
    """413 when a message's stored fields (new, or merged by an edit) are too large."""
    try:
        size = len(orjson.dumps(fields))
    except (orjson.JSONEncodeError, TypeError):
        raise InvalidRequest(
            "The message holds values JSON cannot carry", code="INVALID_BODY"
        ) from None
    if size > max_bytes:
        raise TooLarge(
            f"A message may hold at most {max_bytes} bytes of JSON", code="MESSAGE_TOO_LARGE"
        )


def _check_storable(value: Any, depth: int = 0) -> None:
    """Refuse what one database or the other cannot store — NaN and infinities (not
    JSON), NUL characters (PostgreSQL text) — before it reaches a shared transaction."""
    if depth > 64:
        raise InvalidRequest("The message nests too deeply", code="INVALID_BODY")
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise InvalidRequest("NaN and Infinity are not JSON numbers", code="INVALID_BODY")
    if isinstance(value, str) and "\x00" in value:
        raise InvalidRequest("Text may not hold NUL characters", code="INVALID_BODY")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_storable(key, depth + 1)
            _check_storable(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_storable(item, depth + 1)


async def refresh_mentioned(
    s: AsyncSession, app_id: str, room_id: str, user_ids: list[str] | None = None
) -> None:
    """Set ``isMentioned`` of the room's members (or of ``user_ids``) from the mentions
    that lie after each member's last read."""
    unread_mention = exists().where(
        MentionRow.app_id == RoomMemberRow.app_id,
        MentionRow.room_id == RoomMemberRow.room_id,
        MentionRow.user_id == RoomMemberRow.user_id,
        MentionRow.seq > RoomMemberRow.read_seq,
    )
    query = update(RoomMemberRow).where(
        RoomMemberRow.app_id == app_id, RoomMemberRow.room_id == room_id
    )
    if user_ids is not None:
        if not user_ids:
            return
        query = query.where(RoomMemberRow.user_id.in_(user_ids))
    await s.execute(query.values(mentioned=unread_mention))


async def forget_mentions(s: AsyncSession, app_id: str, room_id: str, seq: int) -> list[str]:
    """Drop a message's mentions (recalled, deleted, or about to be rewritten); returns
    the users it mentioned, whose ``isMentioned`` the caller refreshes."""
    where = (MentionRow.app_id == app_id, MentionRow.room_id == room_id, MentionRow.seq == seq)
    users = list((await s.execute(select(MentionRow.user_id).where(*where))).scalars())
    if users:
        await s.execute(delete(MentionRow).where(*where))
    return users


def search_text(message_type: str, fields: dict[str, Any]) -> str | None:
    """What full-text search finds a message by: its text, and for files their name."""
    parts = []
    text = fields.get("message")
    if isinstance(text, str) and message_type != RECALL:
        parts.append(text)
    if message_type in FILE_TYPES:
        extra = fields.get("extra")
        if isinstance(extra, str):
            try:
                extra = orjson.loads(extra)
            except orjson.JSONDecodeError:
                extra = None
        if isinstance(extra, dict) and isinstance(extra.get("fileName"), str):
            parts.append(extra["fileName"])
    joined = " ".join(p for p in parts if p)
    return joined[:MAX_SEARCH_TEXT] or None


async def append_message(
    s: AsyncSession, room: RoomRow, sender: str | None, message_type: str, fields: dict[str, Any]
) -> MessageRow:
    """Store a system message in ``room`` inside the caller's transaction: the next
    sequence number of the room, the room's last message and activity time (the sort key
    of ``GET /rooms``), one more unread message for every member but the sender (the
    room's count grows; the sender's ``seen`` with it). Sends take the batched path of
    the message writer instead."""
    now = now_ms()
    room.last_seq += 1
    room.message_count += 1
    row = MessageRow(
        app_id=room.app_id,
        room_id=room.id,
        seq=room.last_seq,
        id=object_id(),
        sender=sender,
        message_type=message_type,
        body=fields,
        search_text=None,
        pinned=False,
        hidden=False,
        created_at=now,
        updated_at=now,
    )
    s.add(row)
    room.last_message_id = row.id
    room.last_message_at = now
    if sender is not None:
        await s.execute(
            update(RoomMemberRow)
            .where(
                RoomMemberRow.app_id == room.app_id,
                RoomMemberRow.room_id == room.id,
                RoomMemberRow.user_id == sender,
            )
            .values(seen=RoomMemberRow.seen + 1)
        )
    return row


def message_public(row: MessageRow, sender: dict[str, Any] | None) -> dict[str, Any]:
    """The contract's Message object; ``sender`` is the embedded Client (or None)."""
    created = iso(row.created_at)
    public = {
        **row.body,
        "_id": row.id,
        "id": row.id,
        "appID": row.app_id,
        "__v": 0,
        "room": row.room_id,
        "sender": sender,
        "messageType": row.message_type,
        "messageTime": created,
        "messageTimeMS": row.created_at,
        "createdAt": created,
        "createdAtMS": row.created_at,
        "updatedAt": created if row.updated_at == row.created_at else iso(row.updated_at),
        "updatedAtMS": row.updated_at,
        "seq": row.seq,
    }
    if row.edited_at is not None:
        public["editedAt"] = iso(row.edited_at)
        public["editedAtMS"] = row.edited_at
    public["pinned"] = public["isPined"] = row.pinned
    if row.hidden:
        public["isHidden"] = True
    if row.reactions:
        public["reactions"] = row.reactions
        public["reactionCount"] = len(row.reactions)
    if row.batch_id:
        public["batchID"] = row.batch_id
    return public


def hidden_stub(public: dict[str, Any]) -> dict[str, Any]:
    """``public`` itself, or its stub when the message is hidden from the room."""
    if public.get("isHidden"):
        return {k: public[k] for k in HIDDEN_STUB_FIELDS if k in public}
    return public
