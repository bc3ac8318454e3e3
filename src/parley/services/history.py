"""Reading messages: history pages, windows, counts and the lists around them (contract
§3.7). Only members of a room (or the API Key) read it.

Pages are keyset pages over an index — ``(room, updated_at, seq)`` or ``(room,
created_at, seq)`` or the primary key ``(room, seq)`` — so a page costs the same in a room
of a thousand messages or a million. What each reader sees:
- messages hidden for the room (``isHidden``) only reach the room's superusers;
- messages the caller hid for themself come flagged ``isDeleted: true`` and listed in
  ``userDeletedIDs``, as the SDKs expect.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from parley.services.auth import Principal
from parley.services.clock import iso
from parley.services.errors import InsufficientPermissions, InvalidRequest, NotFound, TooLarge
from parley.services.messages import hidden_stub, message_public
from parley.services.params import acting_user, int_param, time_param
from parley.services.query_filter import build_filter
from parley.services.rooms import RoomService
from parley.services.users import UserService, user_embedded
from parley.storage.db import Database
from parley.storage.tables import (
    MEMBERSHIP_ROOM,
    ROOM_ACTIVITY,
    HiddenMessageRow,
    MessageRow,
    RoomMemberRow,
    RoomRow,
)

DEFAULT_PAGE = 20
RECENT_ROOMS = 100
TIME_FIELDS = {
    "updatedAt": MessageRow.updated_at,
    "createdAt": MessageRow.created_at,
    "messageTime": MessageRow.created_at,
}
QUERY_FIELDS = {
    "_id": MessageRow.id,
    "sender": MessageRow.sender,
    "messageType": MessageRow.message_type,
    "createdAtMS": MessageRow.created_at,
    "updatedAtMS": MessageRow.updated_at,
}


class HistoryService:
    def __init__(
        self, db: Database, users: UserService, rooms: RoomService, *, max_page: int
    ) -> None:
        self._db = db
        self._users = users
        self._rooms = rooms
        self.max_page = max_page

    async def page(self, caller: Principal, room_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """``GET /rooms/{id}/messages/v3``. An anchor (``beforeMessage``/``afterMessage``)
        is included in the page, as the web SDKs expect (they drop the first item). The
        scan runs away from the anchor; ``sortOrder`` orders what is returned."""
        limit = self._limit(params.get("limit"), DEFAULT_PAGE)
        field_name = params.get("timeRangeField") or "updatedAt"
        if field_name not in TIME_FIELDS:
            raise InvalidRequest(
                "timeRangeField is updatedAt, createdAt or messageTime", code="INVALID_QUERY"
            )
        order = params.get("sortOrder")
        if order not in (None, "", "asc", "desc"):
            raise InvalidRequest("sortOrder is asc or desc", code="INVALID_QUERY")
        after_time = time_param(params.get("afterTime"), "afterTime", code="INVALID_QUERY")
        column = TIME_FIELDS[field_name]
        async with self._db.read() as s:
            room, superuser = await self._readable(s, caller, room_id)
            query = self._visible(room, superuser)
            if after_time is not None:
                query = query.where(column > after_time)
            ascending = order == "asc"
            before, after = params.get("beforeMessage"), params.get("afterMessage")
            if before or after:
                anchor = await self._anchor(s, room, str(before or after))
                key = tuple_(column, MessageRow.seq)
                anchor_key = tuple_(getattr(anchor, column.key), anchor.seq)
                if before:
                    query, ascending_scan = query.where(key <= anchor_key), False
                else:
                    query, ascending_scan = query.where(key >= anchor_key), True
            else:
                ascending_scan = ascending
            sort = (column.asc(), MessageRow.seq.asc())
            if not ascending_scan:
                sort = (column.desc(), MessageRow.seq.desc())
            rows = list((await s.execute(query.order_by(*sort).limit(limit))).scalars())
            if order and ascending != ascending_scan:
                rows.reverse()
            data, hidden_ids = await self._render(s, caller, rows)
        return {
            "totalCount": room.message_count,
            "data": data,
            "userDeletedIDs": hidden_ids,
        }

    async def legacy_page(
        self, caller: Principal, room_id: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        """``GET /rooms/{id}/messages`` (deprecated): newest first by id, the anchor
        excluded, an optional ``q`` filter over sender, type and times."""
        limit = self._limit(params.get("limit"), DEFAULT_PAGE)
        async with self._db.read() as s:
            room, superuser = await self._readable(s, caller, room_id)
            query = self._visible(room, superuser)
            if params.get("q") is not None:
                query = query.where(build_filter(params["q"], QUERY_FIELDS))
            if params.get("beforeMessage"):
                anchor = await self._anchor(s, room, str(params["beforeMessage"]))
                query = query.where(MessageRow.seq < anchor.seq)
            rows = (await s.execute(query.order_by(MessageRow.seq.desc()).limit(limit))).scalars()
            data, _ = await self._render(s, caller, list(rows))
        return {"totalCount": len(data), "data": data}

    async def window(
        self, caller: Principal, room_id: str, message_id: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        """``GET /rooms/{id}/messages/{messageID}``: the message with up to ``before``
        messages before it and ``after`` after it, oldest first."""
        before = self._limit(params.get("before"), 10, name="before", zero_means_default=False)
        after = self._limit(params.get("after"), 10, name="after", zero_means_default=False)
        async with self._db.read() as s:
            room, superuser = await self._readable(s, caller, room_id)
            anchor = await self._anchor(s, room, message_id)
            visible = self._visible(room, superuser)
            older = visible.where(MessageRow.seq < anchor.seq).order_by(MessageRow.seq.desc())
            newer = visible.where(MessageRow.seq > anchor.seq).order_by(MessageRow.seq.asc())
            rows = list((await s.execute(older.limit(before))).scalars())[::-1]
            if superuser or not anchor.hidden:
                rows.append(anchor)
            rows += list((await s.execute(newer.limit(after))).scalars())
            data, _ = await self._render(s, caller, rows)
        return {"totalCount": len(data), "data": data}

    async def count_since(
        self, caller: Principal, room_id: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        """``GET /rooms/{id}/count``: messages created or changed after ``timeInMS``."""
        since = time_param(params.get("timeInMS"), "timeInMS") or 0
        async with self._db.read() as s:
            room, superuser = await self._readable(s, caller, room_id)
            query = self._visible(room, superuser).where(MessageRow.updated_at > since)
            count = (
                await s.execute(select(func.count()).select_from(query.subquery()))
            ).scalar_one()
        return {"count": int(count)}

    async def pinned(self, caller: Principal, room_id: str) -> dict[str, Any]:
        async with self._db.read() as s:
            room, superuser = await self._readable(s, caller, room_id)
            query = self._visible(room, superuser).where(MessageRow.pinned.is_(True))
            rows = list((await s.execute(query.order_by(MessageRow.seq.desc()))).scalars())
            data, _ = await self._render(s, caller, rows)
        return {"totalCount": len(data), "data": data}

    async def recent(self, caller: Principal, params: dict[str, Any]) -> dict[str, Any]:
        """``GET /messages/recent``: the newest messages of the caller's most recently
        active rooms (at most RECENT_ROOMS of them), newest first, in one query —
        bounded however many rooms the caller has."""
        limit = self._limit(params.get("limit"), DEFAULT_PAGE)
        user_id = acting_user(caller)
        async with self._db.read() as s:
            memberships = list(
                (
                    await s.execute(
                        select(RoomMemberRow)
                        .join(RoomRow, MEMBERSHIP_ROOM)
                        .where(
                            RoomMemberRow.app_id == caller.app_id,
                            RoomMemberRow.user_id == user_id,
                        )
                        .order_by(ROOM_ACTIVITY.desc(), RoomMemberRow.room_id)
                        .limit(RECENT_ROOMS)
                    )
                ).scalars()
            )
            rooms = {
                r.id: r
                for r in (
                    await s.execute(
                        select(RoomRow).where(
                            RoomRow.app_id == caller.app_id,
                            RoomRow.id.in_([m.room_id for m in memberships]),
                        )
                    )
                ).scalars()
            }
            superuser_rooms = [
                m.room_id
                for m in memberships
                if m.room_id in rooms and self._rooms.is_superuser(rooms[m.room_id], m, caller)
            ]
            query = (
                select(MessageRow)
                .where(
                    MessageRow.app_id == caller.app_id,
                    MessageRow.room_id.in_(list(rooms)),
                    or_(MessageRow.hidden.is_(False), MessageRow.room_id.in_(superuser_rooms)),
                )
                .order_by(MessageRow.created_at.desc(), MessageRow.seq.desc())
                .limit(limit)
            )
            rows = list((await s.execute(query)).scalars())
            data, _ = await self._render(s, caller, rows)
        return {"count": len(data), "data": data}

    async def all_in_app(self, caller: Principal, params: dict[str, Any]) -> dict[str, Any]:
        """``GET /admin/messages`` (API Key): every room's messages, newest first."""
        limit = self._limit(params.get("limit"), 100)
        start = time_param(params.get("startDate"), "startDate")
        end = time_param(params.get("endDate"), "endDate")
        query = select(MessageRow).where(MessageRow.app_id == caller.app_id)
        if start is not None:
            query = query.where(MessageRow.created_at >= start)
        if end is not None:
            query = query.where(MessageRow.created_at <= end)
        async with self._db.read() as s:
            total = (
                await s.execute(select(func.count()).select_from(query.subquery()))
            ).scalar_one()
            ordered = query.order_by(MessageRow.created_at.desc(), MessageRow.seq.desc())
            rows = list((await s.execute(ordered.limit(limit))).scalars())
            data, _ = await self._render(s, caller, rows)
        return {"totalCount": int(total), "data": data}

    async def hidden_for_me(self, caller: Principal, room_id: Any) -> dict[str, Any]:
        """``GET /messages/user-delete?room=``: what the caller hid in a room."""
        if not room_id:
            raise InvalidRequest("room is required", code="MISSING_PARAMETER")
        user_id = acting_user(caller)
        async with self._db.read() as s:
            room, _ = await self._readable(s, caller, str(room_id))
            rows = (
                await s.execute(
                    select(HiddenMessageRow)
                    .where(
                        HiddenMessageRow.app_id == room.app_id,
                        HiddenMessageRow.user_id == user_id,
                        HiddenMessageRow.room_id == room.id,
                    )
                    .order_by(HiddenMessageRow.created_at, HiddenMessageRow.message_id)
                )
            ).scalars()
            data = [
                {
                    "message": r.message_id,
                    "room": r.room_id,
                    "createdAt": iso(r.created_at),
                    "updatedAt": iso(r.created_at),
                }
                for r in rows
            ]
        return {"totalCount": len(data), "data": data}

    async def after_seq(
        self, app_id: str, room_id: str, seq: int, limit: int
    ) -> list[dict[str, Any]]:
        """Messages of a room after sequence ``seq``, oldest first: what a reconnecting
        client missed (a message hidden from the room as its stub, as events carry it).
        The caller (the real-time gateway) has checked membership."""
        return await self._as_events(
            app_id,
            select(MessageRow)
            .where(
                MessageRow.app_id == app_id,
                MessageRow.room_id == room_id,
                MessageRow.seq > seq,
            )
            .order_by(MessageRow.seq)
            .limit(limit),
        )

    async def changed_since(
        self, app_id: str, room_ids: list[str], since_ms: int, limit: int
    ) -> list[dict[str, Any]]:
        """Messages of these rooms stored or changed at ``since_ms`` or later, in the order
        they changed (a hidden one as its stub): what a node's sockets may have missed
        while the node was cut off from the broker."""
        return await self._as_events(
            app_id,
            select(MessageRow)
            .where(
                MessageRow.app_id == app_id,
                MessageRow.room_id.in_(room_ids),
                MessageRow.updated_at >= since_ms,
            )
            .order_by(MessageRow.updated_at, MessageRow.seq)
            .limit(limit),
        )

    async def _as_events(self, app_id: str, query: Select[Any]) -> list[dict[str, Any]]:
        """The messages ``query`` selects, shaped as the gateway's events carry them."""
        async with self._db.read() as s:
            rows = list((await s.execute(query)).scalars())
            profiles = await self._users.profiles(app_id, _senders(rows), s)
        return [hidden_stub(_public(r, profiles)) for r in rows]

    # -- helpers ------------------------------------------------------------------------

    def _limit(
        self, value: Any, default: int, *, name: str = "limit", zero_means_default: bool = True
    ) -> int:
        """A page size; ``limit=0`` asks for the default, as IMKIT clients send it."""
        limit = int_param(value, name, default, maximum=None)
        if limit > self.max_page:
            raise TooLarge(f"{name} may be at most {self.max_page}", code="RESULT_TOO_LARGE")
        return limit or default if zero_means_default else limit

    async def _readable(
        self, s: AsyncSession, caller: Principal, room_id: str
    ) -> tuple[RoomRow, bool]:
        """The room if the caller may read it, and whether the caller is its superuser."""
        room = await self._rooms.room_row(s, caller.app_id, room_id)
        member = await self._rooms.member_of(s, room, caller.user_id)
        if member is None and not caller.is_admin:
            raise InsufficientPermissions("Not a member of this room", code="NOT_ROOM_MEMBER")
        return room, self._rooms.is_superuser(room, member, caller)

    @staticmethod
    def _visible(room: RoomRow, superuser: bool) -> Select[MessageRow]:
        query = select(MessageRow).where(
            MessageRow.app_id == room.app_id, MessageRow.room_id == room.id
        )
        if not superuser:
            query = query.where(MessageRow.hidden.is_(False))
        return query

    @staticmethod
    async def _anchor(s: AsyncSession, room: RoomRow, message_id: str) -> MessageRow:
        anchor = (
            await s.execute(
                select(MessageRow).where(
                    MessageRow.app_id == room.app_id, MessageRow.id == message_id[:64]
                )
            )
        ).scalar_one_or_none()
        if anchor is None or anchor.room_id != room.id:
            raise NotFound("No such message in this room", code="MESSAGE_NOT_FOUND")
        return anchor

    async def _render(
        self, s: AsyncSession, caller: Principal, rows: list[MessageRow]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        if not rows:
            return [], []
        profiles = await self._users.profiles(rows[0].app_id, _senders(rows), s)
        hidden: set[str] = set()
        if caller.user_id is not None:
            hidden = set(
                (
                    await s.execute(
                        select(HiddenMessageRow.message_id).where(
                            HiddenMessageRow.app_id == caller.app_id,
                            HiddenMessageRow.user_id == caller.user_id,
                            HiddenMessageRow.room_id.in_({r.room_id for r in rows}),
                            HiddenMessageRow.message_id.in_([r.id for r in rows]),
                        )
                    )
                ).scalars()
            )
        data = []
        for r in rows:
            public = _public(r, profiles)
            if r.id in hidden:
                public["isDeleted"] = True
            data.append(public)
        return data, [r.id for r in rows if r.id in hidden]


def _senders(rows: list[MessageRow]) -> list[str]:
    return sorted({r.sender for r in rows if r.sender})


def _public(row: MessageRow, profiles: dict[str, dict[str, Any]]) -> dict[str, Any]:
    sender = profiles.get(row.sender or "")
    return message_public(row, user_embedded(sender) if sender else None)
