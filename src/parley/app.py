"""``create_app(settings)``: the REST API (and later the gateway and dashboard) as one
ASGI app on one port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import parley
from parley.api.deps import AuthorizedRoute
from parley.api.errors import install_error_handlers
from parley.api.openapi import openapi_builder
from parley.api.permissions import access_for
from parley.api.responses import JSONResponse
from parley.api.routes import (
    clients,
    files,
    groups,
    health,
    me,
    messages,
    monitoring,
    prefs,
    rooms,
)
from parley.api.routes.files import FILE_HEADERS, UPLOAD_FORM_BYTES
from parley.api.send_lane import (
    SendLane,
    declared_length_exceeds,
    raw_path_ends_with_slash,
    too_large_response,
)
from parley.config import Settings
from parley.dashboard import DashboardFront, create_dashboard
from parley.gateway.server import PATHS as GATEWAY_PATHS
from parley.gateway.server import Gateway
from parley.services.container import Services
from parley.web import routes as web_routes  # Web SDK


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    settings = settings or Settings()
    svc = services or Services(settings)
    gateway = Gateway(
        svc,
        max_payload=settings.max_body_bytes,
        ping_interval=settings.socket_ping_interval,
        ping_timeout=settings.socket_ping_timeout,
        connect_timeout=settings.socket_connect_timeout,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        gateway.attach()  # before the broker starts: see parley.broker.base
        await svc.start()
        try:
            yield
        finally:
            await gateway.close()
            await svc.close()

    app = ParleyApp(
        title="Parley",
        version=parley.__version__,
        description="A self-hostable chat server that speaks the IMKIT Platform API.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
        redirect_slashes=False,
        # IMKIT clients send JSON with odd Content-Types (Flutter: the file's type; some
        # empty POSTs as form data): the body decides, not the header (contract §1.1).
        strict_content_type=False,
    )
    # A plain attribute rather than app.state: read on every request (see bench/auth.py).
    app.parley_services = svc  # type: ignore[attr-defined]
    install_error_handlers(app)
    for module in (health, messages, me, clients, groups, rooms, prefs, files, monitoring):
        # Routes join the app's own table rather than nested routers: one level of
        # matching per request instead of three (see bench/auth.py). Matching walks the
        # table in order, so the busiest routes (sending, history) come first.
        app.router.routes.extend(module.router.routes)
    check_permission_table(app)
    app.openapi = openapi_builder(app)  # type: ignore[method-assign]
    # Web SDK (/sdk/imkit.js, …) and Web URL (/chat): public pages, not REST operations,
    # so they join after the permission-table check and stay out of /openapi.json.
    app.router.routes.extend(web_routes())

    app.add_middleware(CORSMiddleware, **CORS)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        upload_bytes=settings.max_file_bytes + UPLOAD_FORM_BYTES,
    )
    app.add_middleware(ImkitCompat)
    # The operators' dashboard: pages under /dashboard, outside the API's route table,
    # middlewares and OpenAPI schema (see parley.dashboard).
    app.parley_dashboard = DashboardFront(create_dashboard(svc))
    app.parley_gateway = gateway
    app.parley_send_lane = SendLane(svc, settings.max_body_bytes, CORS)
    return app


CORS: dict[str, Any] = {
    "allow_origins": ["*"],  # the Client Key check decides per app which Origins may call
    "allow_methods": ["*"],
    "allow_headers": ["*"],
    # File metadata travels in headers (HEAD /files/...): let browser code read it.
    "expose_headers": FILE_HEADERS,
    "max_age": 600,
}


class ParleyApp(FastAPI):
    """The FastAPI app, with ``/socket.io/`` going to the real-time gateway, sends
    (``POST /rooms/{id}/message``) to their own lane and ``/dashboard`` to the operators'
    pages before FastAPI and its middleware stack: a socket's handshake crosses none of
    them (nor do their frames stay on its handler's stack for the socket's whole life),
    a send crosses one function instead of eleven layers (see parley.api.send_lane), and
    an API request crosses no dashboard layer."""

    parley_gateway: Gateway
    parley_send_lane: SendLane
    parley_dashboard: DashboardFront

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"] in GATEWAY_PATHS:
            await self.parley_gateway(scope, receive, send)
            return
        room_id = self.parley_send_lane.room_of(scope)
        if room_id is not None:
            await self.parley_send_lane.serve(scope, receive, send, room_id)
            return
        if await self.parley_dashboard.serve(scope, receive, send):
            return
        await super().__call__(scope, receive, send)


def _leaf_routes(routes: list[Any]) -> list[Any]:
    # Included routers keep their own route list (FastAPI ≥ 0.165); routers here carry
    # no prefix, so each route's path is already the full path.
    leaves = []
    for route in routes:
        nested = getattr(route, "original_router", None)
        leaves.extend(_leaf_routes(nested.routes) if nested is not None else [route])
    return leaves


def route_operations(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app serves."""
    operations = []
    for route in _leaf_routes(app.routes):
        if isinstance(route, APIRoute | Route):
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    operations.append((method, route.path))
    return operations


def check_permission_table(app: FastAPI) -> None:
    """Refuse to start with a route that has no entry in the table, or an API route that
    does not authorize (documentation routes are the only public plain routes)."""
    missing = [op for op in route_operations(app) if access_for(*op) is None]
    if missing:
        raise RuntimeError(f"Routes missing from the permission table: {missing}")
    unguarded = [
        route.path
        for route in _leaf_routes(app.routes)
        if isinstance(route, APIRoute) and not isinstance(route, AuthorizedRoute)
    ]
    if unguarded:
        raise RuntimeError(f"API routes that skip authorization: {unguarded}")


class ImkitCompat:
    """Request quirks of IMKIT clients (contract §1.1), smoothed before routing:

    - ``/rooms/`` is ``/rooms``: clients send both.
    - A body is JSON whatever the Content-Type says (curl's form default, Flutter's file
      type, ``text/plain``); only multipart bodies (file uploads) are left alone.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            # One literal slash ("/x//" stays distinct).
            if len(path) > 1 and raw_path_ends_with_slash(scope):
                scope = dict(scope, path=path[:-1])
            headers = scope["headers"]
            content_type = next((v for k, v in headers if k == b"content-type"), b"")
            if not content_type.startswith((b"multipart/", b"application/json")):
                scope = dict(
                    scope,
                    headers=[
                        *(h for h in headers if h[0] != b"content-type"),
                        (b"content-type", b"application/json"),
                    ],
                )
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuse request bodies over the limit with 413, before they are read into memory.
    File uploads (``POST /files/{bucket}``) have a limit of their own: the file's plus
    room for the form around it."""

    def __init__(self, app: ASGIApp, max_bytes: int, upload_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes or max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        upload = (
            scope["method"] == "POST"
            and path.startswith("/files/")
            and path.count("/") == 2
            and path != "/files/stats"
        )
        limit = self.upload_bytes if upload else self.max_bytes
        code = "FILE_TOO_LARGE" if upload else "PAYLOAD_TOO_LARGE"
        if declared_length_exceeds(scope["headers"], limit):
            await too_large_response(limit, code)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            # A chunked body without Content-Length: count as it streams in. The error
            # handlers render this as the same 413.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"Request body exceeds {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


def app_factory() -> Any:
    """For ``uvicorn parley.app:app_factory --factory``: settings from the environment."""
    return create_app()
