"""The current user: contract §3.2."""

from __future__ import annotations

from fastapi import APIRouter

from parley.api.deps import AuthorizedRoute, CurrentUser, Svc
from parley.api.responses import JSONResponse, ok
from parley.api.schemas import Envelope, ProfileUpdate

router = APIRouter(route_class=AuthorizedRoute, tags=["me"], responses={200: {"model": Envelope}})


@router.get("/me", summary="The calling user's profile")
async def get_me(user: CurrentUser, svc: Svc) -> JSONResponse:
    assert user.user_id is not None
    return ok(await svc.users.get(user.app_id, user.user_id))


@router.post("/me", summary="Update the calling user's profile")
async def update_me(body: ProfileUpdate, user: CurrentUser, svc: Svc) -> JSONResponse:
    assert user.user_id is not None
    return ok(await svc.users.update_profile(user.app_id, user.user_id, body.fields()))
