"""The rooms of connecting users, read in batches.

Every authenticated connect needs the rooms of its user (as a member, or through one of
its user groups). Sockets that connect together share one database read (see
:mod:`parley.services.batched`): the groups of all their users, then the rooms of those
users and groups, both from covering indexes (migration 0009).
"""

from __future__ import annotations

import functools

from sqlalchemy import Connection, Select, String, bindparam, select

from parley.services.batched import CHUNK, BatchedLookup, chunks_by_app
from parley.storage.db import Database
from parley.storage.driver import fetch
from parley.storage.tables import GroupMemberRow, RoomMemberRow

Key = tuple[str, str]  # (app id, user id)


@functools.lru_cache(maxsize=1024)
def _groups_query(users: int) -> Select[str, str]:
    """(user, group) of ``users`` users (parameters k_app, u0, u1...)."""
    ids = [bindparam(f"u{i}", type_=String) for i in range(users)]
    return select(GroupMemberRow.user_id, GroupMemberRow.group_id).where(
        GroupMemberRow.app_id == bindparam("k_app"), GroupMemberRow.user_id.in_(ids)
    )


@functools.lru_cache(maxsize=1024)
def _rooms_query(holders: int) -> Select[str, str]:
    """(member, room) of ``holders`` users or groups (parameters k_app, h0, h1...)."""
    ids = [bindparam(f"h{i}", type_=String) for i in range(holders)]
    return select(RoomMemberRow.user_id, RoomMemberRow.room_id).where(
        RoomMemberRow.app_id == bindparam("k_app"), RoomMemberRow.user_id.in_(ids)
    )


class RoomsOfUsers:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._lookup: BatchedLookup[Key, set[str]] = BatchedLookup(self._read)

    async def get(self, app_id: str, user_id: str) -> set[str]:
        """The ids of the rooms of a user. Raises what the database read raised."""
        rooms = await self._lookup.get((app_id, user_id))
        return set() if rooms is None else set(rooms)  # a set of the caller's own

    async def _read(self, keys: list[Key]) -> dict[Key, set[str]]:
        return await self._db.run_read(lambda conn: _rooms_of_users(conn, keys))


def _rooms_of_users(conn: Connection, keys: list[Key]) -> dict[Key, set[str]]:
    found: dict[Key, set[str]] = {}
    for app_id, chunk in chunks_by_app(keys):
        # Who holds each membership: the user itself, or a group of users.
        holders: dict[str, list[str]] = {user: [user] for user in chunk}
        params = {"k_app": app_id, **{f"u{i}": user for i, user in enumerate(chunk)}}
        for user_id, group_id in fetch(conn, _groups_query(len(chunk)), params):
            holders.setdefault(group_id, []).append(user_id)
        # A user's groups can take the holders past CHUNK: read them CHUNK at a time.
        listed = list(holders)
        for start in range(0, len(listed), CHUNK):
            part = listed[start : start + CHUNK]
            params = {"k_app": app_id, **{f"h{i}": h for i, h in enumerate(part)}}
            for holder, room_id in fetch(conn, _rooms_query(len(part)), params):
                for user_id in holders[holder]:
                    found.setdefault((app_id, user_id), set()).add(room_id)
    return found
