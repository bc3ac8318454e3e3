"""The current user: contract §3.2."""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Request

from parley.api.deps import AuthorizedRoute, caller_of, services_of, user_of
from parley.api.openapi import Client, returns
from parley.api.responses import JSONResponse, ok
from parley.api.schemas import DeviceSubscription, Envelope, ProfileUpdate
from parley.services.auth import Principal

router = APIRouter(route_class=AuthorizedRoute, tags=["me"], responses={200: {"model": Envelope}})


@router.get("/me", summary="The calling user's profile", responses=returns(Client))
async def get_me(request: Request) -> JSONResponse:
    caller, user_id = user_of(request)
    users = services_of(request).users
    # A token names a real user; an API Key caller's IM-CLIENT-ID header is checked first.
    lookup = users.get if caller.is_admin else users.profile
    profile = await lookup(caller.app_id, user_id)
    await services_of(request).presence.annotate(caller.app_id, [profile], last_active=True)
    return ok(profile)


@router.post("/me", summary="Update the calling user's profile", responses=returns(Client))
async def update_me(request: Request, body: ProfileUpdate) -> JSONResponse:
    caller, user_id = user_of(request)
    users = services_of(request).users
    return ok(await users.update_profile(caller.app_id, user_id, body.fields()))


@router.post("/me/mute/{room_id}", summary="No push notifications from this room")
async def mute_room(request: Request, room_id: str) -> JSONResponse:
    return ok(await services_of(request).devices.set_muted(caller_of(request), room_id, True))


@router.delete("/me/mute/{room_id}", summary="Push notifications from this room again")
async def unmute_room(request: Request, room_id: str) -> JSONResponse:
    return ok(await services_of(request).devices.set_muted(caller_of(request), room_id, False))


@router.post("/me/notification/enable", summary="Turn push notifications on")
async def enable_notifications(request: Request) -> JSONResponse:
    return ok(await services_of(request).devices.set_notifications(caller_of(request), True))


@router.post("/me/notification/disable", summary="Turn push notifications off")
async def disable_notifications(request: Request) -> JSONResponse:
    return ok(await services_of(request).devices.set_notifications(caller_of(request), False))


def _subscriber(request: Request, body: DeviceSubscription) -> Principal:
    """The caller; the API Key names the user with ``clientId`` (or IM-CLIENT-ID)."""
    caller = caller_of(request)
    if caller.is_admin and body.clientId:
        return replace(caller, user_id=body.clientId)
    return caller


@router.post("/me/subscribe", summary="Register a device's push token")
async def subscribe(request: Request, body: DeviceSubscription) -> JSONResponse:
    devices = services_of(request).devices
    return ok(await devices.subscribe(_subscriber(request, body), body.model_dump()))


@router.post("/me/unsubscribe", summary="Forget a device's push token")
async def unsubscribe(request: Request, body: DeviceSubscription) -> JSONResponse:
    devices = services_of(request).devices
    return ok(await devices.unsubscribe(_subscriber(request, body), body.model_dump()))


@router.post("/me/logout", summary="Revoke this token and this device's push token")
async def logout(request: Request) -> JSONResponse:
    device = request.headers.get("im-device-id")
    return ok(await services_of(request).devices.logout(caller_of(request), device))


@router.post("/me/logout-others", summary="Revoke every other token and device")
async def logout_others(request: Request) -> JSONResponse:
    device = request.headers.get("im-device-id")
    return ok(await services_of(request).devices.logout_others(caller_of(request), device))
