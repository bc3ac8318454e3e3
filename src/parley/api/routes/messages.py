"""Messages, history and unread counts: contract §3.7 and §3.8. The rules live in
parley.services.messaging, .history and .badges; handlers only pass requests through."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Query, Request
from starlette.requests import ClientDisconnect

from parley.api.deps import AuthorizedRoute, caller_of, services_of
from parley.api.openapi import Count, Message, Page, body_of, returns
from parley.api.responses import JSONResponse, ok
from parley.api.schemas import (
    BadgesByTags,
    BadgesByTagsAndTime,
    BatchSend,
    Envelope,
    HideBySender,
    HideMessages,
    HideRoom,
    ReactionAdd,
    Search,
    SendAs,
    TokenBadges,
)
from parley.api.send_lane import json_of
from parley.services.errors import InvalidRequest

router = APIRouter(
    route_class=AuthorizedRoute, tags=["messages"], responses={200: {"model": Envelope}}
)

AnyBody = Annotated[Any, Body()]


JSON_OBJECT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


def _params(request: Request) -> dict[str, Any]:
    return dict(request.query_params)


async def _json_body(request: Request) -> Any:
    return json_of(await _read_body(request))


async def _read_body(request: Request) -> bytes:
    """The body straight from the ASGI channel (the body limit still applies: it wraps
    the channel). Starlette's ``Request.body()`` reads through an async generator whose
    bookkeeping costs more than the read on the busiest route; nothing reads it again."""
    chunks = []
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


# -- sending and changing ------------------------------------------------------------


async def send_message(request: Request, room_id: str) -> JSONResponse:
    # Served by parley.api.send_lane, beside FastAPI (the busiest route); here for the
    # permission table check and the OpenAPI description, and as what the lane must match.
    body = await _json_body(request)
    messaging = services_of(request).messaging
    return ok(await messaging.send_in_room(caller_of(request), room_id, body))


router.add_api_route(
    "/rooms/{room_id}/message",
    send_message,
    methods=["POST"],
    summary="Send a message; with _id edit it; with messageType recall, recall it",
    openapi_extra=JSON_OBJECT_BODY,
    responses=returns(Message),
)


@router.post(
    "/messages",
    summary="Send a message as any user (API Key)",
    responses=returns(Message),
    openapi_extra=body_of(SendAs),
)
async def send_as(request: Request, body: AnyBody) -> JSONResponse:
    return ok(await services_of(request).messaging.send_as(caller_of(request), body))


@router.post(
    "/messages/batch",
    summary="Queue one message for many rooms or receivers",
    openapi_extra=body_of(BatchSend),
)
async def send_batch(request: Request, body: AnyBody) -> JSONResponse:
    return ok(await services_of(request).batches.submit(caller_of(request), body))


@router.get("/messages/batch", summary="The messages a batch has sent so far")
async def batch_messages(
    request: Request, batchID: Annotated[str | None, Query(max_length=100)] = None
) -> JSONResponse:
    return ok(await services_of(request).batches.sent(caller_of(request), batchID))


@router.delete(
    "/rooms/{room_id}/messages/{message_id}",
    summary="Delete a message (or _all) for everyone",
)
async def delete_message(request: Request, room_id: str, message_id: str) -> JSONResponse:
    messaging = services_of(request).messaging
    result = await messaging.delete(caller_of(request), room_id, message_id)
    return ok(result, rm="Message deleted successfully")


@router.post(
    "/messages/user-delete",
    summary="Hide messages for the caller only",
    openapi_extra=body_of(HideMessages),
)
async def hide_for_me(request: Request, body: AnyBody) -> JSONResponse:
    messaging = services_of(request).messaging
    return ok(await messaging.hide_for_me(caller_of(request), body, everything=False))


@router.post(
    "/messages/user-delete/all-in-room",
    summary="Hide a room's messages for the caller",
    openapi_extra=body_of(HideRoom),
)
async def hide_all_for_me(request: Request, body: AnyBody) -> JSONResponse:
    messaging = services_of(request).messaging
    return ok(await messaging.hide_for_me(caller_of(request), body, everything=True))


@router.get("/messages/user-delete", summary="The messages the caller hid in a room")
async def hidden_for_me(
    request: Request, room: Annotated[str | None, Query(max_length=255)] = None
) -> JSONResponse:
    return ok(await services_of(request).history.hidden_for_me(caller_of(request), room))


@router.post("/messages/{message_id}/pin", summary="Pin a message (one per room)")
async def pin(request: Request, message_id: str) -> JSONResponse:
    messaging = services_of(request).messaging
    return ok(await messaging.set_pinned(caller_of(request), message_id, True))


@router.delete("/messages/{message_id}/pin", summary="Unpin a message")
async def unpin(request: Request, message_id: str) -> JSONResponse:
    messaging = services_of(request).messaging
    return ok(await messaging.set_pinned(caller_of(request), message_id, False))


@router.post(
    "/messages/{message_id}/reaction",
    summary="Add the caller's reaction",
    openapi_extra=body_of(ReactionAdd),
)
async def add_reaction(request: Request, message_id: str, body: AnyBody) -> JSONResponse:
    reaction = body.get("reaction") if isinstance(body, dict) else None
    messaging = services_of(request).messaging
    return ok(await messaging.react(caller_of(request), message_id, reaction, True))


@router.delete("/messages/{message_id}/reaction", summary="Remove the caller's reaction")
async def remove_reaction(
    request: Request,
    message_id: str,
    reaction: Annotated[str | None, Query(max_length=64)] = None,
) -> JSONResponse:
    messaging = services_of(request).messaging
    return ok(await messaging.react(caller_of(request), message_id, reaction, False))


@router.post("/messages/{message_id}/hidden", summary="Hide a message from the room")
async def hide(request: Request, message_id: str) -> JSONResponse:
    messaging = services_of(request).messaging
    return ok(await messaging.set_hidden(caller_of(request), message_id, True))


@router.delete("/messages/{message_id}/hidden", summary="Show a hidden message again")
async def unhide(request: Request, message_id: str) -> JSONResponse:
    messaging = services_of(request).messaging
    return ok(await messaging.set_hidden(caller_of(request), message_id, False))


@router.post(
    "/messages/hide-by-sender-in-room",
    summary="Hide a sender's messages in a room",
    openapi_extra=body_of(HideBySender),
)
async def hide_by_sender(request: Request, body: AnyBody) -> JSONResponse:
    messaging = services_of(request).messaging
    return ok(await messaging.hide_by_sender(caller_of(request), body, True))


@router.post(
    "/messages/unhide-by-sender-in-room",
    summary="Show a sender's messages again",
    openapi_extra=body_of(HideBySender),
)
async def unhide_by_sender(request: Request, body: AnyBody) -> JSONResponse:
    messaging = services_of(request).messaging
    return ok(await messaging.hide_by_sender(caller_of(request), body, False))


# -- reading -------------------------------------------------------------------------


@router.get(
    "/rooms/{room_id}/messages/v3",
    summary="A page of a room's history",
    responses=returns(Page[Message]),
)
async def history_v3(
    request: Request,
    room_id: str,
    limit: Annotated[int | None, Query(ge=0)] = None,
    beforeMessage: Annotated[str | None, Query(max_length=64)] = None,
    afterMessage: Annotated[str | None, Query(max_length=64)] = None,
    afterTime: Annotated[str | None, Query(max_length=40)] = None,
    timeRangeField: Annotated[str | None, Query(max_length=20)] = None,
    sortOrder: Annotated[str | None, Query(max_length=4)] = None,
) -> JSONResponse:
    history = services_of(request).history
    return ok(await history.page(caller_of(request), room_id, _params(request)))


@router.get(
    "/rooms/{room_id}/messages",
    summary="A page of a room's history (deprecated)",
    responses=returns(Page[Message]),
)
async def history_legacy(
    request: Request,
    room_id: str,
    limit: Annotated[int | None, Query(ge=0)] = None,
    beforeMessage: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=4096)] = None,
) -> JSONResponse:
    params = _params(request)
    if q:
        try:
            params["q"] = orjson.loads(q)
        except orjson.JSONDecodeError:
            raise InvalidRequest("q must be JSON", code="INVALID_QUERY") from None
    history = services_of(request).history
    return ok(await history.legacy_page(caller_of(request), room_id, params))


@router.get("/rooms/{room_id}/pined-messages", summary="The room's pinned message")
async def pinned(request: Request, room_id: str) -> JSONResponse:
    return ok(await services_of(request).history.pinned(caller_of(request), room_id))


@router.get(
    "/rooms/{room_id}/messages/pined-messages",
    summary="The room's pinned message (the path of some documentation samples)",
)
async def pinned_alias(request: Request, room_id: str) -> JSONResponse:
    return ok(await services_of(request).history.pinned(caller_of(request), room_id))


@router.get(
    "/rooms/{room_id}/messages/{message_id}",
    summary="Messages around one message",
    responses=returns(Page[Message]),
)
async def window(
    request: Request,
    room_id: str,
    message_id: str,
    before: Annotated[int | None, Query(ge=0)] = None,
    after: Annotated[int | None, Query(ge=0)] = None,
) -> JSONResponse:
    history = services_of(request).history
    return ok(await history.window(caller_of(request), room_id, message_id, _params(request)))


@router.get(
    "/rooms/{room_id}/count",
    summary="How many messages changed after a time",
    responses=returns(Count),
)
async def count(
    request: Request,
    room_id: str,
    timeInMS: Annotated[str | None, Query(max_length=40)] = None,
) -> JSONResponse:
    history = services_of(request).history
    return ok(await history.count_since(caller_of(request), room_id, _params(request)))


@router.get("/messages/recent", summary="The newest messages of the caller's rooms")
async def recent(
    request: Request, limit: Annotated[int | None, Query(ge=0)] = None
) -> JSONResponse:
    return ok(await services_of(request).history.recent(caller_of(request), _params(request)))


@router.get(
    "/admin/messages",
    summary="Every room's messages, newest first (API Key)",
    responses=returns(Page[Message]),
)
async def all_messages(
    request: Request,
    startDate: Annotated[str | None, Query(max_length=40)] = None,
    endDate: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int | None, Query(ge=0)] = None,
) -> JSONResponse:
    history = services_of(request).history
    return ok(await history.all_in_app(caller_of(request), _params(request)))


# -- unread counts -------------------------------------------------------------------


@router.get("/me/badge", summary="The caller's unread total")
async def my_badge(
    request: Request,
    roomTags: Annotated[list[str] | None, Query(max_length=100)] = None,
) -> JSONResponse:
    badges = services_of(request).badges
    return ok(await badges.my_badge(caller_of(request), roomTags or []))


@router.post(
    "/badges/byRoomTags",
    summary="The caller's unread counts per room tag",
    openapi_extra=body_of(BadgesByTags, required=False),
)
async def badges_by_tags(request: Request, body: AnyBody = None) -> JSONResponse:
    return ok(await services_of(request).badges.by_room_tags(caller_of(request), body))


@router.post(
    "/badges/byRoomTagsAndTime",
    summary="The caller's unread counts per room tag, of messages sent before a time",
    openapi_extra=body_of(BadgesByTagsAndTime),
)
async def badges_by_tags_and_time(request: Request, body: AnyBody) -> JSONResponse:
    badges = services_of(request).badges
    return ok(await badges.by_room_tags_and_time(caller_of(request), body))


@router.post(
    "/badges",
    summary="Unread totals of the users of several tokens (Client Key)",
    openapi_extra=body_of(TokenBadges),
)
async def badges_for_tokens(request: Request, body: AnyBody) -> JSONResponse:
    return ok(await services_of(request).badges.for_tokens(caller_of(request), body))


# -- search --------------------------------------------------------------------------


@router.post(
    "/search",
    summary="Search messages, files and rooms the caller can see",
    openapi_extra=body_of(Search),
)
async def search(request: Request, body: AnyBody) -> JSONResponse:
    return ok(await services_of(request).search.search(caller_of(request), body))
