"""Preferences: a user's per-room preferences (``/roomPrefs``, also per user group) and
free per-user keys (``/me/pref``). Each change is published to the user's own sockets."""

from __future__ import annotations

import json
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.services.auth import Principal
from parley.services.clock import iso, now_ms
from parley.services.errors import InvalidRequest, NotFound, TooLarge
from parley.services.events import MY_PREF_CHANGE, MY_PREF_DELETE, ROOM_PREF, Event, EventBus
from parley.services.params import acting_user
from parley.storage.db import Database
from parley.storage.tables import RoomPrefRow, RoomRow, UserPrefRow, UserRow

MAX_PREF_BYTES = 65_536
_BOOLS = ("muted", "sticky", "hidden", "translation")
ROOM_PREF_KEYS = ("tags", "tagColors", "folder", *_BOOLS)


async def require_acting_user(s: AsyncSession, caller: Principal) -> str:
    """The user a write acts for; with the API Key, that user must exist (a token names
    an existing user by construction)."""
    user_id = acting_user(caller)
    if caller.is_admin and await s.get(UserRow, (caller.app_id, user_id)) is None:
        raise NotFound(f"Client {user_id!r} not found", code="CLIENT_NOT_FOUND")
    return user_id


def room_pref_public(row: RoomPrefRow | None, room_id: str) -> dict[str, Any]:
    """The contract's RoomPref; an unset preference is absent."""
    return {"room": room_id, **(row.data if row else {})}


def _valid_room_pref(body: dict[str, Any]) -> dict[str, Any]:
    unknown = set(body) - set(ROOM_PREF_KEYS)
    if unknown:
        raise InvalidRequest(f"Unknown preferences: {', '.join(sorted(unknown))}")
    if "tags" in body and not (
        isinstance(body["tags"], list)
        and len(body["tags"]) <= 100
        and all(isinstance(t, str) and 0 < len(t) <= 100 for t in body["tags"])
    ):
        raise InvalidRequest(
            "tags must be a list of at most 100 short strings", code="INVALID_TAGS"
        )
    colors = body.get("tagColors")
    if "tagColors" in body and not (
        isinstance(colors, dict)
        and len(colors) <= 100
        and all(isinstance(v, str) and len(v) <= 32 for v in colors.values())
    ):
        raise InvalidRequest("tagColors maps tags to colours like #ff0000")
    if "folder" in body and not (
        body["folder"] is None or (isinstance(body["folder"], str) and len(body["folder"]) <= 255)
    ):
        raise InvalidRequest("folder must be a string")
    for key in _BOOLS:
        if key in body and not isinstance(body[key], bool):
            raise InvalidRequest(f"{key} must be a boolean")
    return body


class PrefService:
    def __init__(self, db: Database, events: EventBus) -> None:
        self._db = db
        self._events = events

    # -- room preferences ---------------------------------------------------------------

    async def set_room_pref(
        self, caller: Principal, room_id: str, body: dict[str, Any], group: str = ""
    ) -> dict[str, Any]:
        """Merge ``body`` into the caller's preferences for ``room_id``."""
        _valid_group(group)
        changes = _valid_room_pref(body)
        async with self._db.write() as s:
            user_id = await require_acting_user(s, caller)
            await self._require_room(s, caller.app_id, room_id)
            row = await s.get(RoomPrefRow, (caller.app_id, user_id, group, room_id))
            if row is None:
                row = RoomPrefRow(
                    app_id=caller.app_id,
                    user_id=user_id,
                    grp=group,
                    room_id=room_id,
                    data={},
                    updated_at=now_ms(),
                )
                s.add(row)
            row.data = {**row.data, **changes}
            row.updated_at = now_ms()
            result = room_pref_public(row, room_id)
        if group:
            result["group"] = group
        await self._events.publish([Event(caller.app_id, ROOM_PREF, result, users=[user_id])])
        return result

    async def delete_room_pref_key(
        self, caller: Principal, room_id: str, key: str, group: str = ""
    ) -> dict[str, Any]:
        user_id = acting_user(caller)
        _valid_group(group)
        if key not in ROOM_PREF_KEYS:
            raise InvalidRequest(f"Unknown preference {key!r}")
        async with self._db.write() as s:
            await self._require_room(s, caller.app_id, room_id)
            row = await s.get(RoomPrefRow, (caller.app_id, user_id, group, room_id))
            if row is not None:
                row.data = {k: v for k, v in row.data.items() if k != key}
                row.updated_at = now_ms()
            result = room_pref_public(row, room_id)
        if group:
            result["group"] = group
        await self._events.publish([Event(caller.app_id, ROOM_PREF, result, users=[user_id])])
        return result

    async def room_prefs(self, caller: Principal, group: str = "") -> dict[str, Any]:
        user_id = acting_user(caller)
        _valid_group(group)
        async with self._db.read() as s:
            rows = (
                (
                    await s.execute(
                        select(RoomPrefRow)
                        .where(
                            RoomPrefRow.app_id == caller.app_id,
                            RoomPrefRow.user_id == user_id,
                            RoomPrefRow.grp == group,
                        )
                        .order_by(RoomPrefRow.room_id)
                    )
                )
                .scalars()
                .all()
            )
        data = [room_pref_public(r, r.room_id) for r in rows]
        return {"totalCount": len(data), "data": data}

    async def prefs_for_rooms(
        self, s: AsyncSession, app_id: str, user_id: str | None, room_ids: list[str]
    ) -> dict[str, dict[str, Any]]:
        """The user's own preferences of these rooms (for Room objects)."""
        if user_id is None or not room_ids:
            return {}
        rows = (
            await s.execute(
                select(RoomPrefRow).where(
                    RoomPrefRow.app_id == app_id,
                    RoomPrefRow.user_id == user_id,
                    RoomPrefRow.grp == "",
                    RoomPrefRow.room_id.in_(room_ids),
                )
            )
        ).scalars()
        return {r.room_id: room_pref_public(r, r.room_id) for r in rows}

    async def mark_quitted(
        self, s: AsyncSession, app_id: str, room_id: str, user_ids: list[str], at: int | None
    ) -> None:
        """Record (``at``) or clear (None) that users left a room, in their RoomPref, as
        ``GET /rooms/quitted`` reads it."""
        for user_id in user_ids:
            row = await s.get(RoomPrefRow, (app_id, user_id, "", room_id))
            if row is None and at is None:
                continue
            if row is None:
                row = RoomPrefRow(
                    app_id=app_id,
                    user_id=user_id,
                    grp="",
                    room_id=room_id,
                    data={},
                    updated_at=at or now_ms(),
                )
                s.add(row)
            data = {k: v for k, v in row.data.items() if k not in ("quittedAt", "quittedAtMS")}
            if at is not None:
                data.update(quittedAt=iso(at), quittedAtMS=at)
            row.data = data

    async def quitted_prefs(
        self, s: AsyncSession, app_id: str, user_id: str
    ) -> dict[str, dict[str, Any]]:
        rows = await _own_prefs(s, app_id, user_id)
        return {r.room_id: room_pref_public(r, r.room_id) for r in rows if "quittedAt" in r.data}

    async def rooms_matching(
        self, s: AsyncSession, app_id: str, user_id: str, pref_filter: Any
    ) -> list[str]:
        """Rooms whose own preferences match ``pref`` of ``GET /rooms``: ``{"tags": "x"}``,
        ``{"tags": {"$in": [...]}}``, ``{"folder": "f"}``, ``{"hidden": false}``, ..."""
        if not isinstance(pref_filter, dict) or not pref_filter:
            raise InvalidRequest("pref must be a JSON object", code="INVALID_QUERY")
        for key in pref_filter:
            if key not in ROOM_PREF_KEYS:
                raise InvalidRequest(f"Cannot filter on preference {key!r}", code="INVALID_QUERY")
        rows = await _own_prefs(s, app_id, user_id)
        return [r.room_id for r in rows if _pref_matches(r.data, pref_filter)]

    async def _require_room(self, s: AsyncSession, app_id: str, room_id: str) -> None:
        if await s.get(RoomRow, (app_id, room_id)) is None:
            raise NotFound(f"Room {room_id!r} not found", code="ROOM_NOT_FOUND")

    # -- /me/pref ----------------------------------------------------------------------

    async def set_user_pref(self, caller: Principal, key: str, data: Any) -> dict[str, Any]:
        _valid_key(key)
        try:
            size = len(orjson.dumps(data))
            json.dumps(data, allow_nan=False)  # NaN and Infinity are not JSON
        except (orjson.JSONEncodeError, ValueError, TypeError):
            raise InvalidRequest(
                "A preference must be plain JSON: 64-bit integers, no NaN, nesting under 250"
            ) from None
        if size > MAX_PREF_BYTES:
            raise TooLarge(f"A preference holds at most {MAX_PREF_BYTES} bytes")
        async with self._db.write() as s:
            user_id = await require_acting_user(s, caller)
            row = await s.get(UserPrefRow, (caller.app_id, user_id, key))
            if row is None:
                s.add(
                    UserPrefRow(
                        app_id=caller.app_id,
                        user_id=user_id,
                        key=key,
                        data=data,
                        updated_at=now_ms(),
                    )
                )
            else:
                row.data, row.updated_at = data, now_ms()
        result = {"key": key, "data": data}
        await self._events.publish([Event(caller.app_id, MY_PREF_CHANGE, result, users=[user_id])])
        return result

    async def delete_user_pref(self, caller: Principal, key: str) -> dict[str, Any]:
        user_id = acting_user(caller)
        _valid_key(key)
        async with self._db.write() as s:
            row = await s.get(UserPrefRow, (caller.app_id, user_id, key))
            if row is None:
                raise NotFound(f"No preference {key!r}", code="CONFIG_NOT_FOUND")
            await s.delete(row)
        await self._events.publish([Event(caller.app_id, MY_PREF_DELETE, key, users=[user_id])])
        return {}

    async def user_prefs(self, caller: Principal) -> list[dict[str, Any]]:
        user_id = acting_user(caller)
        async with self._db.read() as s:
            rows = (
                (
                    await s.execute(
                        select(UserPrefRow)
                        .where(UserPrefRow.app_id == caller.app_id, UserPrefRow.user_id == user_id)
                        .order_by(UserPrefRow.key)
                    )
                )
                .scalars()
                .all()
            )
        return [{"key": r.key, "data": r.data, "updatedAt": iso(r.updated_at)} for r in rows]

    async def user_pref(self, caller: Principal, key: str) -> dict[str, Any]:
        user_id = acting_user(caller)
        _valid_key(key)
        async with self._db.read() as s:
            row = await s.get(UserPrefRow, (caller.app_id, user_id, key))
        if row is None:
            raise NotFound(f"No preference {key!r}", code="CONFIG_NOT_FOUND")
        return {"key": key, "data": row.data}


async def _own_prefs(s: AsyncSession, app_id: str, user_id: str) -> list[RoomPrefRow]:
    """A user's own room preferences (not the per-group ones)."""
    query = select(RoomPrefRow).where(
        RoomPrefRow.app_id == app_id, RoomPrefRow.user_id == user_id, RoomPrefRow.grp == ""
    )
    return list((await s.execute(query)).scalars())


def _pref_matches(data: dict[str, Any], pref_filter: dict[str, Any]) -> bool:
    for key, wanted in pref_filter.items():
        have = data.get(key)
        values = have if isinstance(have, list) else [have]
        if isinstance(wanted, dict):
            if set(wanted) - {"$in", "$all", "$ne"} or not all(
                isinstance(v, list) for k, v in wanted.items() if k != "$ne"
            ):
                raise InvalidRequest("pref operators are $in, $all and $ne", code="INVALID_QUERY")
            if "$in" in wanted and not set(map(str, values)) & set(map(str, wanted["$in"])):
                return False
            if "$all" in wanted and not set(map(str, wanted["$all"])) <= set(map(str, values)):
                return False
            if "$ne" in wanted and wanted["$ne"] in values:
                return False
        elif wanted not in values:
            return False
    return True


def _valid_group(group: str) -> None:
    """A group of the per-group form ("" is the user's own preferences). Its column holds
    255 characters: checked here, as SQLite would store a longer one that PostgreSQL
    refuses."""
    if len(group) > 255 or not group.isprintable():
        raise InvalidRequest("A group is 1 to 255 printable characters")


def _valid_key(key: str) -> None:
    if not key or len(key) > 255 or not key.isprintable():
        raise InvalidRequest("A preference key is 1 to 255 printable characters")
