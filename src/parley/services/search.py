"""``POST /search``: contract §3.7, over everything a caller may see and nothing else.

Message text goes through the database's own full-text index, built by migration 0005:
SQLite FTS5 (``message_search``) or a PostgreSQL GIN index on ``to_tsvector('simple',
search_text)``. On SQLite new messages reach the index after their send (migration
0008): a message search first indexes whatever still waits, so it finds every message
acknowledged before the search began. A keyword is split into words, and each word
matches as a prefix of a word of the text (``"hel wor"`` finds "Hello, world"); all
words must match. Both engines split text at spaces and punctuation, so a run of CJK
characters counts as one word and is found by its beginning only.

Room searches (name, members, tags, the caller's own preference tags and folders) look
only at the caller's rooms, through the membership index. Every result is limited to
rooms the caller is a member of (the API Key without a user: the whole app); messages
hidden for the room or hidden by the caller for themself are never found.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Select, bindparam, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from parley.services.auth import Principal
from parley.services.errors import InsufficientPermissions, InvalidRequest, TooLarge
from parley.services.groups import groups_of
from parley.services.messages import FILE_TYPES
from parley.services.params import check_room_id, int_param
from parley.services.rooms import RoomService
from parley.storage.db import Database
from parley.storage.tables import RoomMemberRow, RoomPrefRow, RoomRow, RoomTagRow, UserRow

SEARCH_TYPES = (
    "messages",
    "roomName",
    "roomMember",
    "roomTags",
    "roomPrefTags",
    "roomPrefFolder",
    "files",
)
MAX_KEYWORD = 200
MAX_WORDS = 10
DEFAULT_LIMIT = 20
_WORD = re.compile(r"\w+")


class SearchService:
    def __init__(self, db: Database, rooms: RoomService, *, max_page: int) -> None:
        self._db = db
        self._rooms = rooms
        self.max_page = max_page

    async def search(self, caller: Principal, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise InvalidRequest("The body must be a JSON object", code="INVALID_BODY")
        # Absent (or empty) means the default; a value of another type is a mistake.
        types = body.get("type")
        if types is None or types == "" or types == []:
            types = ["messages"]
        if isinstance(types, str):
            types = [types]
        if not isinstance(types, list) or not all(t in SEARCH_TYPES for t in types):
            raise InvalidRequest(
                f"type lists some of {', '.join(SEARCH_TYPES)}", code="INVALID_SEARCH_TYPE"
            )
        keyword = body.get("keyword")
        if not isinstance(keyword, str) or not keyword.strip():
            raise InvalidRequest("keyword is required", code="MISSING_PARAMETER")
        if len(keyword) > MAX_KEYWORD:
            raise TooLarge(f"keyword may be at most {MAX_KEYWORD} characters")
        room_tags = body.get("roomTags")
        room_tags = [] if room_tags is None else room_tags
        if not isinstance(room_tags, list) or not all(
            isinstance(t, str) and 0 < len(t) <= 100 for t in room_tags
        ):
            raise InvalidRequest("roomTags must be a list of tags", code="INVALID_ROOM_TAGS")
        limit = int_param(body.get("limit"), "limit", DEFAULT_LIMIT, maximum=None)
        if limit > self.max_page:
            raise TooLarge(f"limit may be at most {self.max_page}", code="RESULT_TOO_LARGE")
        limit = limit or DEFAULT_LIMIT
        # Only an absent room (or "") means every room: {} or 0 is a mistake, not "all".
        room = body.get("room")
        only_room = None if room is None or room == "" else check_room_id(room)

        backlog = self._db.search_backlog
        if backlog is not None and ("messages" in types or "files" in types):
            # Before the read below begins: its snapshot must hold what this indexes.
            await backlog.catch_up()
        result: dict[str, Any] = {}
        async with self._db.read() as s:
            scope = await self._scope(s, caller, only_room, room_tags)
            for kind in dict.fromkeys(types):
                if kind in ("messages", "files"):
                    result[kind] = await self._messages(
                        s, caller, scope, keyword, limit, files=kind == "files"
                    )
                else:
                    result[kind] = await self._rooms_matching(
                        s, caller, scope, kind, keyword, limit
                    )
        return result

    # -- scope --------------------------------------------------------------------------

    async def _scope(
        self, s: AsyncSession, caller: Principal, only_room: str | None, room_tags: list[str]
    ) -> Select[Any]:
        """The ids of the rooms this search may look into, as a subquery."""
        if caller.user_id is None:
            rooms: Select[Any] = select(RoomRow.id).where(RoomRow.app_id == caller.app_id)
            column: Any = RoomRow.id
        else:
            holders = [caller.user_id, *await groups_of(s, caller.app_id, caller.user_id)]
            rooms = select(RoomMemberRow.room_id).where(
                RoomMemberRow.app_id == caller.app_id, RoomMemberRow.user_id.in_(holders)
            )
            column = RoomMemberRow.room_id
        if only_room is not None:
            room = await self._rooms.room_row(s, caller.app_id, only_room)
            member = await self._rooms.member_of(s, room, caller.user_id)
            if member is None and not caller.is_admin:
                raise InsufficientPermissions("Not a member of this room", code="NOT_ROOM_MEMBER")
            rooms = rooms.where(column == only_room)
        for tag in room_tags:
            rooms = rooms.where(
                column.in_(
                    select(RoomTagRow.room_id).where(
                        RoomTagRow.app_id == caller.app_id, RoomTagRow.tag == tag
                    )
                )
            )
        return rooms

    # -- messages -----------------------------------------------------------------------

    async def _messages(
        self,
        s: AsyncSession,
        caller: Principal,
        scope: Select[Any],
        keyword: str,
        limit: int,
        *,
        files: bool,
    ) -> list[dict[str, Any]]:
        words = _WORD.findall(keyword.lower())[:MAX_WORDS]
        if not words:
            return []
        scope_ids = list((await s.execute(scope)).scalars())
        if not scope_ids:
            return []
        types_filter = " AND m.message_type IN :types" if files else ""
        hidden_filter = (
            " AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.app_id = m.app_id"
            " AND h.user_id = :user AND h.room_id = m.room_id AND h.message_id = m.id)"
        )
        if self._db.is_sqlite:
            query = " ".join(f'"{w}"*' for w in words)
            sql = (
                "SELECT m.room_id, m.id FROM message_search"
                " JOIN message_search_keys k ON k.key = message_search.rowid"
                " JOIN messages m ON m.app_id = k.app_id AND m.id = k.message_id"
                " WHERE message_search MATCH :query AND k.app_id = :app"
            )
        else:
            query = " & ".join(f"{w}:*" for w in words)
            sql = (
                "SELECT m.room_id, m.id FROM messages m WHERE m.app_id = :app"
                " AND to_tsvector('simple', search_text) @@ to_tsquery('simple', :query)"
            )
        sql += (
            " AND m.room_id IN :rooms AND m.hidden = :no"
            + types_filter
            + hidden_filter
            + " ORDER BY m.created_at DESC, m.seq DESC LIMIT :limit"
        )
        statement = text(sql).bindparams(bindparam("rooms", expanding=True))
        params: dict[str, Any] = {
            "query": query,
            "app": caller.app_id,
            "rooms": scope_ids,
            "no": False,
            "user": caller.user_id or "",
            "limit": limit,
        }
        if files:
            statement = statement.bindparams(bindparam("types", expanding=True))
            params["types"] = sorted(FILE_TYPES)
        found = (await s.execute(statement, params)).all()
        by_room: dict[str, list[str]] = {}
        for room_id, message_id in found:
            by_room.setdefault(room_id, []).append(message_id)
        views = await self._views(s, caller, list(by_room))
        return [{"room": views[r], "messages": ids} for r, ids in by_room.items() if r in views]

    # -- rooms --------------------------------------------------------------------------

    async def _rooms_matching(
        self,
        s: AsyncSession,
        caller: Principal,
        scope: Select[Any],
        kind: str,
        keyword: str,
        limit: int,
    ) -> list[dict[str, Any]]:
        pattern = "%" + _escape_like(keyword.lower()) + "%"
        in_scope = RoomRow.id.in_(scope)
        mine = RoomRow.app_id == caller.app_id
        ids: list[str]
        if kind == "roomName":
            query = select(RoomRow.id).where(
                mine, in_scope, RoomRow.name.is_not(None), _ilike(RoomRow.name, pattern)
            )
            ids = list((await s.execute(query.limit(limit))).scalars())
        elif kind == "roomMember":
            people = select(RoomMemberRow.room_id).join(
                UserRow,
                (UserRow.app_id == RoomMemberRow.app_id) & (UserRow.id == RoomMemberRow.user_id),
            )
            people = people.where(
                RoomMemberRow.app_id == caller.app_id,
                or_(_ilike(UserRow.id, pattern), _ilike(UserRow.nickname, pattern)),
            )
            if caller.user_id is not None:  # finding oneself in every room helps no one
                people = people.where(RoomMemberRow.user_id != caller.user_id)
            query = select(RoomRow.id).where(mine, in_scope, RoomRow.id.in_(people))
            ids = list((await s.execute(query.limit(limit))).scalars())
        elif kind == "roomTags":
            tagged = select(RoomTagRow.room_id).where(
                RoomTagRow.app_id == caller.app_id, _ilike(RoomTagRow.tag, pattern)
            )
            query = select(RoomRow.id).where(mine, in_scope, RoomRow.id.in_(tagged))
            ids = list((await s.execute(query.limit(limit))).scalars())
        else:  # roomPrefTags, roomPrefFolder: the caller's own preferences
            if caller.user_id is None:
                return []
            prefs = (
                await s.execute(
                    select(RoomPrefRow.room_id, RoomPrefRow.data).where(
                        RoomPrefRow.app_id == caller.app_id,
                        RoomPrefRow.user_id == caller.user_id,
                        RoomPrefRow.grp == "",
                        RoomPrefRow.room_id.in_(scope),
                    )
                )
            ).all()
            needle = keyword.lower()
            ids = [room_id for room_id, data in prefs if _pref_matches(data, kind, needle)][:limit]
        views = await self._views(s, caller, ids)
        return [views[r] for r in ids if r in views]

    async def _views(
        self, s: AsyncSession, caller: Principal, room_ids: list[str]
    ) -> dict[str, dict[str, Any]]:
        if not room_ids:
            return {}
        rows = list(
            (
                await s.execute(
                    select(RoomRow).where(RoomRow.app_id == caller.app_id, RoomRow.id.in_(room_ids))
                )
            ).scalars()
        )
        return {v["_id"]: v for v in await self._rooms.views(s, rows, caller)}


def _pref_matches(data: Any, kind: str, needle: str) -> bool:
    if not isinstance(data, dict):
        return False
    if kind == "roomPrefFolder":
        folder = data.get("folder")
        return isinstance(folder, str) and needle in folder.lower()
    tags = data.get("tags")
    return isinstance(tags, list) and any(isinstance(t, str) and needle in t.lower() for t in tags)


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _ilike(column: Any, pattern: str) -> Any:
    return column.ilike(pattern, escape="\\")
