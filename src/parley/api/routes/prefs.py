"""Preferences: per room (``/roomPrefs``, also per user group) and per user (``/me/pref``):
contract §3.6."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request

from parley.api.deps import AuthorizedRoute, caller_of, services_of
from parley.api.openapi import RoomPref, returns
from parley.api.responses import JSONResponse, ok
from parley.api.schemas import Envelope, RoomPrefUpdate

router = APIRouter(
    route_class=AuthorizedRoute, tags=["preferences"], responses={200: {"model": Envelope}}
)


@router.post(
    "/roomPrefs/{room_id}",
    summary="Set the caller's preferences of a room",
    responses=returns(RoomPref),
)
async def set_room_pref(request: Request, room_id: str, body: RoomPrefUpdate) -> JSONResponse:
    prefs = services_of(request).prefs
    return ok(await prefs.set_room_pref(caller_of(request), room_id, body.fields()))


@router.get("/roomPrefs", summary="The caller's room preferences")
async def room_prefs(request: Request) -> JSONResponse:
    return ok(await services_of(request).prefs.room_prefs(caller_of(request)))


@router.delete("/roomPrefs/{room_id}/{key}", summary="Unset one room preference")
async def delete_room_pref(request: Request, room_id: str, key: str) -> JSONResponse:
    prefs = services_of(request).prefs
    return ok(await prefs.delete_room_pref_key(caller_of(request), room_id, key))


@router.post(
    "/roomPrefs/{room_id}/group/{group}",
    summary="Set a room preference per group",
    responses=returns(RoomPref),
)
async def set_group_room_pref(
    request: Request, room_id: str, group: str, body: RoomPrefUpdate
) -> JSONResponse:
    prefs = services_of(request).prefs
    return ok(await prefs.set_room_pref(caller_of(request), room_id, body.fields(), group))


@router.get("/roomPrefs/group/{group}", summary="The caller's room preferences of a group")
async def group_room_prefs(request: Request, group: str) -> JSONResponse:
    return ok(await services_of(request).prefs.room_prefs(caller_of(request), group))


@router.delete("/roomPrefs/{room_id}/group/{group}/{key}", summary="Unset a group preference")
async def delete_group_room_pref(
    request: Request, room_id: str, group: str, key: str
) -> JSONResponse:
    prefs = services_of(request).prefs
    return ok(await prefs.delete_room_pref_key(caller_of(request), room_id, key, group))


@router.get("/me/pref", summary="All the caller's preferences, or one with ?key=")
async def user_prefs(
    request: Request, key: Annotated[str | None, Query(max_length=255)] = None
) -> JSONResponse:
    prefs = services_of(request).prefs
    if key:
        return ok(await prefs.user_pref(caller_of(request), key))
    return ok(await prefs.user_prefs(caller_of(request)))


@router.get("/me/prefs", summary="The caller's preferences as one object")
async def user_prefs_map(request: Request) -> JSONResponse:
    prefs = await services_of(request).prefs.user_prefs(caller_of(request))
    return ok({p["key"]: p["data"] for p in prefs})


@router.post("/me/pref/{key}", summary="Store any JSON under a key")
async def set_user_pref(
    request: Request, key: str, data: Annotated[Any, Body()] = None
) -> JSONResponse:
    return ok(await services_of(request).prefs.set_user_pref(caller_of(request), key, data))


@router.delete("/me/pref/{key}", summary="Delete a key")
async def delete_user_pref(request: Request, key: str) -> JSONResponse:
    return ok(await services_of(request).prefs.delete_user_pref(caller_of(request), key))
