"""``POST /rooms/{id}/message`` served beside FastAPI rather than through it.

Sending is the busiest route by far. Through FastAPI each send crossed eleven ASGI layers
(Starlette's error and exception middleware, FastAPI's telemetry, body-limit and exit-stack
layers, Parley's own three, the router), each wrapping ``send`` again: measured with
bench/ingest.py and py-spy, about a third of the event loop's time per send went to the
layers, not to the send. This lane does what those layers do for this one route, in one
function:

- the body limit (Content-Length first, then counted while it streams in): 413;
- the caller authorized before the body is read, with the permission table's access;
- the body taken as JSON whatever its Content-Type (contract §1.1), a trailing slash
  allowed;
- every error in the contract's shape, through the same renderers as the app's handlers,
  an unexpected one logged and answered 500;
- the CORS headers of :data:`CORS` (the middleware gives every other route the same).

The route stays in FastAPI's table (``parley.api.routes.messages``) for the permission
table check and the OpenAPI description; ``tests/api/test_send_route.py`` holds the two to
the same answers.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from parley.api.deps import credentials_from_headers
from parley.api.errors import error_response, parley_error_response, unexpected_error_response
from parley.api.permissions import access_for
from parley.api.responses import JSONResponse, ok
from parley.services.auth import Access
from parley.services.container import Services
from parley.services.errors import InvalidRequest, ParleyError

ROUTE = "/rooms/{room_id}/message"
# Starlette's own match for {room_id} (on the decoded path), plus one trailing slash.
_PATH = re.compile(r"/rooms/([^/]+)/message/?")


class BodyTooLarge(Exception):
    pass


class SendLane:
    def __init__(self, services: Services, max_body_bytes: int, cors: dict[str, Any]) -> None:
        self._svc = services
        self._limit = max_body_bytes
        access = access_for("POST", ROUTE)
        assert access is not None and access is not Access.PUBLIC, "sending needs a caller"
        self._access: Access = access
        self._cors_headers = cors_simple_headers(cors)

    def room_of(self, scope: Scope) -> str | None:
        """The room id when ``scope`` is a send this lane serves, else None."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        match = _PATH.fullmatch(scope["path"])
        if match is None:
            return None
        if scope["path"].endswith("/") and not raw_path_ends_with_slash(scope):
            return None  # "%2F" at the end belongs to the id: FastAPI's 404, as before
        return match.group(1)

    async def serve(self, scope: Scope, receive: Receive, send: Send, room_id: str) -> None:
        headers = scope["headers"]
        try:
            response = await self._respond(scope, receive, headers, room_id)
        except ClientDisconnect:
            return  # nobody to answer
        origin = any(name == b"origin" for name, _ in headers)
        response.headers.update(self._cors_headers if origin else {"Vary": "Origin"})
        await response(scope, receive, send)

    async def _respond(
        self, scope: Scope, receive: Receive, headers: list[tuple[bytes, bytes]], room_id: str
    ) -> JSONResponse:
        if declared_length_exceeds(headers, self._limit):
            return too_large_response(self._limit, "PAYLOAD_TOO_LARGE")
        try:
            creds = credentials_from_headers(headers, self._svc.settings.trust_proxy)
            caller = await self._svc.auth.authenticate(creds, self._access)
            assert caller is not None  # None only for PUBLIC operations
            body = json_of(await self._read_body(receive))
            return ok(await self._svc.messaging.send_in_room(caller, room_id, body))
        except ParleyError as exc:
            return parley_error_response(exc)
        except BodyTooLarge:
            return too_large_response(self._limit, "PAYLOAD_TOO_LARGE", close=False)
        except ClientDisconnect:
            raise
        except Exception as exc:
            return unexpected_error_response(exc)

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._limit:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def json_of(raw: bytes) -> Any:
    """A request body as JSON, whatever its Content-Type said (contract §1.1)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The body must be JSON", code="INVALID_BODY") from None


def declared_length_exceeds(headers: list[tuple[bytes, bytes]], limit: int) -> bool:
    """A Content-Length over ``limit``, or one that is not a number."""
    for name, value in headers:
        if name == b"content-length" and (not value.isdigit() or int(value) > limit):
            return True
    return False


def too_large_response(limit: int, code: str, close: bool = True) -> JSONResponse:
    """413 for a body over ``limit``. A declared length over it closes the connection
    (the body is not read); a body that streamed in past it is answered in place."""
    headers = {"Connection": "close"} if close else None
    return error_response(413, code, f"Request body exceeds {limit} bytes", headers=headers)


def cors_simple_headers(cors: dict[str, Any]) -> dict[str, str]:
    """What Starlette's CORSMiddleware adds to a response to a request with an Origin,
    for the settings ``cors`` (all origins, no credentials: see parley.app)."""
    assert cors["allow_origins"] == ["*"] and not cors.get("allow_credentials")
    headers = {"Access-Control-Allow-Origin": "*", "Vary": "Origin"}
    if cors.get("expose_headers"):
        headers["Access-Control-Expose-Headers"] = ", ".join(cors["expose_headers"])
    return headers


def raw_path_ends_with_slash(scope: Scope) -> bool:
    """A literal slash ends the path ("%2F" is part of an id, not a slash)."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    return raw.split(b"?")[0].endswith(b"/")
