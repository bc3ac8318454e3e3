"""Messages: the storing half needed by rooms (system messages). The messages issue adds
sending, history, edits and the rest on top of :func:`append_message`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.services.clock import iso, now_ms
from parley.services.ids import object_id
from parley.storage.tables import MessageRow, RoomMemberRow, RoomRow

# Messages the server writes for room changes (contract §4.3, "System messages").
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


async def append_message(
    s: AsyncSession, room: RoomRow, sender: str | None, message_type: str, fields: dict[str, Any]
) -> MessageRow:
    """Store a message in ``room`` inside the caller's transaction: the next sequence
    number of the room, the room's last message, +1 badge for every other member, and the
    room's new activity time on every membership (the sort key of ``GET /rooms``)."""
    now = now_ms()
    room.last_seq += 1
    row = MessageRow(
        app_id=room.app_id,
        room_id=room.id,
        seq=room.last_seq,
        id=object_id(),
        sender=sender,
        message_type=message_type,
        body=fields,
        created_at=now,
        updated_at=now,
    )
    s.add(row)
    room.last_message_id = row.id
    room.last_message_at = now
    members = (RoomMemberRow.app_id == room.app_id, RoomMemberRow.room_id == room.id)
    await s.execute(update(RoomMemberRow).where(*members).values(activity_at=now))
    bump = update(RoomMemberRow).where(*members).values(badge=RoomMemberRow.badge + 1)
    if sender is not None:
        bump = bump.where(RoomMemberRow.user_id != sender)
    await s.execute(bump)
    return row


def message_public(row: MessageRow, sender: dict[str, Any] | None) -> dict[str, Any]:
    """The contract's Message object; ``sender`` is the embedded Client (or None)."""
    return {
        **row.body,
        "_id": row.id,
        "id": row.id,
        "appID": row.app_id,
        "__v": 0,
        "room": row.room_id,
        "sender": sender,
        "messageType": row.message_type,
        "messageTime": iso(row.created_at),
        "messageTimeMS": row.created_at,
        "createdAt": iso(row.created_at),
        "createdAtMS": row.created_at,
        "updatedAt": iso(row.updated_at),
        "updatedAtMS": row.updated_at,
    }
