"""The HTTP error table: error code → status, and the handlers that render errors in the
contract's shape ``{"RC": status, "RM": text, "error": CODE, "message": text}``.

Every failure leaves through here; a request never ends in a bare 500 page or a hang.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from parley.api.responses import JSONResponse
from parley.services import errors as e

log = logging.getLogger("parley.api")

# Status by error class; codes of one class share it unless listed in STATUS_BY_CODE.
STATUS_BY_CLASS: list[tuple[type[e.ParleyError], int]] = [
    (e.MissingClientKey, 401),
    (e.InvalidClientKey, 403),
    (e.ClientKeyMismatch, 403),
    (e.MissingApiKey, 401),
    (e.InvalidApiKey, 401),
    (e.InvalidToken, 401),
    (e.InsufficientPermissions, 403),
    (e.RateLimitExceeded, 429),
    (e.InvalidRequest, 400),
    (e.NotFound, 404),
    (e.Conflict, 409),
    (e.TooLarge, 413),
    (e.ServiceUnavailable, 503),
]


def status_of(exc: e.ParleyError) -> int:
    for cls, status in STATUS_BY_CLASS:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"RC": status, "RM": HTTPStatus(status).phrase, "error": code, "message": message}
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers)


async def _parley_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.ParleyError)
    return parley_error_response(exc)


def parley_error_response(exc: e.ParleyError) -> JSONResponse:
    status = status_of(exc)
    if isinstance(exc, e.RateLimitExceeded):
        return error_response(
            status,
            exc.code,
            exc.message,
            headers={"Retry-After": str(exc.retry_after)},
            retryAfter=exc.retry_after,
        )
    if status >= 500:
        return error_response(status, exc.code, exc.message, headers={"Retry-After": "1"})
    return error_response(status, exc.code, exc.message, **exc.extra)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        problems.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    kinds = {err.get("type") for err in exc.errors()}
    code = "INVALID_BODY" if "json_invalid" in kinds else "INVALID_REQUEST"
    return error_response(400, code, "; ".join(problems) or "Invalid request")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    # FastAPI raises a bare 400 for bodies it cannot parse at all (too deep, too long).
    codes = {
        400: "INVALID_BODY",
        404: "NOT_FOUND",
        405: "METHOD_NOT_ALLOWED",
        413: "PAYLOAD_TOO_LARGE",
    }
    code = codes.get(exc.status_code, "HTTP_ERROR")
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:
        # Each method of a path is a route of its own, and the router reports only the
        # methods of the first one it tried: list every method the path takes.
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    return error_response(exc.status_code, code, message, headers=headers)


def _allowed_methods(request: Request) -> str:
    """The methods of the most literal path the request fits (``/rooms/ids`` rather than
    ``/rooms/{room_id}``), over all its routes."""
    routes = [r for r in request.app.router.routes if isinstance(r, Route)]
    fitting = [r.path for r in routes if r.matches(request.scope)[0] is not Match.NONE]
    path = min(fitting, key=lambda p: p.count("{"), default=None)
    methods: set[str] = set()
    for route in routes:
        if route.path == path:
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    return unexpected_error_response(exc)


def unexpected_error_response(exc: Exception) -> JSONResponse:
    log.error("unhandled %s", exc.__class__.__name__, exc_info=exc)
    return error_response(500, "INTERNAL_ERROR", "Internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(e.ParleyError, _parley_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
