"""``/sdk/…`` (the Web SDK's files) and ``/chat`` (the Web URL).

These are public, credential-free routes: the files are the same for everyone, and the
Web URL page carries only the public Client Key of the app served on the request's Host
(the user's token stays in the address bar, read by the page's script). They are
:class:`WebRoute`\\ s, not Starlette ``Route``\\ s, so the REST permission table
(``parley.app.check_permission_table``) and ``/openapi.json`` leave them out.
"""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

from sqlalchemy import select
from starlette.datastructures import URLPath
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from parley.api.deps import host_of, services_of
from parley.services.errors import NotFound
from parley.storage.tables import AppDomainRow
from parley.web.assets import Asset, Assets

Endpoint = Callable[[Request], Awaitable[Response]]

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"  # may be stored, but asked about (ETag) before each use
_CSP_ORIGIN = re.compile(
    r"https?://[A-Za-z0-9.\-]+(:\d{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:\d{1,5})?"
)


def _page_policy(frame_origins: list[str]) -> str:
    """The Web URL page's Content-Security-Policy: its own origin and nothing else.
    ``blob:`` images are the pictures of the chat, fetched with the user's credentials
    by the page itself. The app's allowed Origins may frame the page."""
    ancestors = " ".join(["'self'", *(o for o in frame_origins if _CSP_ORIGIN.fullmatch(o))])
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
        "connect-src 'self'; font-src 'self'; media-src 'self' blob:; object-src 'none'; "
        f"base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}"
    )


_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the address holds the user's token
    "X-Content-Type-Options": "nosniff",
}


class WebRoute(BaseRoute):
    """One public page or file at an exact path, for GET and HEAD."""

    def __init__(self, path: str, endpoint: Endpoint, name: str) -> None:
        self.path = path
        self.endpoint = endpoint
        self.name = name

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["path"] != self.path:
            return Match.NONE, {}
        return (Match.FULL if scope["method"] in ("GET", "HEAD") else Match.PARTIAL), {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        if name != self.name or path_params:
            raise NoMatchFound(name, path_params)
        return URLPath(self.path, protocol="http")

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(405, headers={"Allow": "GET, HEAD"})
        response = await self.endpoint(Request(scope, receive))
        await response(scope, receive, send)


@lru_cache(maxsize=1)
def assets() -> Assets:
    return Assets()


# -- /sdk/… --------------------------------------------------------------------------------


def _etag_matches(request: Request, etag: str) -> bool:
    wanted = request.headers.get("if-none-match", "")
    return any(tag.strip().removeprefix("W/") in (etag, "*") for tag in wanted.split(","))


def asset_response(request: Request, asset: Asset, version: str) -> Response:
    """The file, or 304: gzipped when the client takes it; cached for a year when the
    URL names the current version, else revalidated by ETag."""
    packed = asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", "")
    etag = f'"{asset.etag}-gzip"' if packed else f'"{asset.etag}"'
    headers = {
        "ETag": etag,
        "Cache-Control": IMMUTABLE if request.query_params.get("v") == version else REVALIDATE,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
        # Customers' pages load these from another origin, isolated ones included.
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    if _etag_matches(request, etag):
        return Response(status_code=304, headers=headers)
    if packed:
        headers["Content-Encoding"] = "gzip"
    body = asset.gzipped if packed and asset.gzipped is not None else asset.body
    return Response(body, headers=headers, media_type=asset.media_type)


def _file_endpoint(name: str) -> Endpoint:
    async def serve(request: Request) -> Response:
        files = assets()
        asset = files.get(name)
        assert asset is not None, name
        return asset_response(request, asset, files.version)

    return serve


# -- /chat -----------------------------------------------------------------------------------


async def _app_of_host(request: Request) -> tuple[str | None, str | None]:
    """The host the page was asked for and the id of the app whose domain it is."""
    svc = services_of(request)
    host = host_of(dict(request.scope["headers"]), svc.settings.trust_proxy)
    if not host:
        return None, None
    async with svc.db.read() as s:
        app_id = (
            await s.execute(select(AppDomainRow.app_id).where(AppDomainRow.domain == host))
        ).scalar_one_or_none()
    return host, app_id


def _document(title: str, head: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n{head}</head>\n<body>\n{body}</body>\n</html>\n"
    )


def error_page(status: int, title: str, message: str) -> HTMLResponse:
    version = assets().version
    body = (
        '<main class="parley-notice" role="alert">\n'
        f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(message)}</p>\n</main>\n"
    )
    head = f'<link rel="stylesheet" href="/sdk/page.css?v={version}">\n'
    return HTMLResponse(
        _document(title, head, body),
        status_code=status,
        headers={**_PAGE_HEADERS, "Content-Security-Policy": _page_policy([])},
    )


async def chat_page(request: Request) -> Response:
    """The Web URL: the chat of the app served on this Host, for the user whose token
    is in ``?token=`` (read by the page, never written into it)."""
    host, app_id = await _app_of_host(request)
    if app_id is None:
        return error_page(
            404,
            "No chat here",
            f"No application is served at {host or 'this address'}. Open the chat at the "
            "domain of your application (set with: parley app update APP --domain HOST).",
        )
    svc = services_of(request)
    try:
        app = await svc.apps.show(app_id)
    except NotFound:  # deleted since the lookup
        app = None
    if app is None or not app.client_key:
        return error_page(
            503,
            "Chat unavailable",
            "This application has no live Client Key. Its operator can issue one with: "
            "parley client-key generate APP.",
        )
    version = assets().version
    head = (
        f'<meta name="parley-client-key" content="{html.escape(app.client_key)}">\n'
        f'<link rel="stylesheet" href="/sdk/page.css?v={version}">\n'
        f'<script src="/sdk/imkit.js?v={version}" defer></script>\n'
        f'<script src="/sdk/chat.js?v={version}" defer></script>\n'
    )
    body = "<noscript><p>This chat needs JavaScript.</p></noscript>\n"
    headers = {**_PAGE_HEADERS, "Content-Security-Policy": _page_policy(app.allowed_origins)}
    return HTMLResponse(_document(f"{app.name} · Chat", head, body), headers=headers)


def routes() -> list[BaseRoute]:
    """Everything ``parley.web`` serves, for ``create_app`` to add to its route table."""
    files: list[BaseRoute] = [
        WebRoute(f"/sdk/{name}", _file_endpoint(name), f"sdk:{name}") for name in assets().names
    ]
    return [*files, WebRoute("/chat", chat_page, "chat")]
