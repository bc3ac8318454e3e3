"""Users and tokens, for the customer's backend (API Key): contract §3.1."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Body, Query

from parley.api.deps import AuthorizedRoute, Caller, Svc
from parley.api.responses import JSONResponse, ok
from parley.api.schemas import ClientBatch, ClientUpsert, Envelope, TokenBind, TokenRevoke
from parley.services.errors import InvalidRequest

router = APIRouter(
    route_class=AuthorizedRoute, tags=["users"], responses={200: {"model": Envelope}}
)


@router.post(
    "/admin/clients", summary="Create or update a user; optionally issue or bind its token"
)
async def upsert_client(body: ClientUpsert, caller: Caller, svc: Svc) -> JSONResponse:
    return ok(await svc.users.upsert(caller.app_id, body.fields()))


@router.post("/admin/clients/list", summary="Create or update many users (no tokens)")
async def upsert_clients(body: ClientBatch, caller: Caller, svc: Svc) -> JSONResponse:
    count = await svc.users.upsert_many(caller.app_id, [c.fields() for c in body.data])
    return ok({"count": count})


@router.get("/admin/clients", summary="List users, with the q filter and paging")
async def list_clients(
    caller: Caller,
    svc: Svc,
    q: Annotated[str | None, Query(max_length=4096)] = None,
    limit: Annotated[int, Query(ge=0)] = 50,
    skip: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> JSONResponse:
    query = None
    if q:
        try:
            query = orjson.loads(q)
        except orjson.JSONDecodeError:
            raise InvalidRequest("q must be a JSON object", code="INVALID_QUERY") from None
    return ok(await svc.users.search(caller.app_id, query, skip, limit))


@router.get("/admin/clients/{client_id}", summary="Show one user")
async def get_client(client_id: str, caller: Caller, svc: Svc) -> JSONResponse:
    return ok(await svc.users.get(caller.app_id, client_id))


@router.put("/admin/clients/{client_id}/token", summary="Bind a token chosen by your backend")
async def bind_token(client_id: str, body: TokenBind, caller: Caller, svc: Svc) -> JSONResponse:
    return ok(await svc.users.bind_token(caller.app_id, client_id, body.token, body.expirationDate))


@router.delete(
    "/admin/clients/{client_id}/token", summary="Revoke one token, or all of a user's tokens"
)
async def revoke_tokens(
    client_id: str,
    caller: Caller,
    svc: Svc,
    body: Annotated[TokenRevoke | None, Body()] = None,
) -> JSONResponse:
    token = body.token if body else None
    return ok(await svc.users.revoke_tokens(caller.app_id, client_id, token))
