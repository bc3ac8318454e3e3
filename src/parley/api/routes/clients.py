"""Users and tokens, for the customer's backend (API Key): contract §3.1."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Body, Query, Request

from parley.api.deps import AuthorizedRoute, caller_of, services_of
from parley.api.openapi import Client, Count, Page, returns
from parley.api.responses import JSONResponse, ok
from parley.api.schemas import ClientBatch, ClientUpsert, Envelope, TokenBind, TokenRevoke
from parley.services.errors import InvalidRequest

router = APIRouter(
    route_class=AuthorizedRoute, tags=["users"], responses={200: {"model": Envelope}}
)


@router.post(
    "/admin/clients",
    summary="Create or update a user; issue or bind its token",
    responses=returns(Client),
)
async def upsert_client(request: Request, body: ClientUpsert) -> JSONResponse:
    app_id = caller_of(request).app_id
    return ok(await services_of(request).users.upsert(app_id, body.fields()))


@router.post(
    "/admin/clients/list",
    summary="Create or update many users (no tokens)",
    responses=returns(Count),
)
async def upsert_clients(request: Request, body: ClientBatch) -> JSONResponse:
    app_id = caller_of(request).app_id
    count = await services_of(request).users.upsert_many(app_id, [c.fields() for c in body.data])
    return ok({"count": count})


@router.get(
    "/admin/clients",
    summary="List users, with the q filter and paging",
    responses=returns(Page[Client]),
)
async def list_clients(
    request: Request,
    q: Annotated[str | None, Query(max_length=4096)] = None,
    limit: Annotated[int, Query(ge=0)] = 50,
    skip: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> JSONResponse:
    query = None
    if q:
        try:
            query = orjson.loads(q)
        except orjson.JSONDecodeError:
            query = None
        if not isinstance(query, dict):
            raise InvalidRequest("q must be a JSON object", code="INVALID_QUERY")
    app_id = caller_of(request).app_id
    svc = services_of(request)
    page = await svc.users.search(app_id, query, skip, limit)
    await svc.presence.annotate(app_id, page["data"], last_active=True)
    return ok(page)


@router.get("/admin/clients/{client_id}", summary="Show one user", responses=returns(Client))
async def get_client(request: Request, client_id: str) -> JSONResponse:
    svc, app_id = services_of(request), caller_of(request).app_id
    profile = await svc.users.get(app_id, client_id)
    await svc.presence.annotate(app_id, [profile], last_active=True)
    return ok(profile)


@router.put("/admin/clients/{client_id}/token", summary="Bind a token chosen by your backend")
async def bind_token(request: Request, client_id: str, body: TokenBind) -> JSONResponse:
    app_id = caller_of(request).app_id
    users = services_of(request).users
    return ok(await users.bind_token(app_id, client_id, body.token, body.expirationDate))


@router.delete("/admin/clients/{client_id}/token", summary="Revoke one or all of a user's tokens")
async def revoke_tokens(
    request: Request,
    client_id: str,
    body: Annotated[TokenRevoke | None, Body()] = None,
) -> JSONResponse:
    app_id = caller_of(request).app_id
    token = body.token if body else None
    return ok(await services_of(request).users.revoke_tokens(app_id, client_id, token))
