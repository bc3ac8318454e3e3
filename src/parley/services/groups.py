"""User groups (contract §3.3): virtual users whose id, placed among a room's members,
gives every member of the group access to the room."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.services.clock import iso, now_ms
from parley.services.errors import Conflict, InvalidRequest, NotFound, TooLarge
from parley.services.ids import object_id
from parley.services.users import UserService, user_embedded
from parley.storage.db import Database
from parley.storage.tables import GroupMemberRow, GroupRow, UserRow

MAX_GROUP_MEMBERS = 10_000
MAX_PAGE = 100


def group_public(row: GroupRow, members: list[str]) -> dict[str, Any]:
    return {
        "_id": row.id,
        "id": row.id,
        "appID": row.app_id,
        "nickname": row.nickname,
        "avatarUrl": row.avatar_url,
        "clientType": "group",
        "members": members,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
    }


class GroupService:
    def __init__(self, db: Database, users: UserService) -> None:
        self._db = db
        self._users = users

    async def upsert(self, app_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /admin/groups``: create, or replace the nickname/avatar/members of an
        existing group (create-or-update, like ``POST /admin/clients``)."""
        group_id = body.get("_id") or object_id()
        if not isinstance(group_id, str) or len(group_id) > 255 or not group_id.isprintable():
            raise InvalidRequest("_id must be a printable string of at most 255 characters")
        nickname = body.get("nickname")
        if not isinstance(nickname, str) or not 0 < len(nickname) <= 255:
            raise InvalidRequest("nickname is required", code="MISSING_PARAMETER")
        avatar = body.get("avatarUrl")
        if avatar is not None and (not isinstance(avatar, str) or len(avatar) > 4096):
            raise InvalidRequest("avatarUrl must be a string")
        members = body.get("members", [])
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise InvalidRequest("members must be a list of client ids")
        members = list(dict.fromkeys(members))
        if len(members) > MAX_GROUP_MEMBERS:
            raise TooLarge(f"A group holds at most {MAX_GROUP_MEMBERS} members")
        now = now_ms()
        async with self._db.write() as s:
            if await s.get(UserRow, (app_id, group_id)) is not None:
                raise Conflict(f"{group_id!r} is a user's id", code="USER_EXISTS")
            found = (
                set(
                    (
                        await s.execute(
                            select(UserRow.id).where(
                                UserRow.app_id == app_id, UserRow.id.in_(members)
                            )
                        )
                    ).scalars()
                )
                if members
                else set()
            )
            unknown = [m for m in members if m not in found]
            if unknown:
                raise NotFound(
                    f"Unknown clients: {', '.join(unknown[:10])}", code="CLIENT_NOT_FOUND"
                )
            row = await s.get(GroupRow, (app_id, group_id))
            if row is None:
                row = GroupRow(
                    app_id=app_id, id=group_id, nickname=nickname, created_at=now, updated_at=now
                )
                s.add(row)
                await s.flush()
            row.nickname, row.avatar_url, row.updated_at = nickname, avatar, now
            await s.execute(
                delete(GroupMemberRow).where(
                    GroupMemberRow.app_id == app_id, GroupMemberRow.group_id == group_id
                )
            )
            s.add_all(GroupMemberRow(app_id=app_id, group_id=group_id, user_id=m) for m in members)
            return group_public(row, members)

    async def list_groups(self, app_id: str, skip: int, limit: int) -> dict[str, Any]:
        if limit > MAX_PAGE:
            raise TooLarge(f"limit may be at most {MAX_PAGE}", code="RESULT_TOO_LARGE")
        async with self._db.read() as s:
            total = (
                await s.execute(
                    select(func.count()).select_from(GroupRow).where(GroupRow.app_id == app_id)
                )
            ).scalar()
            rows = list(
                (
                    await s.execute(
                        select(GroupRow)
                        .where(GroupRow.app_id == app_id)
                        .order_by(GroupRow.id)
                        .offset(skip)
                        .limit(limit or MAX_PAGE)
                    )
                ).scalars()
            )
            members = await members_of(s, app_id, [r.id for r in rows])
        return {"totalCount": total, "data": [group_public(r, members.get(r.id, [])) for r in rows]}

    async def embedded(
        self, s: AsyncSession, app_id: str, group_ids: list[str]
    ) -> dict[str, dict[str, Any]]:
        """Groups as they appear among a room's members: with their members as Clients."""
        if not group_ids:
            return {}
        rows = list(
            (
                await s.execute(
                    select(GroupRow).where(GroupRow.app_id == app_id, GroupRow.id.in_(group_ids))
                )
            ).scalars()
        )
        members = await members_of(s, app_id, [r.id for r in rows])
        profiles = await self._users.profiles(
            app_id, [u for ids in members.values() for u in ids], s
        )
        return {
            r.id: {
                **group_public(r, []),
                "members": [
                    user_embedded(profiles[u]) for u in members.get(r.id, []) if u in profiles
                ],
            }
            for r in rows
        }


async def members_of(s: AsyncSession, app_id: str, group_ids: list[str]) -> dict[str, list[str]]:
    if not group_ids:
        return {}
    rows = (
        await s.execute(
            select(GroupMemberRow)
            .where(GroupMemberRow.app_id == app_id, GroupMemberRow.group_id.in_(group_ids))
            .order_by(GroupMemberRow.user_id)
        )
    ).scalars()
    found: dict[str, list[str]] = {}
    for row in rows:
        found.setdefault(row.group_id, []).append(row.user_id)
    return found


async def groups_of(s: AsyncSession, app_id: str, user_id: str) -> list[str]:
    """The groups a user belongs to."""
    rows = await s.execute(
        select(GroupMemberRow.group_id).where(
            GroupMemberRow.app_id == app_id, GroupMemberRow.user_id == user_id
        )
    )
    return list(rows.scalars())
