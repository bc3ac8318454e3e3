"""Auth guards as FastAPI dependencies: pull credentials out of the headers, look the
route up in the permission table, and ask the auth service for a principal."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute

from parley.api.permissions import access_for
from parley.services.auth import Access, Credentials, Principal
from parley.services.container import Services
from parley.services.errors import InsufficientPermissions, InvalidRequest


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def _header(request: Request, *names: str) -> str | None:
    for name in names:
        value = request.headers.get(name)
        if value:
            return value.strip()
    return None


def host_of(request: Request, trust_proxy: bool) -> str | None:
    raw = _header(request, "x-forwarded-host") if trust_proxy else None
    raw = (raw or _header(request, "host") or "").split(",")[0].strip().lower()
    if raw.startswith("["):  # [::1]:3100
        return raw.split("]")[0] + "]"
    return raw.rsplit(":", 1)[0] if raw.count(":") == 1 else raw or None


def credentials_of(request: Request, trust_proxy: bool) -> Credentials:
    token = _header(request, "im-authorization", "authorization")
    if token and token[:7].lower() == "bearer ":
        token = token[7:].strip()
    return Credentials(
        api_key=_header(request, "im-api-key", "api_key"),
        client_key=_header(request, "im-client-key", "client_key"),
        token=token,
        host=host_of(request, trust_proxy),
        origin=_header(request, "origin"),
        acting_user=_header(request, "im-client-id"),
    )


async def authorize(request: Request, path: str) -> Principal | None:
    access = access_for(request.method, path)
    if access is None:  # fail closed: a route missing from the table serves no one
        raise InsufficientPermissions("This operation is not open to any credential")
    if access is Access.PUBLIC:
        return None
    svc = services(request)
    return await svc.auth.authenticate(credentials_of(request, svc.settings.trust_proxy), access)


class AuthorizedRoute(APIRoute):
    """Every API route authorizes its caller first — before the body is read or
    validated, so an anonymous caller learns nothing but the auth error."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        path = self.path

        async def authorized(request: Request) -> Response:
            request.state.principal = await authorize(request, path)
            return await handler(request)

        return authorized


async def caller(request: Request) -> Principal:
    principal: Principal | None = request.state.principal
    assert principal is not None, "route is in the table as PUBLIC but asks for a caller"
    return principal


async def current_user(principal: Annotated[Principal, Depends(caller)]) -> Principal:
    """A caller that is a user; an API Key caller names the user in ``IM-CLIENT-ID``."""
    if principal.user_id is None:
        raise InvalidRequest(
            "With the API Key, name the user in the IM-CLIENT-ID header",
            code="MISSING_PARAMETER",
        )
    return principal


Svc = Annotated[Services, Depends(services)]
Caller = Annotated[Principal, Depends(caller)]
CurrentUser = Annotated[Principal, Depends(current_user)]
