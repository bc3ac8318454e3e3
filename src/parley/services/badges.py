"""Unread counts: contract §3.8.

A member's unread count in a room (messages after the member's last read not sent by
the member) is the room's message count less the member's ``seen`` (``UNREAD``, see
``RoomMemberRow``); ``read_seq`` is the sequence number read up to. Totals are sums over
the caller's own memberships, joined to their rooms; tag filters use the ``room_tags``
rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.services.auth import Authenticator, Principal
from parley.services.errors import AuthError, InvalidRequest, TooLarge
from parley.services.params import acting_user, tag_list, time_param
from parley.storage.db import Database
from parley.storage.tables import (
    MEMBERSHIP_ROOM,
    UNREAD,
    MessageRow,
    RoomMemberRow,
    RoomRow,
    RoomTagRow,
)

MAX_TAGS = 100
MAX_TOKENS = 100


class BadgeService:
    def __init__(self, db: Database, auth: Authenticator) -> None:
        self._db = db
        self._auth = auth

    async def my_badge(self, caller: Principal, room_tags: list[str]) -> dict[str, Any]:
        """``GET /me/badge``: the caller's unread total, over rooms having every one of
        ``roomTags`` when given (the documented AND reading, contract §6.8)."""
        tags = _tags(room_tags)
        user_id = acting_user(caller)
        query = (
            select(func.coalesce(func.sum(UNREAD), 0))
            .select_from(RoomMemberRow)
            .join(RoomRow, MEMBERSHIP_ROOM)
            .where(RoomMemberRow.app_id == caller.app_id, RoomMemberRow.user_id == user_id)
        )
        for tag in tags:
            query = query.where(
                RoomMemberRow.room_id.in_(
                    select(RoomTagRow.room_id).where(
                        RoomTagRow.app_id == caller.app_id, RoomTagRow.tag == tag
                    )
                )
            )
        async with self._db.read() as s:
            return {"badge": int((await s.execute(query)).scalar_one())}

    async def by_room_tags(self, caller: Principal, body: Any) -> dict[str, Any]:
        """``POST /badges/byRoomTags``: unread per tag; ``totalBadge`` over the rooms
        having any of the tags (every room when no tags are given). The API Key naming no
        user (as the public Postman collection calls it) counts every member's unread."""
        tags = _tags(_body(body).get("tags"))
        async with self._db.read() as s:
            if caller.is_admin and caller.user_id is None:
                return await _by_tag_of_everyone(s, caller.app_id, tags)
            per_room = await self._unread_rooms(s, caller.app_id, acting_user(caller), None)
            return await _by_tag(s, caller.app_id, tags, per_room)

    async def by_room_tags_and_time(self, caller: Principal, body: Any) -> dict[str, Any]:
        """``POST /badges/byRoomTagsAndTime``: as ``byRoomTags``, counting only unread
        messages sent before ``beforeTime``."""
        fields = _body(body)
        tags = _tags(fields.get("tags"))
        before = time_param(fields.get("beforeTime"), "beforeTime")
        if before is None:
            raise InvalidRequest("beforeTime is required", code="MISSING_PARAMETER")
        user_id = acting_user(caller)
        async with self._db.read() as s:
            per_room = await self._unread_rooms(s, caller.app_id, user_id, before)
            return await _by_tag(s, caller.app_id, tags, per_room)

    async def for_tokens(self, caller: Principal, body: Any) -> dict[str, Any]:
        """``POST /badges`` (Client Key): the totals of the users the listed tokens belong
        to. Tokens that are invalid are left out rather than failing the whole call."""
        tokens = _body(body).get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise InvalidRequest("tokens must be a list of user tokens", code="MISSING_PARAMETER")
        if len(tokens) > MAX_TOKENS:
            raise TooLarge(f"At most {MAX_TOKENS} tokens per request")
        users: list[str] = []
        for raw in dict.fromkeys(tokens):
            try:
                users.append((await self._auth.verify_token(caller.app_id, raw)).user_id)
            except AuthError:
                continue
        users = list(dict.fromkeys(users))
        async with self._db.read() as s:
            totals = dict(
                (
                    await s.execute(
                        select(RoomMemberRow.user_id, func.sum(UNREAD))
                        .select_from(RoomMemberRow)
                        .join(RoomRow, MEMBERSHIP_ROOM)
                        .where(
                            RoomMemberRow.app_id == caller.app_id,
                            RoomMemberRow.user_id.in_(users),
                        )
                        .group_by(RoomMemberRow.user_id)
                    )
                ).all()
            )
        data = [{"client": u, "badge": int(totals.get(u) or 0)} for u in users]
        return {"data": data, "totalBadge": sum(d["badge"] for d in data)}

    @staticmethod
    async def _unread_rooms(
        s: AsyncSession, app_id: str, user_id: str, before: int | None
    ) -> dict[str, int]:
        """Unread count per room of the user, or with ``before`` a count of the unread
        messages sent before that time."""
        if before is None:
            rows = await s.execute(
                select(RoomMemberRow.room_id, UNREAD)
                .select_from(RoomMemberRow)
                .join(RoomRow, MEMBERSHIP_ROOM)
                .where(
                    RoomMemberRow.app_id == app_id,
                    RoomMemberRow.user_id == user_id,
                    UNREAD > 0,
                )
            )
            return {room: int(badge) for room, badge in rows}
        counted = await s.execute(
            select(MessageRow.room_id, func.count())
            .join(
                RoomMemberRow,
                (RoomMemberRow.app_id == MessageRow.app_id)
                & (RoomMemberRow.room_id == MessageRow.room_id),
            )
            .join(RoomRow, MEMBERSHIP_ROOM)
            .where(
                RoomMemberRow.app_id == app_id,
                RoomMemberRow.user_id == user_id,
                UNREAD > 0,
                MessageRow.seq > RoomMemberRow.read_seq,
                MessageRow.sender.is_distinct_from(user_id),
                MessageRow.created_at < before,
            )
            .group_by(MessageRow.room_id)
        )
        return {room: int(n) for room, n in counted}


async def _by_tag(
    s: AsyncSession, app_id: str, tags: list[str], per_room: dict[str, int]
) -> dict[str, Any]:
    data = dict.fromkeys(tags, 0)
    if not tags:
        return {"totalBadge": sum(per_room.values()), "data": data}
    tagged = (
        await s.execute(
            select(RoomTagRow.room_id, RoomTagRow.tag).where(
                RoomTagRow.app_id == app_id,
                RoomTagRow.tag.in_(tags),
                RoomTagRow.room_id.in_(list(per_room)),
            )
        )
    ).all()
    counted: set[str] = set()
    for room_id, tag in tagged:
        data[tag] += per_room[room_id]
        counted.add(room_id)
    return {"totalBadge": sum(per_room[r] for r in counted), "data": data}


async def _by_tag_of_everyone(s: AsyncSession, app_id: str, tags: list[str]) -> dict[str, Any]:
    """``_by_tag`` over every membership of the app, summed in the database (an app may
    have more rooms with unread messages than a query may list)."""
    badges = (
        select(func.coalesce(func.sum(UNREAD), 0))
        .select_from(RoomMemberRow)
        .join(RoomRow, MEMBERSHIP_ROOM)
        .where(RoomMemberRow.app_id == app_id)
    )
    if not tags:
        return {"totalBadge": int((await s.execute(badges)).scalar_one()), "data": {}}
    tagged = select(RoomTagRow.room_id).where(RoomTagRow.app_id == app_id, RoomTagRow.tag.in_(tags))
    total = (await s.execute(badges.where(RoomMemberRow.room_id.in_(tagged)))).scalar_one()
    per_tag = await s.execute(
        select(RoomTagRow.tag, func.sum(UNREAD))
        .join(
            RoomMemberRow,
            (RoomMemberRow.app_id == RoomTagRow.app_id)
            & (RoomMemberRow.room_id == RoomTagRow.room_id),
        )
        .join(RoomRow, MEMBERSHIP_ROOM)
        .where(RoomTagRow.app_id == app_id, RoomTagRow.tag.in_(tags))
        .group_by(RoomTagRow.tag)
    )
    data = dict.fromkeys(tags, 0)
    data.update({tag: int(n or 0) for tag, n in per_tag})
    return {"totalBadge": int(total), "data": data}


def _body(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object", code="INVALID_BODY")
    return body


def _tags(value: Any) -> list[str]:
    return tag_list(value, maximum=MAX_TAGS)
