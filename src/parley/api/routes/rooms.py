"""Rooms, members and read state: contract §3.4 and §3.5. The rules are in
parley.services.rooms; handlers only shape requests and responses."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Query, Request

from parley.api.deps import AuthorizedRoute, caller_of, services_of
from parley.api.openapi import Page, Room, returns
from parley.api.responses import JSONResponse, ok
from parley.api.schemas import (
    Envelope,
    InvitationsCancel,
    LastReadUpdate,
    MemberPropertyUpdate,
    MembersAdd,
    MembersRemove,
    RoomCreate,
    RoomJoin,
    RoomUpdate,
    Typing,
)
from parley.services.errors import InvalidRequest

router = APIRouter(
    route_class=AuthorizedRoute, tags=["rooms"], responses={200: {"model": Envelope}}
)


def _json_query(text: str | None, name: str) -> Any:
    if not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidRequest(f"{name} must be JSON", code="INVALID_QUERY") from None


@router.post(
    "/rooms", summary="Create a room with the listed members (API Key)", responses=returns(Room)
)
async def create_room(request: Request, body: RoomCreate) -> JSONResponse:
    rooms = services_of(request).rooms
    return ok(await rooms.create(caller_of(request), body.fields(), join=False))


@router.post(
    "/rooms/createAndJoin",
    summary="Create a room, join it, add the invitees",
    responses=returns(Room),
)
async def create_and_join(request: Request, body: RoomCreate) -> JSONResponse:
    rooms = services_of(request).rooms
    return ok(await rooms.create(caller_of(request), body.fields(), join=True))


@router.get("/rooms", summary="The caller's rooms", responses=returns(Page[Room]))
async def list_rooms(
    request: Request,
    skip: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int | None, Query(ge=0)] = None,
    sort: Annotated[str | None, Query(max_length=100)] = None,
    updatedAfter: Annotated[str | None, Query(max_length=40)] = None,
    q: Annotated[str | None, Query(max_length=4096)] = None,
    sortUnreadFirst: Annotated[str | None, Query(max_length=8)] = None,
    pref: Annotated[str | None, Query(max_length=4096)] = None,
) -> JSONResponse:
    params = {
        "skip": skip,
        "limit": limit,
        "sort": sort,
        "updatedAfter": updatedAfter,
        "q": _json_query(q, "q"),
        "sortUnreadFirst": sortUnreadFirst,
        "pref": _json_query(pref, "pref"),
    }
    svc, caller = services_of(request), caller_of(request)
    page = await svc.rooms.list_rooms(caller, params)
    members = [m for room in page["data"] for m in room.get("members") or []]
    await svc.presence.annotate(caller.app_id, members)
    return ok(page)


@router.get("/rooms/ids", summary="The ids of the caller's rooms")
async def room_ids(
    request: Request,
    skip: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int | None, Query(ge=0)] = None,
) -> JSONResponse:
    params = {"skip": skip, "limit": limit}
    return ok(await services_of(request).rooms.ids(caller_of(request), params))


@router.get("/rooms/quitted", summary="Rooms the caller has left")
async def quitted_rooms(request: Request) -> JSONResponse:
    return ok(await services_of(request).rooms.quitted(caller_of(request)))


@router.get("/rooms/invitations", summary="Invitations waiting for the caller")
async def my_invitations(request: Request) -> JSONResponse:
    return ok(await services_of(request).rooms.my_invitations(caller_of(request)))


@router.get("/rooms/{room_id}", summary="One room, with its members", responses=returns(Room))
async def get_room(request: Request, room_id: str) -> JSONResponse:
    svc, caller = services_of(request), caller_of(request)
    room = await svc.rooms.get(caller, room_id)
    await svc.presence.annotate(caller.app_id, room.get("members") or [])
    return ok(room)


@router.get("/rooms/{room_id}/exists", summary="Whether a room exists")
async def room_exists(request: Request, room_id: str) -> JSONResponse:
    return ok({"exists": await services_of(request).rooms.exists(caller_of(request), room_id)})


@router.put(
    "/rooms/{room_id}", summary="Change a room (status 0 freezes it)", responses=returns(Room)
)
async def update_room(request: Request, room_id: str, body: RoomUpdate) -> JSONResponse:
    rooms = services_of(request).rooms
    return ok(await rooms.update(caller_of(request), room_id, body.fields()))


@router.delete("/rooms/{room_id}", summary="Delete a room and its messages")
async def delete_room(request: Request, room_id: str) -> JSONResponse:
    return ok(await services_of(request).rooms.delete(caller_of(request), room_id))


@router.post("/rooms/{room_id}/join", summary="Join a room", responses=returns(Room))
async def join_room(
    request: Request, room_id: str, body: Annotated[RoomJoin | None, Body()] = None
) -> JSONResponse:
    system_message = body.systemMessage if body else True
    rooms = services_of(request).rooms
    return ok(await rooms.join(caller_of(request), room_id, system_message))


@router.post("/rooms/{room_id}/members", summary="Add members")
async def add_members(request: Request, room_id: str, body: MembersAdd) -> JSONResponse:
    rooms = services_of(request).rooms
    return ok(
        await rooms.add_members(
            caller_of(request),
            room_id,
            body.invitees,
            body.systemMessage,
            body.invitationRequired,
        )
    )


@router.post("/rooms/{room_id}/members/{invitee}", summary="Add one member (legacy form)")
async def add_member(
    request: Request,
    room_id: str,
    invitee: str,
    body: Annotated[RoomJoin | None, Body()] = None,
) -> JSONResponse:
    system_message = body.systemMessage if body else False
    rooms = services_of(request).rooms
    return ok(await rooms.add_members(caller_of(request), room_id, [invitee], system_message))


@router.post("/rooms/{room_id}/delete/members", summary="Remove members, or leave")
async def remove_members(request: Request, room_id: str, body: MembersRemove) -> JSONResponse:
    rooms = services_of(request).rooms
    return ok(
        await rooms.remove_members(caller_of(request), room_id, body.members, body.systemMessage)
    )


@router.put("/rooms/{room_id}/member/{client_id}", summary="Set a member's role or property")
async def set_member_property(
    request: Request, room_id: str, client_id: str, body: MemberPropertyUpdate
) -> JSONResponse:
    rooms = services_of(request).rooms
    return ok(
        await rooms.set_member_property(
            caller_of(request), room_id, client_id, body.property, body.value
        )
    )


@router.put("/rooms/{room_id}/lastRead", summary="Mark the room read up to a message")
async def mark_read(request: Request, room_id: str, body: LastReadUpdate) -> JSONResponse:
    rooms = services_of(request).rooms
    return ok(await rooms.mark_read(caller_of(request), room_id, body.message))


@router.get("/rooms/{room_id}/invitations", summary="The room's pending invitations")
async def room_invitations(request: Request, room_id: str) -> JSONResponse:
    return ok(await services_of(request).rooms.room_invitations(caller_of(request), room_id))


@router.post("/rooms/{room_id}/delete/invitations", summary="Withdraw invitations")
async def cancel_invitations(
    request: Request, room_id: str, body: InvitationsCancel
) -> JSONResponse:
    rooms = services_of(request).rooms
    return ok(
        await rooms.cancel_invitations(
            caller_of(request), room_id, body.invitees, body.systemMessage
        )
    )


@router.delete("/rooms/{room_id}/invitations/{invitee}", summary="Withdraw one invitation")
async def cancel_invitation(request: Request, room_id: str, invitee: str) -> JSONResponse:
    rooms = services_of(request).rooms
    return ok(await rooms.cancel_invitations(caller_of(request), room_id, [invitee]))


@router.delete("/rooms/{room_id}/invitations", summary="Decline an invitation")
async def decline_invitation(request: Request, room_id: str) -> JSONResponse:
    return ok(await services_of(request).rooms.decline(caller_of(request), room_id))


@router.post("/rooms/{room_id}/typing", summary="Tell the room the caller is typing")
async def typing(
    request: Request, room_id: str, body: Annotated[Typing | None, Body()] = None
) -> JSONResponse:
    rooms = services_of(request).rooms
    return ok(await rooms.typing(caller_of(request), room_id, body.message if body else None))
