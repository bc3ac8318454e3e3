"""CSRF protection: every form carries a token that only this server can compute.

The token is an HMAC (a key derived from the master secret) of what identifies the
browser: its session id when signed in, else a random cookie set with the sign-in and
sign-up pages. A cross-site page can make the browser send the cookies but cannot read
them, so it cannot produce the token. A token therefore dies with its session: signing
in, out, or changing the password invalidates forms opened before.
"""

from __future__ import annotations

import secrets

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from parley.dashboard.session import ANON_COOKIE, services_of, session_id, set_cookie

FIELD = "csrf"


def _binding(request: Request) -> str | None:
    if getattr(request.state, "operator", None) is not None:
        return "session:" + (session_id(request) or "")
    anon = request.cookies.get(ANON_COOKIE) or getattr(request.state, "new_anon", None)
    return "anon:" + anon if anon else None


def token(request: Request) -> str:
    """The token for forms on this page (creates the signed-out cookie when needed)."""
    binding = _binding(request)
    if binding is None:
        request.state.new_anon = secrets.token_urlsafe(32)
        binding = "anon:" + request.state.new_anon
    return services_of(request).operators.sign("csrf", binding)


def remember_anon(request: Request, response: Response) -> None:
    """Set the signed-out cookie if :func:`token` just made one."""
    new = getattr(request.state, "new_anon", None)
    if new:
        set_cookie(request, response, ANON_COOKIE, new)


def check(request: Request, form: dict[str, str]) -> None:
    """Refuse (403) a form post whose token is missing or not this browser's."""
    binding = _binding(request)
    sent = form.get(FIELD, "")
    if (
        binding is None
        or not sent
        or not services_of(request).operators.signature_valid(sent, "csrf", binding)
    ):
        raise HTTPException(403, "This form has expired or did not come from this site.")
