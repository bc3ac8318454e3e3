"""Typed events, published on the broker after the change they describe has committed.

Every event names the app, the rooms and users it concerns, a ``kind`` (the socket event
the real-time gateway will emit) and its ``data`` in wire shape. The gateway of every node
subscribes to :data:`CHANNEL` and delivers each event to the sockets of those rooms'
members and of those users.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from parley.broker import Broker

CHANNEL = "events"

# The kinds, named as the socket events of the contract (§5.4).
ROOM = "room"  # a room was created, changed, or its members changed
ROOM_DELETED = "roomDeleted"
CHAT_MESSAGE = "chat message"
LAST_READ = "lastRead"
TYPING = "typing"  # to the room's members other than the sender
INVITATION = "invitation"
CANCEL_INVITATION = "cancelInvitation"
ROOM_PREF = "roomPref"
MY_PREF_CHANGE = "myPrefChange"
MY_PREF_DELETE = "myPrefDelete"
USER_DELETE_MESSAGES = "userDeleteMessages"  # to the user who hid messages for themself


@dataclass
class Event:
    app_id: str
    kind: str
    data: Any
    rooms: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "app": self.app_id,
                "kind": self.kind,
                "rooms": self.rooms,
                "users": self.users,
                "data": self.data,
            }
        )

    @staticmethod
    def decode(raw: bytes) -> Event:
        msg = orjson.loads(raw)
        return Event(msg["app"], msg["kind"], msg["data"], msg["rooms"], msg["users"])


class EventBus:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    async def publish(self, events: list[Event]) -> None:
        """Call only after the transaction that made these changes has committed."""
        for event in events:
            await self._broker.publish(CHANNEL, event.encode())
