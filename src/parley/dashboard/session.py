"""Who is asking: the session cookie, the client's address, and cookie attributes.

Cookies live under ``/dashboard`` only, so API requests never carry them. Each is
HttpOnly and SameSite=Lax, and Secure whenever the page was fetched over HTTPS (directly,
or through a proxy that says so and is trusted: ``PARLEY_TRUST_PROXY``).
"""

from __future__ import annotations

from typing import cast

from starlette.requests import Request
from starlette.responses import Response

from parley.services.container import Services
from parley.services.operators import Operator

PREFIX = "/dashboard"
SESSION_COOKIE = "parley_session"
ANON_COOKIE = "parley_csrf"  # binds the CSRF token of signed-out forms (sign-in, sign-up)
REVEAL_COOKIE = "parley_reveal"  # carries a new API Key to the one page that shows it
_UNKNOWN = object()


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _header(request: Request, name: str) -> str:
    return request.headers.get(name, "").strip()


def is_https(request: Request) -> bool:
    if request.url.scheme == "https":
        return True
    if services_of(request).settings.trust_proxy:
        forwarded = _header(request, "x-forwarded-proto").split(",")[0].strip().lower()
        return forwarded == "https"
    return False


def client_address(request: Request) -> str:
    """The address that sign-in attempts are counted against. Behind a trusted proxy it
    is the last X-Forwarded-For entry: the one the proxy itself added."""
    if services_of(request).settings.trust_proxy:
        hops = [h.strip() for h in _header(request, "x-forwarded-for").split(",") if h.strip()]
        if hops:
            return hops[-1][:64]
    return request.client.host if request.client else "unknown"


def public_host(request: Request) -> str:
    """``host[:port]`` as the browser addressed this server."""
    host = ""
    if services_of(request).settings.trust_proxy:
        host = _header(request, "x-forwarded-host").split(",")[0].strip()
    return (host or _header(request, "host") or "localhost").lower()


def set_cookie(
    request: Request,
    response: Response,
    name: str,
    value: str,
    *,
    max_age: int | None = None,
    path: str = PREFIX,
    samesite: str = "lax",
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        secure=is_https(request),
        samesite=samesite,  # type: ignore[arg-type]
    )


def clear_cookie(request: Request, response: Response, name: str, path: str = PREFIX) -> None:
    response.delete_cookie(name, path=path, httponly=True, secure=is_https(request), samesite="lax")


def session_id(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE) or None


async def current_operator(request: Request) -> Operator | None:
    """The signed-in operator, looked up once per request."""
    if getattr(request.state, "operator", _UNKNOWN) is _UNKNOWN:
        request.state.operator = await services_of(request).operators.session(session_id(request))
    return cast(Operator | None, request.state.operator)


def start_session(request: Request, response: Response, raw: str) -> None:
    hours = services_of(request).settings.dashboard_session_hours
    set_cookie(request, response, SESSION_COOKIE, raw, max_age=int(hours * 3600))
