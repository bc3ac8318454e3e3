"""User groups, for the customer's backend (API Key): contract §3.3."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from parley.api.deps import AuthorizedRoute, caller_of, services_of
from parley.api.openapi import Group, Page, returns
from parley.api.responses import JSONResponse, ok
from parley.api.schemas import Envelope, GroupUpsert

router = APIRouter(
    route_class=AuthorizedRoute, tags=["groups"], responses={200: {"model": Envelope}}
)


@router.post("/admin/groups", summary="Create or update a user group", responses=returns(Group))
async def upsert_group(request: Request, body: GroupUpsert) -> JSONResponse:
    groups = services_of(request).groups
    return ok(await groups.upsert(caller_of(request).app_id, body.fields()))


@router.get("/admin/groups", summary="List user groups", responses=returns(Page[Group]))
async def list_groups(
    request: Request,
    limit: Annotated[int, Query(ge=0)] = 100,
    skip: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> JSONResponse:
    groups = services_of(request).groups
    return ok(await groups.list_groups(caller_of(request).app_id, skip, limit))
