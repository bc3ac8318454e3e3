"""The current user: contract §3.2."""

from __future__ import annotations

from fastapi import APIRouter, Request

from parley.api.deps import AuthorizedRoute, services_of, user_of
from parley.api.responses import JSONResponse, ok
from parley.api.schemas import Envelope, ProfileUpdate

router = APIRouter(route_class=AuthorizedRoute, tags=["me"], responses={200: {"model": Envelope}})


@router.get("/me", summary="The calling user's profile")
async def get_me(request: Request) -> JSONResponse:
    caller, user_id = user_of(request)
    users = services_of(request).users
    # A token names a real user; an API Key caller's IM-CLIENT-ID header is checked first.
    lookup = users.get if caller.is_admin else users.profile
    return ok(await lookup(caller.app_id, user_id))


@router.post("/me", summary="Update the calling user's profile")
async def update_me(request: Request, body: ProfileUpdate) -> JSONResponse:
    caller, user_id = user_of(request)
    users = services_of(request).users
    return ok(await users.update_profile(caller.app_id, user_id, body.fields()))
