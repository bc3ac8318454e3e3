"""Monitoring, for the customer's backend (API Key): contract §3.11."""

from __future__ import annotations

from fastapi import APIRouter, Request

from parley.api.deps import AuthorizedRoute, caller_of, services_of
from parley.api.openapi import Count, returns
from parley.api.responses import JSONResponse, ok
from parley.api.schemas import Envelope

router = APIRouter(
    route_class=AuthorizedRoute, tags=["monitoring"], responses={200: {"model": Envelope}}
)


@router.get(
    "/admin/connection-count",
    summary="Authenticated sockets the application has open, on every node",
    responses=returns(Count),
)
async def connection_count(request: Request) -> JSONResponse:
    presence = services_of(request).presence
    return ok({"count": await presence.connection_count(caller_of(request).app_id)})
