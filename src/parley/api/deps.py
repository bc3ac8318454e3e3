"""Auth guards as FastAPI dependencies: pull credentials out of the headers, look the
route up in the permission table, and ask the auth service for a principal."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request, Response
from fastapi.routing import APIRoute

from parley.api.permissions import SIGNED_URL_ROUTES, access_for
from parley.services.auth import Access, Credentials, Principal
from parley.services.container import Services
from parley.services.errors import InsufficientPermissions, InvalidRequest


def services_of(request: Request) -> Services:
    svc: Services = request.scope["app"].parley_services
    return svc


def _first(headers: dict[bytes, bytes], *names: bytes) -> str | None:
    for name in names:
        value = headers.get(name)
        if value:
            # Clients send UTF-8 (user ids in IM-CLIENT-ID); HTTP's own default is Latin-1.
            try:
                text = value.decode()
            except UnicodeDecodeError:
                text = value.decode("latin-1")
            return text.strip() or None
    return None


def host_of(headers: dict[bytes, bytes], trust_proxy: bool) -> str | None:
    raw = _first(headers, b"x-forwarded-host") if trust_proxy else None
    raw = (raw or _first(headers, b"host") or "").split(",")[0].strip().lower()
    if raw.startswith("["):  # [::1]:3100
        return raw.split("]")[0] + "]"
    return raw.rsplit(":", 1)[0] if raw.count(":") == 1 else raw or None


def origin_of(headers: dict[bytes, bytes], trust_proxy: bool) -> str | None:
    """The Origin to check against the app's allowed Origins: none for a page Parley
    served itself from the host the request went to (the Web URL, ``/chat``), which is
    the app's own domain rather than a foreign site."""
    origin = _first(headers, b"origin")
    if not origin:
        return None
    raw = _first(headers, b"x-forwarded-host") if trust_proxy else None
    host = (raw or _first(headers, b"host") or "").split(",")[0].strip().lower()
    if host and urlsplit(origin).netloc.lower() == host:
        return None
    return origin


def credentials_of(request: Request, trust_proxy: bool) -> Credentials:
    return credentials_from_headers(request.scope["headers"], trust_proxy)


def credentials_from_headers(raw: list[tuple[bytes, bytes]], trust_proxy: bool) -> Credentials:
    """The credentials in an ASGI scope's headers."""
    # One pass over the raw headers (names arrive lower-cased from the ASGI server).
    headers = dict(raw)
    token = _first(headers, b"im-authorization", b"authorization")
    if token and token[:7].lower() == "bearer ":
        token = token[7:].strip()
    return Credentials(
        api_key=_first(headers, b"im-api-key", b"api_key"),
        client_key=_first(headers, b"im-client-key", b"client_key"),
        token=token,
        host=host_of(headers, trust_proxy),
        origin=origin_of(headers, trust_proxy),
        acting_user=_first(headers, b"im-client-id"),
    )


async def authorize(request: Request, path: str) -> Principal | None:
    access = access_for(request.method, path)
    if access is None:  # fail closed: a route missing from the table serves no one
        raise InsufficientPermissions("This operation is not open to any credential")
    if access is Access.PUBLIC:
        return None
    svc = services_of(request)
    creds = credentials_of(request, svc.settings.trust_proxy)
    if (
        not (creds.api_key or creds.client_key)
        and "signature" in request.query_params
        and ("GET" if request.method == "HEAD" else request.method, path) in SIGNED_URL_ROUTES
    ):
        query, params = request.query_params, request.path_params
        return svc.files.signed_caller(
            params["bucket"],
            params["file_id"],
            query.get("appID", ""),
            query.get("expires", ""),
            query["signature"],
        )
    return await svc.auth.authenticate(creds, access)


class AuthorizedRoute(APIRoute):
    """Every API route authorizes its caller first — before the body is read or
    validated, so an anonymous caller learns nothing but the auth error."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        path = self.path

        async def authorized(request: Request) -> Response:
            request.scope["parley.principal"] = await authorize(request, path)
            return await handler(request)

        return authorized


def caller_of(request: Request) -> Principal:
    """The authenticated caller of a non-public route (set by AuthorizedRoute)."""
    principal: Principal | None = request.scope["parley.principal"]
    assert principal is not None, "route is in the table as PUBLIC but asks for a caller"
    return principal


def user_of(request: Request) -> tuple[Principal, str]:
    """The caller and the user it acts as; an API Key caller names the user in
    ``IM-CLIENT-ID``."""
    principal = caller_of(request)
    if principal.user_id is None:
        raise InvalidRequest(
            "With the API Key, name the user in the IM-CLIENT-ID header",
            code="MISSING_PARAMETER",
        )
    return principal, principal.user_id
