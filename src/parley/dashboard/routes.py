"""The dashboard's pages and form actions, as a Starlette app of its own.

Every page is rendered on the server; forms post back and redirect (post/redirect/get),
so reloading a page never repeats an action. Every action calls the same services as the
CLI and the REST API. An app is looked up through its owner first: someone else's app,
like one that does not exist, is a 404.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import parley
from parley.dashboard import charts, csrf, stats
from parley.dashboard.session import (
    PREFIX,
    REVEAL_COOKIE,
    SESSION_COOKIE,
    clear_cookie,
    client_address,
    current_operator,
    is_https,
    public_host,
    services_of,
    session_id,
    set_cookie,
    start_session,
)
from parley.services.apps import AppView
from parley.services.container import Services
from parley.services.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    ParleyError,
    RateLimitExceeded,
)
from parley.services.operators import ENVIRONMENTS, LoginFailed, Operator, OwnedApp

log = logging.getLogger("parley.dashboard")

HERE = Path(__file__).parent
MAX_FORM_BYTES = 64 * 1024
REVEAL_SECONDS = 300  # how long a new API Key waits, in its cookie, for its one showing

# What a redirect's ``?done=`` may say: fixed texts, so a link cannot put words in a page.
NOTICES = {
    "welcome": "Your account is ready.",
    "logged-out": "You have signed out.",
    "password-changed": "Your password has been changed. Other sessions were signed out.",
    "app-created": "The application has been created.",
    "app-deleted": "The application and all its data have been deleted.",
    "saved": "Settings saved.",
    "client-key-revoked": "The Client Key has been revoked. Generate a new one when ready.",
    "client-key-generated": "A new Client Key has been generated.",
    "client-key-rotated": "The Client Key has been rotated.",
    "grace-ended": "Old Client Keys stopped working.",
    "api-key-rotated": "A new API Key has been issued.",
}
GRACE_CHOICES = [
    (0, "None: stop at once"),
    (3600, "1 hour"),
    (86_400, "24 hours"),
    (7 * 86_400, "7 days"),
]

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=jinja2.select_autoescape(["html"], default_for_string=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(ms: int | None) -> str:
    if not ms:
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


TEMPLATES.filters.update(when=_when, number=charts.number, short_day=charts.short_day)


class Redirect(Exception):
    def __init__(self, url: str) -> None:
        self.url = url


# -- request helpers ---------------------------------------------------------------------


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded form, read with a size bound (forms here are small)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "The form is too large.")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPException(400, "The form could not be read.") from exc
    return dict(pairs)


async def signed_in(request: Request) -> Operator:
    operator = await current_operator(request)
    if operator is None:
        raise Redirect(f"{PREFIX}/login")
    return operator


async def posted(request: Request) -> tuple[Operator, dict[str, str]]:
    """A signed-in operator's form post, its CSRF token checked."""
    operator = await signed_in(request)
    form = await read_form(request)
    csrf.check(request, form)
    return operator, form


async def owned(request: Request, operator: Operator) -> OwnedApp:
    app_id = request.path_params["app_id"]
    return await services_of(request).operators.owned_app(operator.id, app_id)


async def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    operator = await current_operator(request)
    values = {
        "operator": operator,
        "csrf": csrf.token(request),
        "path": request.url.path,
        "version": parley.__version__,
        "notice": NOTICES.get(request.query_params.get("done", "")),
        "error": None,
        **context,
    }
    response = HTMLResponse(TEMPLATES.get_template(name).render(values), status_code=status)
    csrf.remember_anon(request, response)
    return response


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def app_url(app_id: str, page: str = "settings") -> str:
    return f"{PREFIX}/apps/{app_id}/{page}"


def chat_server_url(request: Request, app: AppView) -> str:
    """Where the app's SDKs connect: its first domain (or this server's host when it has
    none), with the scheme and port this page was reached by."""
    host = public_host(request)
    name, port = host, ""
    if host.startswith("["):
        name, _, rest = host.partition("]")
        name += "]"
        port = rest.removeprefix(":")
    elif host.count(":") == 1:
        name, port = host.split(":")
    scheme = "https" if is_https(request) else "http"
    if app.domains:
        name = app.domains[0]
    if (scheme, port) in (("http", "80"), ("https", "443")):
        port = ""
    return f"{scheme}://{name}" + (f":{port}" if port else "")


def lines(text: str) -> list[str]:
    return [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]


def grace_of(form: dict[str, str], field: str) -> int:
    try:
        seconds = int(form.get(field, "0"))
    except ValueError:
        seconds = -1
    if seconds not in {s for s, _ in GRACE_CHOICES}:
        raise HTTPException(400, "Choose one of the offered periods.")
    return seconds


# -- accounts ----------------------------------------------------------------------------


async def home(request: Request) -> Response:
    if await current_operator(request) is not None:
        return redirect(f"{PREFIX}/apps")
    operators = services_of(request).operators
    if await operators.count() == 0 and await operators.signup_allowed():
        return redirect(f"{PREFIX}/signup")
    return redirect(f"{PREFIX}/login")


async def login_page(request: Request) -> Response:
    if await current_operator(request) is not None:
        return redirect(f"{PREFIX}/apps")
    return await _login_form(request)


async def _login_form(
    request: Request, status: int = 200, error: str | None = None, email: str = ""
) -> HTMLResponse:
    allowed = await services_of(request).operators.signup_allowed()
    return await render(
        request, "login.html", status, error=error, email=email, signup_allowed=allowed
    )


async def login(request: Request) -> Response:
    await current_operator(request)
    form = await read_form(request)
    csrf.check(request, form)
    email, password = form.get("email", ""), form.get("password", "")
    try:
        _, raw = await services_of(request).operators.log_in(
            email, password, client_address(request), replacing=session_id(request)
        )
    except LoginFailed as exc:
        return await _login_form(request, 400, exc.message, email)
    except RateLimitExceeded as exc:
        refused = await _login_form(
            request, 429, f"Too many sign-in attempts. Try again in {exc.retry_after} s.", email
        )
        refused.headers["Retry-After"] = str(exc.retry_after)
        return refused
    response = redirect(f"{PREFIX}/apps")
    start_session(request, response, raw)
    return response


async def signup_page(request: Request) -> Response:
    if await current_operator(request) is not None:
        return redirect(f"{PREFIX}/apps")
    return await _signup_form(request)


async def _signup_form(
    request: Request, status: int = 200, error: str | None = None, email: str = ""
) -> HTMLResponse:
    operators = services_of(request).operators
    if not await operators.signup_allowed():
        return await render(request, "signup_closed.html", 403)
    first = await operators.count() == 0
    return await render(request, "signup.html", status, error=error, email=email, first=first)


async def signup(request: Request) -> Response:
    await current_operator(request)
    form = await read_form(request)
    csrf.check(request, form)
    operators = services_of(request).operators
    if not await operators.signup_allowed():
        return await render(request, "signup_closed.html", 403)
    email, password = form.get("email", ""), form.get("password", "")
    if password != form.get("confirm", ""):
        return await _signup_form(request, 400, "The two passwords differ.", email)
    try:
        _, raw = await operators.sign_up(email, password, client_address(request))
    except (InvalidRequest, Conflict) as exc:
        return await _signup_form(
            request, 409 if isinstance(exc, Conflict) else 400, exc.message, email
        )
    except RateLimitExceeded as exc:
        return await _signup_form(
            request, 429, f"Too many attempts. Try again in {exc.retry_after} s.", email
        )
    old = session_id(request)
    if old:
        await operators.log_out(old)
    response = redirect(f"{PREFIX}/apps?done=welcome")
    start_session(request, response, raw)
    return response


async def logout(request: Request) -> Response:
    await posted(request)
    raw = session_id(request)
    if raw:
        await services_of(request).operators.log_out(raw)
    response = redirect(f"{PREFIX}/login?done=logged-out")
    clear_cookie(request, response, SESSION_COOKIE)
    return response


async def account_page(request: Request) -> Response:
    await signed_in(request)
    return await render(request, "account.html")


async def change_password(request: Request) -> Response:
    operator, form = await posted(request)
    new = form.get("new_password", "")
    if new != form.get("confirm", ""):
        return await render(request, "account.html", 400, error="The two new passwords differ.")
    try:
        raw = await services_of(request).operators.change_password(
            operator, form.get("current_password", ""), new, client_address(request)
        )
    except LoginFailed:
        return await render(
            request, "account.html", 400, error="The current password is incorrect."
        )
    except InvalidRequest as exc:
        return await render(request, "account.html", 400, error=exc.message)
    except RateLimitExceeded as exc:
        message = f"Too many attempts. Try again in {exc.retry_after} s."
        return await render(request, "account.html", 429, error=message)
    response = redirect(f"{PREFIX}/account?done=password-changed")
    start_session(request, response, raw)
    return response


# -- applications -------------------------------------------------------------------------


async def apps_page(request: Request) -> Response:
    operator = await signed_in(request)
    mine = await services_of(request).operators.apps_of(operator.id)
    cards = [(o, chat_server_url(request, o.app)) for o in mine]
    return await render(request, "apps.html", cards=cards)


async def new_app_page(request: Request) -> Response:
    await signed_in(request)
    return await _new_app_form(request)


async def _new_app_form(
    request: Request, status: int = 200, error: str | None = None, **values: str
) -> HTMLResponse:
    form = {"name": "", "environment": ENVIRONMENTS[0], "domain": "", **values}
    return await render(
        request, "app_new.html", status, error=error, form=form, environments=ENVIRONMENTS
    )


async def create_app(request: Request) -> Response:
    operator, form = await posted(request)
    values = {k: form.get(k, "") for k in ("name", "environment", "domain")}
    try:
        new = await services_of(request).operators.create_app(
            operator.id, values["name"], values["environment"], lines(values["domain"])
        )
    except (InvalidRequest, Conflict) as exc:
        status = 409 if isinstance(exc, Conflict) else 400
        return await _new_app_form(request, status, exc.message, **values)
    response = redirect(app_url(new.app.id) + "?done=app-created")
    _reveal(request, response, new.app.id, new.api_key)
    return response


def _reveal(request: Request, response: Response, app_id: str, api_key: str) -> None:
    """Hand a new API Key to the next settings page, and to it only: a short-lived
    cookie, signed for this session and app, that the page deletes as it shows the key.
    The key is never stored on the server (only its digest is)."""
    tag = services_of(request).operators.sign("reveal", session_id(request) or "", app_id, api_key)
    set_cookie(
        request,
        response,
        REVEAL_COOKIE,
        f"{api_key}.{tag}",
        max_age=REVEAL_SECONDS,
        path=f"{PREFIX}/apps/{app_id}",
        samesite="strict",
    )


def _revealed(request: Request, app_id: str) -> str | None:
    value = request.cookies.get(REVEAL_COOKIE, "")
    api_key, _, tag = value.rpartition(".")
    if not api_key:
        return None
    operators = services_of(request).operators
    if not operators.signature_valid(tag, "reveal", session_id(request) or "", app_id, api_key):
        return None
    return api_key


async def app_root(request: Request) -> Response:
    return redirect(app_url(request.path_params["app_id"]))


async def settings_page(request: Request) -> Response:
    operator = await signed_in(request)
    mine = await owned(request, operator)
    return await _settings(request, mine)


async def _settings(
    request: Request,
    mine: OwnedApp,
    status: int = 200,
    error: str | None = None,
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    svc = services_of(request)
    app = mine.app
    shown_key = _revealed(request, app.id)
    form = form or {
        "name": app.name,
        "environment": mine.environment,
        "domains": "\n".join(app.domains),
        "origins": "\n".join(app.allowed_origins),
    }
    response = await render(
        request,
        "app_settings.html",
        status,
        error=error,
        app=app,
        environment=mine.environment,
        environments=ENVIRONMENTS,
        chat_url=chat_server_url(request, app),
        keys=await stats.key_overview(svc, app.id),
        new_api_key=shown_key,
        form=form,
        tab="settings",
    )
    if request.cookies.get(REVEAL_COOKIE):
        clear_cookie(request, response, REVEAL_COOKIE, path=f"{PREFIX}/apps/{app.id}")
    return response


async def save_settings(request: Request) -> Response:
    operator, form = await posted(request)
    mine = await owned(request, operator)
    svc = services_of(request)
    values = {k: form.get(k, "") for k in ("name", "environment", "domains", "origins")}
    try:
        await svc.apps.update(
            mine.app.id,
            name=values["name"],
            domains=lines(values["domains"]),
            origins=lines(values["origins"]),
        )
        await svc.operators.set_environment(operator.id, mine.app.id, values["environment"])
    except (InvalidRequest, Conflict) as exc:
        status = 409 if isinstance(exc, Conflict) else 400
        return await _settings(request, mine, status, exc.message, values)
    return redirect(app_url(mine.app.id) + "?done=saved")


@dataclass(frozen=True)
class Confirmation:
    """A page that asks before an action that breaks something."""

    title: str
    explanation: str
    button: str
    danger: bool = True
    period_field: str | None = None  # a grace/overlap period to choose
    period_label: str = ""
    type_name: bool = False  # the app's name must be typed


CONFIRMATIONS = {
    "client-key/revoke": Confirmation(
        "Revoke the Client Key?",
        "Every web and mobile app using this Client Key stops working at once: REST "
        "calls are refused with INVALID_CLIENT_KEY and open sockets are closed. Keys "
        "still in a rotation grace period stop too. You can then generate a new key.",
        "Revoke Client Key",
    ),
    "client-key/rotate": Confirmation(
        "Rotate the Client Key?",
        "A new Client Key replaces the current one. During the grace period both keys "
        "work, so you can ship the new key to your apps before the old one stops.",
        "Rotate Client Key",
        danger=False,
        period_field="grace",
        period_label="Grace period for the current key",
    ),
    "api-key/rotate": Confirmation(
        "Rotate the API Key?",
        "A new API Key is issued and shown once. Your backend must switch to it before "
        "the overlap ends: after that, calls with the old key fail with INVALID_API_KEY.",
        "Rotate API Key",
        danger=False,
        period_field="overlap",
        period_label="Overlap: the current key keeps working for",
    ),
    "delete": Confirmation(
        "Delete this application?",
        "The application, its users, rooms, messages, files and keys are deleted for "
        "good. Its keys and user tokens stop working at once. This cannot be undone.",
        "Delete application",
        type_name=True,
    ),
}


async def confirm_page(request: Request) -> Response:
    operator = await signed_in(request)
    mine = await owned(request, operator)
    return await _confirm(request, mine)


async def _confirm(
    request: Request, mine: OwnedApp, status: int = 200, error: str | None = None
) -> HTMLResponse:
    action = request.url.path.removeprefix(f"{PREFIX}/apps/{mine.app.id}/")
    return await render(
        request,
        "confirm.html",
        status,
        error=error,
        app=mine.app,
        environment=mine.environment,
        confirm=CONFIRMATIONS[action],
        action=request.url.path,
        periods=GRACE_CHOICES,
        tab="settings",
    )


async def revoke_client_key(request: Request) -> Response:
    operator, _ = await posted(request)
    mine = await owned(request, operator)
    with contextlib.suppress(NotFound):  # already revoked: the page shows how things are
        await services_of(request).keys.revoke_client_key(mine.app.id)
    return redirect(app_url(mine.app.id) + "?done=client-key-revoked")


async def rotate_client_key(request: Request) -> Response:
    operator, form = await posted(request)
    mine = await owned(request, operator)
    await services_of(request).keys.rotate_client_key(mine.app.id, grace_of(form, "grace"))
    return redirect(app_url(mine.app.id) + "?done=client-key-rotated")


async def generate_client_key(request: Request) -> Response:
    operator, _ = await posted(request)
    mine = await owned(request, operator)
    with contextlib.suppress(Conflict):  # one was generated meanwhile (another tab): keep it
        await services_of(request).keys.generate_client_key(mine.app.id)
    return redirect(app_url(mine.app.id) + "?done=client-key-generated")


async def end_grace(request: Request) -> Response:
    operator, _ = await posted(request)
    mine = await owned(request, operator)
    with contextlib.suppress(NotFound):  # the grace had ended by itself
        await services_of(request).keys.revoke_client_key(mine.app.id, rotated_only=True)
    return redirect(app_url(mine.app.id) + "?done=grace-ended")


async def rotate_api_key(request: Request) -> Response:
    operator, form = await posted(request)
    mine = await owned(request, operator)
    plain = await services_of(request).keys.rotate_api_key(mine.app.id, grace_of(form, "overlap"))
    response = redirect(app_url(mine.app.id) + "?done=api-key-rotated")
    _reveal(request, response, mine.app.id, plain)
    return response


async def delete_app(request: Request) -> Response:
    operator, form = await posted(request)
    mine = await owned(request, operator)
    if form.get("confirm_name", "").strip() != mine.app.name:
        error = "Type the application's name exactly to confirm."
        return await _confirm(request, mine, 400, error)
    await services_of(request).apps.delete(mine.app.id)
    return redirect(f"{PREFIX}/apps?done=app-deleted")


async def usage_page(request: Request) -> Response:
    operator = await signed_in(request)
    mine = await owned(request, operator)
    try:
        days = int(request.query_params.get("days", "30"))
    except ValueError:
        days = 30
    if days not in stats.WINDOWS:
        days = 30
    usage = await stats.app_usage(services_of(request), mine.app.id, days)
    return await render(
        request,
        "app_usage.html",
        app=mine.app,
        environment=mine.environment,
        usage=usage,
        days=days,
        windows=stats.WINDOWS,
        charts=_usage_charts(usage),
        tab="usage",
    )


def _usage_charts(usage: stats.AppUsage) -> dict[str, Any]:
    days = usage.days
    ok = [r - j for r, j in zip(usage.requests, usage.rejected, strict=True)]
    return {
        "requests": charts.bar_chart(
            days,
            [
                charts.Series("accepted", ok, "bar"),
                charts.Series("rejected", usage.rejected, "bar-danger"),
            ],
            label="Requests per day, accepted and rejected",
            unit="requests",
        ),
        "rejections": charts.hbar_list(usage.rejections, label="Rejections by error code"),
        "messages": charts.bar_chart(
            days,
            [charts.Series("messages", usage.messages, "bar")],
            label="Messages per day",
            unit="messages",
        ),
        "active": charts.bar_chart(
            days,
            [charts.Series("active users", usage.active_users, "bar-soft")],
            label="Active users per day",
            unit="active users",
        ),
        "peaks": charts.bar_chart(
            days,
            [charts.Series("peak sockets", usage.peaks, "bar-soft")],
            label="Peak connections per day",
            unit="sockets",
        ),
        "sockets": charts.meter(
            usage.live_sockets,
            max(usage.peak_sockets, usage.live_sockets),
            label=f"{usage.live_sockets} live of a peak of {usage.peak_sockets}",
        ),
        "keys": {
            (k.kind, k.key_id): charts.spark_bars(
                days, k.requests, label=f"Requests per day with {k.label}", unit="requests"
            )
            for k in usage.keys
        },
    }


# -- errors and headers -------------------------------------------------------------------

_TITLES = {
    400: "That did not work",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    413: "Too large",
    429: "Slow down",
}


async def _error_page(request: Request, status: int, message: str) -> Response:
    try:
        return await render(
            request, "error.html", status, title=_TITLES.get(status, "Error"), message=message
        )
    except ParleyError:  # the database is down: a page without the signed-in parts
        return HTMLResponse(f"<h1>{status}</h1>", status_code=status)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if exc.status_code != 404 else "There is no such page here."
    return await _error_page(request, exc.status_code, message)


async def _on_not_found(request: Request, _exc: Exception) -> Response:
    return await _error_page(request, 404, "There is no such page here.")


async def _on_rate_limit(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RateLimitExceeded)
    response = await _error_page(request, 429, exc.message)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def _on_redirect(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Redirect)
    return redirect(exc.url)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.error("dashboard: unhandled %s", exc.__class__.__name__, exc_info=exc)
    return HTMLResponse("<h1>Something went wrong</h1><p>Please try again.</p>", 500)


# Pages may load only Parley's own files; no frames, no inline script or style.
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        static = scope.get("path", "").startswith(f"{PREFIX}/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name for name, _ in headers}
                headers += [h for h in _SECURITY_HEADERS if h[0] not in names]
                if not static and b"cache-control" not in names:
                    # Pages hold keys and the operator's data: never kept by caches.
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_dashboard(services: Services) -> Starlette:
    app_routes = [
        Route("/settings", settings_page),
        Route("/settings", save_settings, methods=["POST"]),
        Route("/usage", usage_page),
        Route("/client-key/revoke", confirm_page),
        Route("/client-key/revoke", revoke_client_key, methods=["POST"]),
        Route("/client-key/rotate", confirm_page),
        Route("/client-key/rotate", rotate_client_key, methods=["POST"]),
        Route("/client-key/generate", generate_client_key, methods=["POST"]),
        Route("/client-key/end-grace", end_grace, methods=["POST"]),
        Route("/api-key/rotate", confirm_page),
        Route("/api-key/rotate", rotate_api_key, methods=["POST"]),
        Route("/delete", confirm_page),
        Route("/delete", delete_app, methods=["POST"]),
    ]
    routes = [
        Route(PREFIX, home),
        Route(f"{PREFIX}/login", login_page),
        Route(f"{PREFIX}/login", login, methods=["POST"]),
        Route(f"{PREFIX}/signup", signup_page),
        Route(f"{PREFIX}/signup", signup, methods=["POST"]),
        Route(f"{PREFIX}/logout", logout, methods=["POST"]),
        Route(f"{PREFIX}/account", account_page),
        Route(f"{PREFIX}/account", change_password, methods=["POST"]),
        Route(f"{PREFIX}/apps", apps_page),
        Route(f"{PREFIX}/apps/new", new_app_page),
        Route(f"{PREFIX}/apps/new", create_app, methods=["POST"]),
        Route(f"{PREFIX}/apps/{{app_id}}", app_root),
        *(
            Route(f"{PREFIX}/apps/{{app_id}}{r.path}", r.endpoint, methods=r.methods)
            for r in app_routes
        ),
        Mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={
            HTTPException: _on_http_error,
            NotFound: _on_not_found,
            RateLimitExceeded: _on_rate_limit,
            Redirect: _on_redirect,
            Exception: _on_unexpected,
        },
    )
    app.state.services = services
    return app


class DashboardFront:
    """``/dashboard`` goes to the dashboard app, before the API's middlewares (which speak
    JSON and reshape request bodies for IMKIT clients); ``/`` leads there too."""

    def __init__(self, dashboard: ASGIApp) -> None:
        self.dashboard = dashboard

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer a request of the dashboard's (True), or leave it to the API (False)."""
        if scope["type"] != "http":
            return False
        path: str = scope["path"]
        if path == PREFIX or path.startswith(PREFIX + "/"):
            await self.dashboard(scope, receive, send)
            return True
        if path == "/" and scope["method"] in ("GET", "HEAD"):
            await RedirectResponse(PREFIX, status_code=307)(scope, receive, send)
            return True
        return False
