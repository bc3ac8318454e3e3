"""Rooms and their members: create, join, list, show, update, freeze, delete; add, kick,
leave; roles and member properties; read state.

Rights (contract §3.9 "Room rights", the safer rule where the sources are unsure):

| operation                          | who may                                             |
|------------------------------------|-----------------------------------------------------|
| read a room, list its members      | members; the API Key                                |
| add members                        | members; the API Key                                |
| remove another member              | the room's superusers (owner, managers, role admin) |
| leave                              | oneself                                             |
| update room fields, freeze         | superusers                                          |
| change ``owner``                   | the owner; the API Key                              |
| change ``managers``, grant a role  | the owner and role admins; the API Key              |
| set a member's custom property     | that member on itself; superusers on anyone         |
| delete the room                    | the owner; the API Key                              |

A room of another app is indistinguishable from a room that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.services.auth import Principal
from parley.services.clock import iso, now_ms
from parley.services.errors import (
    Conflict,
    InsufficientPermissions,
    InvalidRequest,
    NotFound,
    TooLarge,
)
from parley.services.events import (
    CANCEL_INVITATION,
    INVITATION,
    LAST_READ,
    ROOM,
    ROOM_DELETED,
    TYPING,
    Event,
    EventBus,
)
from parley.services.groups import GroupService, groups_of
from parley.services.ids import direct_room_id, object_id
from parley.services.messages import (
    append_message,
    hidden_stub,
    message_public,
    refresh_mentioned,
)
from parley.services.params import acting_user, check_room_id, flag, int_param, time_param
from parley.services.prefs import PrefService
from parley.services.users import UserService, user_embedded
from parley.storage.db import Database
from parley.storage.tables import (
    MEMBERSHIP_ROOM,
    ROOM_ACTIVITY,
    UNREAD,
    GroupRow,
    InvitationRow,
    MessageRow,
    RoomMemberRow,
    RoomPrefRow,
    RoomRow,
    RoomTagRow,
    UserRow,
    unread_of,
)

ROOM_TYPES = ("direct", "group", "custom")
ROLES = ("admin", "member")
# Room fields a caller may set, wire name → column.
EDITABLE = {
    "name": "name",
    "cover": "cover",
    "description": "description",
    "webhook": "webhook",
    "extParams": "ext_params",
    "botState": "bot_state",
}
SORT_KEYS = {"lastMessage": "activity", "createdTime": "created"}


@dataclass(frozen=True)
class RoomLimits:
    max_members: int = 10_000  # per room
    max_page: int = 1000  # rooms per GET /rooms page; limit 0 means this many
    max_invitees: int = 1000  # per request


def not_found(room_id: str) -> NotFound:
    return NotFound(f"Room {room_id!r} not found", code="ROOM_NOT_FOUND")


TYPING_INTERVAL_MS = 1000  # one relayed typing event per user and room per second


class RoomService:
    def __init__(
        self,
        db: Database,
        users: UserService,
        prefs: PrefService,
        groups: GroupService,
        events: EventBus,
        limits: RoomLimits,
    ) -> None:
        self._db = db
        self._users = users
        self._prefs = prefs
        self._groups = groups
        self._events = events
        self.limits = limits
        # When each (app, user, room) last had its typing relayed by this node.
        self._typing_relayed: dict[tuple[str, str, str], int] = {}

    # -- create and join ------------------------------------------------------------------

    async def create(
        self, caller: Principal, body: dict[str, Any], *, join: bool
    ) -> dict[str, Any]:
        """``POST /rooms`` (join=False: the listed ``members``) and ``POST
        /rooms/createAndJoin`` (join=True: the caller plus ``invitee``)."""
        room_type = body.get("roomType") or "group"
        if room_type not in ROOM_TYPES:
            raise InvalidRequest(f"roomType must be one of {', '.join(ROOM_TYPES)}")
        wanted = _id_list(body.get("invitee") if join else body.get("members"), "members")
        joiner = caller.user_id if join else None
        if joiner is not None:
            wanted = [joiner, *[m for m in wanted if m != joiner]]
        if len(wanted) > self.limits.max_invitees:
            raise TooLarge(
                f"At most {self.limits.max_invitees} members per request", code="TOO_MANY_MEMBERS"
            )
        room_id = body.get("_id")
        if room_type == "direct":
            if len(wanted) != 2:
                raise InvalidRequest("A direct room has exactly two members")
            room_id = room_id or direct_room_id(*wanted)
        room_id = check_room_id(room_id) if room_id is not None else object_id()
        system_message = flag(body, "systemMessage", default=False)
        # Invitations only for group rooms; a direct room's invitee is simply added.
        invite = flag(body, "invitationRequired", default=False) and room_type == "group"
        invitees = [u for u in wanted if u != joiner] if invite else []
        if invite:
            wanted = [joiner] if joiner else []
        now = now_ms()
        async with self._db.write() as s:
            if await s.get(RoomRow, (caller.app_id, room_id)) is not None:
                raise Conflict(f"Room {room_id!r} already exists", code="ROOM_EXISTS")
            await self._require_users(s, caller.app_id, wanted + invitees)
            owner = (body.get("owner") or joiner) if caller.is_admin else joiner
            if owner is not None and owner not in wanted:
                raise InvalidRequest("The owner must be one of the members")
            room = RoomRow(
                app_id=caller.app_id,
                id=room_id,
                room_type=room_type,
                owner=owner,
                status=1,
                opening=1,
                room_tags=_tags(body.get("roomTags")),
                invitation_required=invite,
                bot_mode=flag(body, "botMode", default=False),
                encrypted=False,
                last_seq=0,
                created_at=now,
                updated_at=now,
            )
            _apply_fields(room, body)
            s.add(room)
            await s.flush()
            _set_tags(s, room, room.room_tags)
            for user_id in wanted:
                s.add(_membership(room, user_id, now))
            await s.flush()
            if system_message and wanted:
                await self._system(
                    s, room, joiner, "addMembers" if len(wanted) > 1 else "joinRoom", wanted
                )
            invitations = await self._invite(s, room, joiner, invitees)
            view = await self._view(s, room, caller)
        await self._events.publish(
            [
                Event(caller.app_id, ROOM, room_event_data(view), rooms=[room_id], users=wanted),
                *invitations,
            ]
        )
        return view

    async def join(self, caller: Principal, room_id: str, system_message: bool) -> dict[str, Any]:
        user_id = acting_user(caller)
        async with self._db.write() as s:
            room = await self._room(s, caller.app_id, room_id, lock=True)
            member = await self._member(s, room, user_id)
            invitation = await s.get(InvitationRow, (room.app_id, room.id, user_id))
            if member is None:
                if not caller.is_admin and invitation is None:
                    if room.opening == 0 or room.room_type == "direct":
                        raise InsufficientPermissions("This room does not take new members")
                    if room.invitation_required:
                        raise InsufficientPermissions("This room takes members by invitation")
                await self._require_users(s, caller.app_id, [user_id])
                await self._check_capacity(s, room, 1)
                s.add(_membership(room, user_id, now_ms()))
                await s.flush()
                if system_message:
                    await self._system(s, room, user_id, "joinRoom", [user_id])
            if invitation is not None:  # joining accepts the invitation
                await s.delete(invitation)
            if member is None:
                await self._prefs.mark_quitted(s, room.app_id, room.id, [user_id], None)
            view = await self._view(s, room, caller)
        if member is None:
            await self._events.publish(
                [
                    Event(
                        caller.app_id, ROOM, room_event_data(view), rooms=[room_id], users=[user_id]
                    )
                ]
            )
        return view

    # -- read -------------------------------------------------------------------------

    async def get(self, caller: Principal, room_id: str) -> dict[str, Any]:
        async with self._db.read() as s:
            room = await self._room(s, caller.app_id, room_id)
            await self._require_member(s, room, caller)
            return await self._view(s, room, caller)

    async def exists(self, caller: Principal, room_id: str) -> bool:
        async with self._db.read() as s:
            return await s.get(RoomRow, (caller.app_id, check_room_id(room_id))) is not None

    async def list_rooms(self, caller: Principal, params: dict[str, Any]) -> dict[str, Any]:
        """``GET /rooms``: the caller's rooms, newest activity first by default."""
        skip, limit = self._page(params)
        order = _sort(params.get("sort") or "-lastMessage")
        after = time_param(params.get("updatedAfter"), "updatedAfter")
        unread_first = str(params.get("sortUnreadFirst") or "0") not in ("0", "false", "")
        query_filter = {} if params.get("q") is None else params["q"]
        async with self._db.read() as s:
            activity: Any
            badge: Any = None
            base: Any
            grouped = False
            if caller.user_id is None:  # the API Key without IM-CLIENT-ID: the app's rooms
                room_col: Any = RoomRow.id
                activity = func.coalesce(RoomRow.last_message_at, RoomRow.created_at)
                base = select(RoomRow.id).where(RoomRow.app_id == caller.app_id)
            else:  # the caller's memberships, with their rooms' activity
                room_col = RoomMemberRow.room_id
                activity = ROOM_ACTIVITY
                badge = UNREAD
                holders = [caller.user_id, *await groups_of(s, caller.app_id, caller.user_id)]
                base = (
                    select(RoomMemberRow.room_id)
                    .join(RoomRow, MEMBERSHIP_ROOM)
                    .where(
                        RoomMemberRow.app_id == caller.app_id,
                        RoomMemberRow.user_id.in_(holders),
                    )
                )
                grouped = len(holders) > 1  # a room may come directly and through a group
                if grouped:
                    base = base.group_by(RoomMemberRow.room_id)
                    activity = func.max(ROOM_ACTIVITY)
                    badge = func.max(UNREAD)
            if after is not None:
                base = base.having(activity > after) if grouped else base.where(activity > after)
            base = base.where(*_room_filter(caller.app_id, room_col, query_filter))
            if params.get("pref") is not None:
                matching = await self._prefs.rooms_matching(
                    s, caller.app_id, acting_user(caller), params["pref"]
                )
                base = base.where(room_col.in_(matching))
            total = (await s.execute(select(func.count()).select_from(base.subquery()))).scalar()
            ordering: list[Any] = []
            if unread_first and badge is not None:
                ordering.append((badge > 0).desc())
            created: Any = func.max(RoomRow.created_at) if grouped else RoomRow.created_at
            for key, descending in order:
                column = activity if key == "activity" else created
                ordering.append(column.desc() if descending else column.asc())
            ordering.append(room_col.asc())
            page = base.order_by(*ordering).offset(skip)
            if limit:
                page = page.limit(limit)
            room_ids = list((await s.execute(page)).scalars())
            rooms = await self._rooms_by_id(s, caller.app_id, room_ids)
            data = await self._views(s, [rooms[r] for r in room_ids if r in rooms], caller)
        return {"totalCount": total, "data": data}

    async def ids(self, caller: Principal, params: dict[str, Any]) -> dict[str, Any]:
        skip, limit = self._page(params)
        user_id = acting_user(caller)
        where = (RoomMemberRow.app_id == caller.app_id, RoomMemberRow.user_id == user_id)
        async with self._db.read() as s:
            total = (
                await s.execute(select(func.count()).select_from(RoomMemberRow).where(*where))
            ).scalar()
            query = (
                select(RoomMemberRow.room_id)
                .join(RoomRow, MEMBERSHIP_ROOM)
                .where(*where)
                .order_by(ROOM_ACTIVITY.desc(), RoomMemberRow.room_id)
                .offset(skip)
            )
            if limit:
                query = query.limit(limit)
            return {"totalCount": total, "data": list((await s.execute(query)).scalars())}

    async def quitted(self, caller: Principal) -> dict[str, Any]:
        """``GET /rooms/quitted``: rooms the caller left or was removed from."""
        user_id = acting_user(caller)
        async with self._db.read() as s:
            prefs = await self._prefs.quitted_prefs(s, caller.app_id, user_id)
            rooms = await self._rooms_by_id(s, caller.app_id, list(prefs))
            current: set[str] = set()
            if prefs:
                result = await s.execute(
                    select(RoomMemberRow.room_id).where(
                        RoomMemberRow.app_id == caller.app_id,
                        RoomMemberRow.user_id == user_id,
                        RoomMemberRow.room_id.in_(list(prefs)),
                    )
                )
                current = set(result.scalars())
        data: list[dict[str, Any]] = [
            {
                "_id": r.id,
                "id": r.id,
                "name": r.name,
                "cover": r.cover,
                "roomType": r.room_type,
                "pref": prefs[r.id],
            }
            for r in rooms.values()
            if r.id not in current
        ]
        data.sort(key=lambda room: -int(room["pref"].get("quittedAtMS", 0)))
        return {"totalCount": len(data), "data": data}

    # -- change -----------------------------------------------------------------------

    async def update(self, caller: Principal, room_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """``PUT /rooms/{id}``: partial. ``status: 0`` freezes the room (no new messages)."""
        async with self._db.write() as s:
            room = await self._room(s, caller.app_id, room_id, lock=True)
            member = await self._require_member(s, room, caller)
            if not self.is_superuser(room, member, caller):
                raise InsufficientPermissions(
                    "Only the room's owner, managers and admins may change it"
                )
            _apply_fields(room, body)
            if "roomTags" in body:
                room.room_tags = _tags(body["roomTags"])
                await s.execute(
                    delete(RoomTagRow).where(
                        RoomTagRow.app_id == room.app_id, RoomTagRow.room_id == room.id
                    )
                )
                _set_tags(s, room, room.room_tags)
            if "botMode" in body:
                room.bot_mode = flag(body, "botMode", default=False)
            for field in ("status", "opening"):
                if field in body:
                    value = body[field]
                    if value not in (0, 1) or isinstance(value, bool):
                        raise InvalidRequest(f"{field} must be 0 or 1")
                    setattr(room, field, value)
            if "owner" in body:
                if not (caller.is_admin or room.owner == caller.user_id):
                    raise InsufficientPermissions("Only the owner may hand the room over")
                owner = body["owner"]
                if not isinstance(owner, str) or await self._member(s, room, owner) is None:
                    raise InvalidRequest("The new owner must be a member of the room")
                room.owner = owner
            if "managers" in body:
                if not self._may_grant(room, member, caller):
                    raise InsufficientPermissions("Only the owner and admins may name managers")
                managers = set(_id_list(body["managers"], "managers"))
                rows = await self._members(s, room)
                unknown = managers - {m.user_id for m in rows}
                if unknown:
                    raise InvalidRequest(f"Managers must be members: {', '.join(sorted(unknown))}")
                for row in rows:
                    row.is_manager = row.user_id in managers
            room.updated_at = now_ms()
            view = await self._view(s, room, caller)
        await self._events.publish(
            [Event(caller.app_id, ROOM, room_event_data(view), rooms=[room.id])]
        )
        return view

    async def delete(self, caller: Principal, room_id: str) -> dict[str, Any]:
        """``DELETE /rooms/{id}``: the room, its members and all its messages."""
        async with self._db.write() as s:
            room = await self._room(s, caller.app_id, room_id, lock=True)
            await self._require_member(s, room, caller)
            if not (caller.is_admin or room.owner == caller.user_id):
                raise InsufficientPermissions("Only the owner may delete the room")
            members = [m.user_id for m in await self._members(s, room)]
            invitees = list(
                (
                    await s.execute(
                        select(InvitationRow.invitee).where(
                            InvitationRow.app_id == room.app_id, InvitationRow.room_id == room.id
                        )
                    )
                ).scalars()
            )
            # Everything of the room goes, preferences too: a later room with the same id
            # (direct rooms have fixed ids) starts clean.
            for table in (MessageRow, RoomMemberRow, RoomTagRow, InvitationRow, RoomPrefRow):
                await s.execute(
                    delete(table).where(table.app_id == room.app_id, table.room_id == room.id)
                )
            await s.delete(room)
        gone = {"_id": room.id, "id": room.id}
        await self._events.publish(
            [
                Event(caller.app_id, ROOM_DELETED, gone, rooms=[room.id], users=members),
                *(
                    [Event(caller.app_id, CANCEL_INVITATION, {"room": room.id}, users=invitees)]
                    if invitees
                    else []
                ),
            ]
        )
        return {"n": 1, "ok": 1}

    # -- members --------------------------------------------------------------------------

    async def add_members(
        self,
        caller: Principal,
        room_id: str,
        invitees: Any,
        system_message: bool,
        invitation_required: bool = False,
    ) -> dict[str, Any]:
        """Add members at once, or — ``invitation_required``, or a room that requires
        invitations — invite them to join."""
        wanted = _id_list(invitees, "invitees")
        if not wanted:
            raise InvalidRequest("invitees is required", code="MISSING_PARAMETER")
        self._check_invitee_count(len(wanted))
        async with self._db.write() as s:
            room = await self._room(s, caller.app_id, room_id, lock=True)
            await self._require_member(s, room, caller)
            if room.room_type == "direct":
                raise InvalidRequest("A direct room keeps its two members")
            await self._require_users(s, caller.app_id, wanted)
            present = {m.user_id for m in await self._members(s, room)}
            new = [u for u in wanted if u not in present]
            invitations: list[Event] = []
            if invitation_required or room.invitation_required:
                invitations = await self._invite(s, room, caller.user_id, new)
                new = []
            await self._check_capacity(s, room, len(new))
            if new:  # added directly: any pending invitation is settled
                await s.execute(
                    delete(InvitationRow).where(
                        InvitationRow.app_id == room.app_id,
                        InvitationRow.room_id == room.id,
                        InvitationRow.invitee.in_(new),
                    )
                )
            now = now_ms()
            for user_id in new:
                s.add(_membership(room, user_id, now))
            await s.flush()
            if system_message and new:
                kind = "addMember" if len(new) == 1 else "addMembers"
                await self._system(s, room, caller.user_id, kind, new)
            view = await self._view(s, room, caller)
        await self._events.publish(
            [
                Event(caller.app_id, ROOM, room_event_data(view), rooms=[room.id], users=new),
                *invitations,
            ]
        )
        return view

    async def typing(self, caller: Principal, room_id: str, message: Any) -> dict[str, Any]:
        """``POST /rooms/{id}/typing``: tell the other members the caller is typing."""
        user_id = acting_user(caller)
        if message is not None and (not isinstance(message, str) or len(message) > 1000):
            raise InvalidRequest("message must be a short string")
        result = {"message": message, "room": room_id, "sender": user_id}
        if self._typing_recently_relayed(caller.app_id, user_id, room_id):
            # Relayed under a second ago, after a membership check: nothing to read or send.
            return result
        async with self._db.read() as s:
            room = await self._room(s, caller.app_id, room_id)
            if await self._member(s, room, user_id) is None:
                raise InsufficientPermissions("Not a member of this room", code="NOT_ROOM_MEMBER")
        result["room"] = room.id
        if self._typing_throttled(caller.app_id, user_id, room.id):
            return result
        profile = await self._users.profile(caller.app_id, user_id)
        data = {
            "room": room.id,
            "sender": user_id,
            "senderInfo": {k: profile.get(k) for k in ("_id", "nickname", "avatarUrl", "isRobot")},
        }
        if message is not None:
            data["message"] = message
        await self._events.publish([Event(caller.app_id, TYPING, data, rooms=[room.id])])
        return result

    def _typing_recently_relayed(self, app_id: str, user_id: str, room_id: str) -> bool:
        relayed = self._typing_relayed.get((app_id, user_id, room_id))
        return relayed is not None and now_ms() - relayed < TYPING_INTERVAL_MS

    def _typing_throttled(self, app_id: str, user_id: str, room_id: str) -> bool:
        """True when this user's typing in this room was relayed less than
        ``TYPING_INTERVAL_MS`` ago: clients show the indicator for several seconds, so a
        client that reports every keystroke costs the members one event per interval."""
        now = now_ms()
        key = (app_id, user_id, room_id)
        if now - self._typing_relayed.get(key, 0) < TYPING_INTERVAL_MS:
            return True
        if len(self._typing_relayed) >= 10_000:  # keep only the entries still throttling
            self._typing_relayed = {
                k: t for k, t in self._typing_relayed.items() if now - t < TYPING_INTERVAL_MS
            }
        self._typing_relayed[key] = now
        return False

    # -- invitations ----------------------------------------------------------------------

    async def my_invitations(self, caller: Principal) -> dict[str, Any]:
        """``GET /rooms/invitations``: invitations waiting for the caller."""
        user_id = acting_user(caller)
        async with self._db.read() as s:
            rows = list(
                (
                    await s.execute(
                        select(InvitationRow)
                        .where(
                            InvitationRow.app_id == caller.app_id, InvitationRow.invitee == user_id
                        )
                        .order_by(InvitationRow.created_at.desc())
                        .limit(self.limits.max_page)
                    )
                ).scalars()
            )
            rooms = await self._rooms_by_id(s, caller.app_id, [r.room_id for r in rows])
            inviters = await self._users.profiles(
                caller.app_id, [r.inviter for r in rows if r.inviter], s
            )
            data = []
            for row in rows:
                room = rooms.get(row.room_id)
                if room is None:
                    continue
                members = await self._members(s, room)
                data.append(
                    {
                        **invitation_public(row, inviters),
                        "room": room_public(
                            room,
                            members,
                            await self._users.profiles(
                                caller.app_id, [m.user_id for m in members], s
                            ),
                        ),
                    }
                )
        return {"totalCount": len(data), "data": data}

    async def room_invitations(self, caller: Principal, room_id: str) -> dict[str, Any]:
        """``GET /rooms/{id}/invitations``: the room's pending invitations (members)."""
        async with self._db.read() as s:
            room = await self._room(s, caller.app_id, room_id)
            await self._require_member(s, room, caller)
            return await self._invitation_list(s, room)

    async def cancel_invitations(
        self, caller: Principal, room_id: str, invitees: Any, system_message: bool = True
    ) -> dict[str, Any]:
        """Withdraw invitations: the room's superusers, or whoever sent them."""
        cancelled = _id_list(invitees, "invitees")
        if not cancelled:
            raise InvalidRequest("invitees is required", code="MISSING_PARAMETER")
        self._check_invitee_count(len(cancelled))
        async with self._db.write() as s:
            room = await self._room(s, caller.app_id, room_id, lock=True)
            member = await self._require_member(s, room, caller)
            superuser = self.is_superuser(room, member, caller)
            rows = list(
                (
                    await s.execute(
                        select(InvitationRow).where(
                            InvitationRow.app_id == room.app_id,
                            InvitationRow.room_id == room.id,
                            InvitationRow.invitee.in_(cancelled),
                        )
                    )
                ).scalars()
            )
            if not superuser and any(r.inviter != caller.user_id for r in rows):
                raise InsufficientPermissions(
                    "Only the room's superusers may withdraw others' invitations"
                )
            gone = [r.invitee for r in rows]
            for row in rows:
                await s.delete(row)
            await s.flush()
            if system_message and gone:
                await self._system(s, room, caller.user_id, "cancelInvitations", gone)
            result = await self._invitation_list(s, room)
        await self._events.publish(
            [Event(caller.app_id, CANCEL_INVITATION, {"room": room.id}, users=gone)] if gone else []
        )
        return result

    async def decline(self, caller: Principal, room_id: str) -> dict[str, Any]:
        """``DELETE /rooms/{id}/invitations``: the invitee says no."""
        user_id = acting_user(caller)
        async with self._db.write() as s:
            room = await self._room(s, caller.app_id, room_id, lock=True)
            row = await s.get(InvitationRow, (room.app_id, room.id, user_id))
            if row is None:
                raise NotFound("No invitation to this room", code="INVITATION_NOT_FOUND")
            await s.delete(row)
        return await self.my_invitations(caller)

    async def _invite(
        self, s: AsyncSession, room: RoomRow, inviter: str | None, invitees: list[str]
    ) -> list[Event]:
        """Invitations for ``invitees`` (renewed if pending); one event per invitee."""
        now = now_ms()
        events = []
        for invitee in invitees:
            row = await s.get(InvitationRow, (room.app_id, room.id, invitee))
            if row is None:
                row = InvitationRow(
                    app_id=room.app_id,
                    room_id=room.id,
                    invitee=invitee,
                    inviter=inviter,
                    created_at=now,
                    updated_at=now,
                )
                s.add(row)
            else:
                row.inviter, row.updated_at = inviter, now
            events.append((invitee, row))
        await s.flush()
        inviters = await self._users.profiles(room.app_id, [inviter] if inviter else [], s)
        return [
            Event(
                room.app_id,
                INVITATION,
                {
                    **invitation_public(row, inviters),
                    "room": {"_id": room.id, "id": room.id, "name": room.name},
                },
                users=[invitee],
            )
            for invitee, row in events
        ]

    async def _invitation_list(self, s: AsyncSession, room: RoomRow) -> dict[str, Any]:
        rows = list(
            (
                await s.execute(
                    select(InvitationRow)
                    .where(InvitationRow.app_id == room.app_id, InvitationRow.room_id == room.id)
                    .order_by(InvitationRow.created_at, InvitationRow.invitee)
                )
            ).scalars()
        )
        people = await self._users.profiles(
            room.app_id, [r.invitee for r in rows] + [r.inviter for r in rows if r.inviter], s
        )
        data = [
            {
                **invitation_public(r, people),
                "invitee": user_embedded(people[r.invitee])
                if r.invitee in people
                else {"_id": r.invitee, "id": r.invitee},
            }
            for r in rows
        ]
        return {"totalCount": len(data), "data": data}

    async def remove_members(
        self, caller: Principal, room_id: str, members: Any, system_message: bool
    ) -> dict[str, Any]:
        """Remove members; removing oneself is leaving."""
        leaving = _id_list(members, "members")
        if not leaving:
            raise InvalidRequest("members is required", code="MISSING_PARAMETER")
        async with self._db.write() as s:
            room = await self._room(s, caller.app_id, room_id, lock=True)
            member = await self._require_member(s, room, caller)
            others = [u for u in leaving if u != caller.user_id]
            if others and not self.is_superuser(room, member, caller):
                raise InsufficientPermissions(
                    "Only the room's owner, managers and admins may remove other members"
                )
            if room.owner in others and not caller.is_admin:
                raise InsufficientPermissions("The owner cannot be removed by others")
            present = {m.user_id: m for m in await self._members(s, room)}
            gone = [u for u in dict.fromkeys(leaving) if u in present]
            for user_id in gone:
                await s.delete(present[user_id])
            await self._prefs.mark_quitted(s, room.app_id, room.id, gone, now_ms())
            if room.owner in gone:
                room.owner = None
            await s.flush()
            if system_message and gone:
                if gone == [caller.user_id]:
                    await self._system(s, room, caller.user_id, "leaveRoom", gone)
                else:
                    kind = "deleteMember" if len(gone) == 1 else "deleteMembers"
                    await self._system(s, room, caller.user_id, kind, gone)
            view = await self._view(s, room, caller)
        await self._events.publish(
            [Event(caller.app_id, ROOM, room_event_data(view), rooms=[room.id], users=gone)]
        )
        return view

    async def set_member_property(
        self, caller: Principal, room_id: str, client: str, prop: Any, value: Any
    ) -> dict[str, Any]:
        """``PUT /rooms/{id}/member/{client}``: ``role`` (admin|member) or a custom property."""
        if not isinstance(prop, str) or not prop or len(prop) > 64:
            raise InvalidRequest(
                "property must be a name of 1 to 64 characters", code="MISSING_PARAMETER"
            )
        if prop in ("client", "badge", "lastRead", "isManager"):
            raise InvalidRequest(f"{prop} is kept by the server")
        async with self._db.write() as s:
            room = await self._room(s, caller.app_id, room_id, lock=True)
            member = await self._require_member(s, room, caller)
            target = await self._member(s, room, client)
            if target is None:
                raise NotFound(f"{client!r} is not a member of this room", code="CLIENT_NOT_FOUND")
            assign_admin = False
            if prop == "role":
                if value not in ROLES:
                    raise InvalidRequest("role must be admin or member")
                if not self._may_grant(room, member, caller):
                    raise InsufficientPermissions("Only the owner and admins may grant roles")
                assign_admin = value == "admin" and target.role != "admin"
                target.role = value
            else:
                if client != caller.user_id and not self.is_superuser(room, member, caller):
                    raise InsufficientPermissions("Members may set only their own properties")
                target.properties = {**target.properties, prop: value}
            if assign_admin:
                await self._system(s, room, caller.user_id, "assignAdmin", [client])
            view = await self._view(s, room, caller)
        await self._events.publish(
            [Event(caller.app_id, ROOM, room_event_data(view), rooms=[room.id])]
        )
        return view

    async def mark_read(self, caller: Principal, room_id: str, message_id: Any) -> dict[str, Any]:
        """``PUT /rooms/{id}/lastRead``: everything up to ``message`` is read."""
        if not isinstance(message_id, str) or not message_id:
            raise InvalidRequest("message is required", code="MISSING_PARAMETER")
        user_id = acting_user(caller)
        async with self._db.write() as s:
            room = await self._room(s, caller.app_id, room_id, lock=True)
            member = await self._member(s, room, user_id)
            if member is None:
                raise InsufficientPermissions("Not a member of this room", code="NOT_ROOM_MEMBER")
            seq = (
                await s.execute(
                    select(MessageRow.seq).where(
                        MessageRow.app_id == room.app_id,
                        MessageRow.room_id == room.id,
                        MessageRow.id == message_id,
                    )
                )
            ).scalar_one_or_none()
            if seq is None:
                raise NotFound("No such message in this room", code="MESSAGE_NOT_FOUND")
            unread = (
                await s.execute(
                    select(func.count())
                    .select_from(MessageRow)
                    .where(
                        MessageRow.app_id == room.app_id,
                        MessageRow.room_id == room.id,
                        MessageRow.seq > seq,
                        MessageRow.sender.is_distinct_from(user_id),
                    )
                )
            ).scalar()
            member.last_read = message_id
            member.read_seq = seq
            member.seen = max(0, room.message_count - int(unread or 0))
            await s.flush()
            await refresh_mentioned(s, room.app_id, room.id, [member.user_id])
            result = {"client": user_id, "lastRead": message_id, "badge": unread_of(room, member)}
        await self._events.publish(
            [
                Event(
                    caller.app_id,
                    LAST_READ,
                    {"roomID": room.id, "memberID": user_id, "messageID": message_id},
                    rooms=[room.id],
                )
            ]
        )
        return result

    # -- helpers ------------------------------------------------------------------------

    def _check_invitee_count(self, count: int) -> None:
        if count > self.limits.max_invitees:
            raise TooLarge(
                f"At most {self.limits.max_invitees} invitees per request", code="TOO_MANY_MEMBERS"
            )

    def _page(self, params: dict[str, Any]) -> tuple[int, int]:
        skip = int_param(params.get("skip"), "skip", 0)
        limit = int_param(params.get("limit"), "limit", 0, maximum=None)
        if limit > self.limits.max_page:
            raise TooLarge(f"limit may be at most {self.limits.max_page}", code="RESULT_TOO_LARGE")
        return skip, limit or self.limits.max_page

    async def _room(
        self, s: AsyncSession, app_id: str, room_id: str, *, lock: bool = False
    ) -> RoomRow:
        """The room, or ROOM_NOT_FOUND. ``lock`` (for writes) takes the room's row lock, so
        changes to one room — its sequence counter, its member count — are serialized
        (PostgreSQL; SQLite serializes all writes anyway)."""
        room = await s.get(RoomRow, (app_id, check_room_id(room_id)), with_for_update=lock)
        if room is None:
            raise not_found(room_id)
        return room

    async def room_row(
        self, s: AsyncSession, app_id: str, room_id: str, *, lock: bool = False
    ) -> RoomRow:
        """The room for another service working inside its own transaction ``s``."""
        return await self._room(s, app_id, room_id, lock=lock)

    async def member_of(
        self, s: AsyncSession, room: RoomRow, user_id: str | None
    ) -> RoomMemberRow | None:
        """``user_id``'s membership of ``room`` (its own or a group's), inside ``s``."""
        return await self._member(s, room, user_id)

    async def _member(
        self, s: AsyncSession, room: RoomRow, user_id: str | None
    ) -> RoomMemberRow | None:
        """The user's membership: its own, or else that of a group it belongs to."""
        if user_id is None:
            return None
        own = await s.get(RoomMemberRow, (room.app_id, room.id, user_id))
        if own is not None:
            return own
        groups = await groups_of(s, room.app_id, user_id)
        if not groups:
            return None
        via_group = await s.execute(
            select(RoomMemberRow)
            .where(
                RoomMemberRow.app_id == room.app_id,
                RoomMemberRow.room_id == room.id,
                RoomMemberRow.user_id.in_(groups),
            )
            .limit(1)
        )
        return via_group.scalar_one_or_none()

    async def _members(self, s: AsyncSession, room: RoomRow) -> list[RoomMemberRow]:
        return list(
            (
                await s.execute(
                    select(RoomMemberRow)
                    .where(RoomMemberRow.app_id == room.app_id, RoomMemberRow.room_id == room.id)
                    .order_by(RoomMemberRow.joined_at, RoomMemberRow.user_id)
                )
            ).scalars()
        )

    async def _require_member(
        self, s: AsyncSession, room: RoomRow, caller: Principal
    ) -> RoomMemberRow | None:
        member = await self._member(s, room, caller.user_id)
        if member is None and not caller.is_admin:
            raise InsufficientPermissions("Not a member of this room", code="NOT_ROOM_MEMBER")
        return member

    @staticmethod
    def is_superuser(room: RoomRow, member: RoomMemberRow | None, caller: Principal) -> bool:
        if caller.is_admin:
            return True
        if member is None:
            return False
        return room.owner == member.user_id or member.is_manager or member.role == "admin"

    @staticmethod
    def _may_grant(room: RoomRow, member: RoomMemberRow | None, caller: Principal) -> bool:
        if caller.is_admin:
            return True
        return member is not None and (room.owner == member.user_id or member.role == "admin")

    async def _require_users(self, s: AsyncSession, app_id: str, user_ids: list[str]) -> None:
        if not user_ids:
            return
        found = set(
            (
                await s.execute(
                    select(UserRow.id).where(UserRow.app_id == app_id, UserRow.id.in_(user_ids))
                )
            ).scalars()
        )
        groups = await s.execute(
            select(GroupRow.id).where(GroupRow.app_id == app_id, GroupRow.id.in_(user_ids))
        )
        found.update(groups.scalars())  # a group id stands for all its members
        unknown = [u for u in user_ids if u not in found]
        if unknown:
            raise NotFound(f"Unknown clients: {', '.join(unknown[:10])}", code="CLIENT_NOT_FOUND")

    async def _check_capacity(self, s: AsyncSession, room: RoomRow, adding: int) -> None:
        count = (
            await s.execute(
                select(func.count())
                .select_from(RoomMemberRow)
                .where(RoomMemberRow.app_id == room.app_id, RoomMemberRow.room_id == room.id)
            )
        ).scalar()
        if int(count or 0) + adding > self.limits.max_members:
            raise TooLarge(
                f"A room holds at most {self.limits.max_members} members", code="TOO_MANY_MEMBERS"
            )

    async def _system(
        self, s: AsyncSession, room: RoomRow, actor: str | None, kind: str, subjects: list[str]
    ) -> None:
        """A system message about ``subjects`` (contract §4.3)."""
        profiles = await self._users.profiles(room.app_id, subjects, s)
        embedded = [user_embedded(profiles[u]) for u in subjects if u in profiles]
        names = ", ".join(p.get("nickname") or p["_id"] for p in embedded)
        fields: dict[str, Any] = {"message": names}
        if kind in ("addMember", "deleteMember", "assignAdmin") and embedded:
            fields["member"] = embedded[0]
        if kind in ("addMembers", "cancelInvitations"):
            fields["extra"] = {"invitees": embedded}
        if kind in ("deleteMember", "deleteMembers"):
            fields["extra"] = {"members": embedded}
        await append_message(s, room, actor, kind, fields)

    async def _rooms_by_id(
        self, s: AsyncSession, app_id: str, room_ids: list[str]
    ) -> dict[str, RoomRow]:
        if not room_ids:
            return {}
        rows = (
            await s.execute(
                select(RoomRow).where(RoomRow.app_id == app_id, RoomRow.id.in_(room_ids))
            )
        ).scalars()
        return {r.id: r for r in rows}

    async def _view(self, s: AsyncSession, room: RoomRow, caller: Principal) -> dict[str, Any]:
        return (await self._views(s, [room], caller))[0]

    async def views(
        self, s: AsyncSession, rooms: list[RoomRow], caller: Principal
    ) -> list[dict[str, Any]]:
        """Rooms as ``caller`` sees them, inside the caller's transaction ``s``."""
        return await self._views(s, rooms, caller)

    async def _views(
        self, s: AsyncSession, rooms: list[RoomRow], caller: Principal
    ) -> list[dict[str, Any]]:
        """Rooms in the contract's shape, for ``caller``: members as Client objects, member
        properties, the last message, and the caller's own unread count and rights."""
        if not rooms:
            return []
        app_id = rooms[0].app_id
        ids = [r.id for r in rooms]
        member_rows = list(
            (
                await s.execute(
                    select(RoomMemberRow)
                    .where(RoomMemberRow.app_id == app_id, RoomMemberRow.room_id.in_(ids))
                    .order_by(RoomMemberRow.joined_at, RoomMemberRow.user_id)
                )
            ).scalars()
        )
        by_room: dict[str, list[RoomMemberRow]] = {r: [] for r in ids}
        for m in member_rows:
            by_room[m.room_id].append(m)
        last_ids = [r.last_message_id for r in rooms if r.last_message_id]
        last_rows = (
            {
                m.id: m
                for m in (
                    await s.execute(
                        select(MessageRow).where(
                            MessageRow.app_id == app_id, MessageRow.id.in_(last_ids)
                        )
                    )
                ).scalars()
            }
            if last_ids
            else {}
        )
        people = {m.user_id for m in member_rows} | {
            m.sender for m in last_rows.values() if m.sender
        }
        if caller.user_id:
            people.add(caller.user_id)
        profiles = await self._users.profiles(app_id, sorted(people), s)
        missing = sorted(people - set(profiles))
        profiles.update(await self._groups.embedded(s, app_id, missing))
        prefs = await self._prefs.prefs_for_rooms(s, app_id, caller.user_id, ids)
        muted_rooms = set(profiles.get(caller.user_id or "", {}).get("mute") or [])
        holders = [caller.user_id]
        if caller.user_id:
            holders += await groups_of(s, app_id, caller.user_id)
        views = []
        for room in rooms:
            members = by_room[room.id]
            mine = next((m for m in members if m.user_id == caller.user_id), None) or next(
                (m for m in members if m.user_id in holders), None
            )
            last = last_rows.get(room.last_message_id or "")
            view = room_public(room, members, profiles)
            superuser = self.is_superuser(room, mine, caller)
            if last is not None:
                sender = profiles.get(last.sender or "")
                last_public = message_public(last, user_embedded(sender) if sender else None)
                # A message hidden from the room shows only to its superusers.
                view["lastMessage"] = last_public if superuser else hidden_stub(last_public)
            pref = prefs.get(room.id, {"room": room.id})
            view["pref"] = pref
            view["muted"] = bool(pref.get("muted")) or room.id in muted_rooms
            view["unread"] = unread_of(room, mine) if mine else 0
            view["isMentioned"] = bool(mine and mine.mentioned)
            view["isSuperuser"] = superuser
            views.append(view)
        return views


# Fields of a room view that belong to the one user it was made for.
PERSONAL_FIELDS = ("pref", "muted", "unread", "isMentioned", "isSuperuser")


def room_event_data(view: dict[str, Any]) -> dict[str, Any]:
    """A ``room`` event goes to every member: the view without what is personal to the
    user who made the change (SDKs keep their own values of those, contract §5.4), and a
    hidden last message as its stub."""
    data = {k: v for k, v in view.items() if k not in PERSONAL_FIELDS}
    if isinstance(data.get("lastMessage"), dict):
        data["lastMessage"] = hidden_stub(data["lastMessage"])
    return data


def room_public(
    room: RoomRow, members: list[RoomMemberRow], profiles: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The contract's Room object, without the caller-specific fields."""
    return {
        "_id": room.id,
        "id": room.id,
        "appID": room.app_id,
        "name": room.name,
        "cover": room.cover,
        "description": room.description,
        "roomType": room.room_type,
        "owner": room.owner,
        "managers": [m.user_id for m in members if m.is_manager],
        "members": [
            # Groups arrive already embedded (clientType "group", with their members).
            profiles[m.user_id]
            if profiles.get(m.user_id, {}).get("clientType") == "group"
            else user_embedded(profiles[m.user_id])
            if m.user_id in profiles
            else {"_id": m.user_id, "id": m.user_id}
            for m in members
        ],
        "memberProperties": [member_property(room, m) for m in members],
        "roomTags": list(room.room_tags),
        "status": room.status,
        "opening": room.opening,
        "encrypted": room.encrypted,
        "botMode": room.bot_mode,
        "botState": room.bot_state,
        "serviceStatus": 0,
        "webhook": room.webhook,
        "extParams": room.ext_params,
        "invitationRequired": room.invitation_required,
        "createdTime": iso(room.created_at),
        "createdTimeMS": room.created_at,
        "updatedAt": iso(room.updated_at),
        "updatedAtMS": room.updated_at,
    }


def invitation_public(row: InvitationRow, people: dict[str, dict[str, Any]]) -> dict[str, Any]:
    inviter = people.get(row.inviter or "")
    return {
        "inviter": user_embedded(inviter) if inviter else row.inviter,
        "createdAt": iso(row.created_at),
        "createdTimeMS": row.created_at,
        "updatedAt": iso(row.updated_at),
        "updatedTimeMS": row.updated_at,
    }


def member_property(room: RoomRow, m: RoomMemberRow) -> dict[str, Any]:
    badge = unread_of(room, m)
    prop: dict[str, Any] = {**m.properties, "client": m.user_id, "badge": badge, "role": m.role}
    if m.last_read:
        prop["lastRead"] = m.last_read
    return prop


def _set_tags(s: AsyncSession, room: RoomRow, tags: list[str]) -> None:
    """The tags again as rows, so that ``q={"roomTags": ...}`` is an indexed lookup."""
    s.add_all(RoomTagRow(app_id=room.app_id, room_id=room.id, tag=t) for t in tags)


def _membership(room: RoomRow, user_id: str, now: int) -> RoomMemberRow:
    return RoomMemberRow(
        app_id=room.app_id,
        room_id=room.id,
        user_id=user_id,
        role="member",
        is_manager=False,
        seen=room.message_count,  # a member's unread count starts at joining
        mentioned=False,
        properties={},
        joined_at=now,
        read_seq=room.last_seq,
    )


def _apply_fields(room: RoomRow, body: dict[str, Any]) -> None:
    for wire, column in EDITABLE.items():
        if wire in body:
            value = body[wire]
            if value is not None and not isinstance(value, str):
                raise InvalidRequest(f"{wire} must be a string")
            if value is not None and len(value) > 65_536:
                raise TooLarge(f"{wire} is too long")
            setattr(room, column, value)


def _id_list(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(
        isinstance(v, str) and v and len(v) <= 255 and v.isprintable() for v in value
    ):
        raise InvalidRequest(f"{name} must be a list of client ids")
    return list(dict.fromkeys(value))


def _tags(value: Any) -> list[str]:
    if value is None:
        return []
    if (
        not isinstance(value, list)
        or len(value) > 100
        or not all(isinstance(t, str) and 0 < len(t) <= 100 for t in value)
    ):
        raise InvalidRequest(
            "roomTags must be a list of at most 100 short strings", code="INVALID_ROOM_TAGS"
        )
    return list(dict.fromkeys(value))


def _sort(text: Any) -> list[tuple[str, bool]]:
    if not isinstance(text, str) or len(text) > 100:
        raise InvalidRequest("sort must be field names like '-lastMessage -createdTime'")
    order = []
    for token in text.split():
        descending = token.startswith("-")
        key = SORT_KEYS.get(token.lstrip("-+"))
        if key is None:
            raise InvalidRequest(f"Cannot sort by {token!r}; use lastMessage or createdTime")
        order.append((key, descending))
    return order or [("activity", True)]


def _room_filter(app_id: str, room_col: Any, q: Any) -> list[Any]:
    """The ``q`` filter of ``GET /rooms``: ``members`` and ``roomTags`` (a value, or
    ``{"$in": [...]}`` / ``{"$all": [...]}``)."""
    if not isinstance(q, dict):
        raise InvalidRequest("q must be a JSON object", code="INVALID_QUERY")
    conditions = []
    for key, value in q.items():
        if key not in ("members", "roomTags"):
            raise InvalidRequest(f"Cannot filter rooms on {key!r}", code="INVALID_QUERY")
        if isinstance(value, str):
            wanted, mode = [value], "$all"
        elif isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("$in", "$all"):
            mode, wanted = next(iter(value.items()))
        else:
            raise InvalidRequest(
                f"{key} takes a value or {{$in|$all: [...]}}", code="INVALID_QUERY"
            )
        if (
            not isinstance(wanted, list)
            or not wanted
            or len(wanted) > 100
            or not all(isinstance(w, str) for w in wanted)
        ):
            raise InvalidRequest(f"{key} values must be 1 to 100 strings", code="INVALID_QUERY")
        table, column = (
            (RoomMemberRow, RoomMemberRow.user_id)
            if key == "members"
            else (RoomTagRow, RoomTagRow.tag)
        )
        parts = [
            room_col.in_(select(table.room_id).where(table.app_id == app_id, column == w))
            for w in wanted
        ]
        conditions.append(and_(*parts) if mode == "$all" else or_(*parts))
    return conditions
