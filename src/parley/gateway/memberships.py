"""The rooms of connecting users, read in batches.

Every authenticated connect needs the rooms of its user (as a member, or through one of
its user groups). Sockets that connect together share one database read (see
:mod:`parley.services.batched`): the groups of all their users, then the rooms of those
users and groups, both from covering indexes (migration 0009).
"""

from __future__ import annotations

from sqlalchemy import select

from parley.services.batched import BatchedLookup, chunks_by_app
from parley.storage.db import Database
from parley.storage.tables import GroupMemberRow, RoomMemberRow

_GROUPS = select(GroupMemberRow.user_id, GroupMemberRow.group_id)
_ROOMS = select(RoomMemberRow.user_id, RoomMemberRow.room_id)

Key = tuple[str, str]  # (app id, user id)


class RoomsOfUsers:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._lookup: BatchedLookup[Key, set[str]] = BatchedLookup(self._read)

    async def get(self, app_id: str, user_id: str) -> set[str]:
        """The ids of the rooms of a user. Raises what the database read raised."""
        rooms = await self._lookup.get((app_id, user_id))
        return set() if rooms is None else set(rooms)  # a set of the caller's own

    async def _read(self, keys: list[Key]) -> dict[Key, set[str]]:
        found: dict[Key, set[str]] = {}
        async with self._db.read() as s:
            for app_id, chunk in chunks_by_app(keys):
                # Who holds each membership: the user itself, or a group of users.
                holders: dict[str, list[str]] = {user: [user] for user in chunk}
                groups = await s.execute(
                    _GROUPS.where(
                        GroupMemberRow.app_id == app_id, GroupMemberRow.user_id.in_(chunk)
                    )
                )
                for user_id, group_id in groups:
                    holders.setdefault(group_id, []).append(user_id)
                rooms = await s.execute(
                    _ROOMS.where(
                        RoomMemberRow.app_id == app_id,
                        RoomMemberRow.user_id.in_(list(holders)),
                    )
                )
                for holder, room_id in rooms:
                    for user_id in holders[holder]:
                        found.setdefault((app_id, user_id), set()).add(room_id)
        return found
