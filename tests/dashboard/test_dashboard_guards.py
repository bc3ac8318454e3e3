"""Guards that must hold on every dashboard route, checked against the router itself (so a
route added later cannot slip past them): each form post needs its CSRF token, each
application route is out of reach of other accounts. Plus: a Client Key revoked in the
dashboard closes the sockets it opened at once, and no secret reaches the logs."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from parley.dashboard.routes import create_dashboard
from parley.dashboard.session import PREFIX
from tests.conftest import Server, assert_error, issue_token, ok
from tests.dashboard.helpers import (
    PASSWORD,
    client_key_on,
    cookie_attributes,
    create_app,
    csrf_of,
    dashboard_server,
    log_in,
    new_address,
    new_email,
    post_form,
    sign_up,
)

SRC = Path(__file__).resolve().parents[2] / "src" / "parley"
APP_PREFIX = f"{PREFIX}/apps/{{app_id}}"
# Every field any dashboard form has, filled so that the action would succeed if the
# guard under test let it through.
ALL_FIELDS = {
    "name": "taken over",
    "environment": "production",
    "domain": "",
    "domains": "",
    "origins": "",
    "grace": "0",
    "overlap": "0",
    "confirm_name": "Demo",
    "email": "someone@example.com",
    "password": PASSWORD,
    "confirm": PASSWORD,
    "current_password": PASSWORD,
    "new_password": PASSWORD + "!",
}


@pytest.fixture(scope="module")
def dash(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with dashboard_server(
        request, tmp_path_factory.mktemp("dash-guards"), dashboard_signup="open", trust_proxy=True
    ) as node:
        yield node


def dashboard_routes(server: Server) -> list[tuple[str, str]]:
    """(method, path template) of every page and action the dashboard serves."""
    found = []
    for route in create_dashboard(server.services).routes:
        if isinstance(route, Route):
            found += [(m, route.path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return found


def browser(server: Server) -> httpx.Client:
    return server.client(**{"X-Forwarded-For": new_address()})


def test_the_router_has_the_routes_these_tests_expect(dash: Server) -> None:
    """The checks below iterate over the router: make sure they iterate over something."""
    routes = dashboard_routes(dash)
    posts = [path for method, path in routes if method == "POST"]
    app_routes = [path for _, path in routes if path.startswith(APP_PREFIX)]
    assert len(posts) >= 12 and f"{PREFIX}/login" in posts
    assert f"{APP_PREFIX}/client-key/revoke" in posts and f"{APP_PREFIX}/delete" in posts
    assert len(app_routes) >= 12


def test_every_form_post_without_its_token_is_refused(dash: Server) -> None:
    with browser(dash) as owner:
        sign_up(owner, new_email("csrf"))
        app_id, _ = create_app(owner)
        key_before = client_key_on(owner.get(f"{PREFIX}/apps/{app_id}/settings"))
        for method, template in dashboard_routes(dash):
            if method != "POST":
                continue
            path = template.replace("{app_id}", app_id)
            for fields in (ALL_FIELDS, {**ALL_FIELDS, "csrf": "0" * 64}):
                refused = owner.post(path, data=fields)
                assert refused.status_code == 403, f"{path} without a valid token"
        # Nothing happened: still signed in, the app and its Client Key unchanged.
        settings = owner.get(f"{PREFIX}/apps/{app_id}/settings")
        assert settings.status_code == 200
        assert "taken over" not in settings.text
        assert client_key_on(settings) == key_before


def test_every_app_route_is_out_of_reach_of_other_accounts(dash: Server) -> None:
    with browser(dash) as owner, browser(dash) as mallory:
        sign_up(owner, new_email("owner"))
        app_id, api_key = create_app(owner)
        key_before = client_key_on(owner.get(f"{PREFIX}/apps/{app_id}/settings"))
        sign_up(mallory, new_email("mallory"))
        token = csrf_of(mallory.get(f"{PREFIX}/apps"))  # a valid token of her own
        checked = 0
        for method, template in dashboard_routes(dash):
            if not template.startswith(APP_PREFIX):
                continue
            path = template.replace("{app_id}", app_id)
            if method == "GET":
                response = mallory.get(path)
                while response.status_code in (303, 307):  # the app's root leads on
                    response = mallory.get(response.headers["location"])
            else:
                response = mallory.post(path, data={**ALL_FIELDS, "csrf": token})
            assert response.status_code == 404, f"{method} {path}"
            assert app_id not in response.text and "Demo" not in response.text
            checked += 1
        assert checked >= 12
        settings = owner.get(f"{PREFIX}/apps/{app_id}/settings")
        assert "taken over" not in settings.text
        assert client_key_on(settings) == key_before
    with dash.client(**{"IM-API-KEY": api_key}) as backend:
        ok(backend.get("/admin/clients"))


def test_the_cookie_that_carries_a_new_api_key_is_short_lived_and_narrow(dash: Server) -> None:
    """The one-time API Key rides to its page in a cookie: script cannot read it, other
    sites cannot send it, no other page gets it, and the page that shows it deletes it."""
    with browser(dash) as owner:
        sign_up(owner, new_email("reveal"))
        created = post_form(
            owner, f"{PREFIX}/apps/new", {"name": "Demo", "environment": "production"}
        )
        settings_path = created.headers["location"].split("?")[0]
        app_path = settings_path.removesuffix("/settings")
        flags = cookie_attributes(created, "parley_reveal")
        assert "httponly" in flags and flags["samesite"].lower() == "strict"
        assert flags["path"] == app_path
        assert 0 < int(flags["max-age"]) <= 300
        shown = owner.get(created.headers["location"])
        assert "you will not see it again" in shown.text
        gone = cookie_attributes(shown, "parley_reveal")
        assert gone.get("max-age") == "0" or "1970" in gone.get("expires", "")
        assert owner.cookies.get("parley_reveal", path=app_path) is None
        assert "you will not see it again" not in owner.get(settings_path).text


# -- a revoked key stops sockets at once -----------------------------------------------------


@contextmanager
def open_socket(server: Server, client_key: str, token: str) -> Iterator[ClientConnection]:
    """A Socket.IO connection past its CONNECT (auth payload), as the SDKs open it."""
    url = server.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    with ws_connect(url, open_timeout=10) as socket:
        assert str(socket.recv(timeout=10)).startswith("0")  # Engine.IO open
        socket.send("40" + json.dumps({"clientKey": client_key, "token": token}))
        frame = str(socket.recv(timeout=10))
        assert frame.startswith("40"), frame  # connected, not refused
        yield socket


def closed_within(socket: ClientConnection, seconds: float) -> bool:
    """Whether the server ends the connection (or the namespace) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            frame = str(socket.recv(timeout=left))
        except ConnectionClosed:
            return True
        except TimeoutError:
            return False
        if frame == "2":
            socket.send("3")
        elif frame.startswith(("41", "44")):  # DISCONNECT / CONNECT_ERROR
            return True
    return False


def test_revoking_in_the_dashboard_closes_open_sockets_at_once(dash: Server) -> None:
    with browser(dash) as owner:
        sign_up(owner, new_email("sockets"))
        app_id, api_key = create_app(owner)
        client_key = client_key_on(owner.get(f"{PREFIX}/apps/{app_id}/settings"))
        assert client_key
        with dash.client(**{"IM-API-KEY": api_key}) as backend:
            token = issue_token(backend, "socket-user")
        with open_socket(dash, client_key, token) as socket:
            assert not closed_within(socket, 0.3)  # it stays open while the key lives
            revoked = post_form(owner, f"{PREFIX}/apps/{app_id}/client-key/revoke", {})
            assert revoked.status_code == 303
            assert closed_within(socket, 2.0), "the socket outlived its revoked key"
        with dash.client(**{"IM-CLIENT-KEY": client_key, "IM-Authorization": token}) as user:
            assert_error(user.get("/me"), 403, "INVALID_CLIENT_KEY")


# -- secrets stay out of the logs --------------------------------------------------------------


def test_no_secret_reaches_the_logs(dash: Server, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG), browser(dash) as owner:
        email = new_email("logs")
        signed_up = sign_up(owner, email)
        session = signed_up.cookies.get("parley_session")
        app_id, api_key = create_app(owner)
        client_key = client_key_on(owner.get(f"{PREFIX}/apps/{app_id}/settings"))
        rotated = post_form(owner, f"{PREFIX}/apps/{app_id}/api-key/rotate", {"overlap": "0"})
        new_page = owner.get(rotated.headers["location"]).text
        new_api_key = new_page.split('id="api-key-value"')[1].split('value="')[1].split('"')[0]
        token = csrf_of(owner.get(f"{PREFIX}/account"))
        wrong = "not the password at all"
        with browser(dash) as stranger:
            assert log_in(stranger, email, wrong).status_code == 400
    # The test's own HTTP client logs the cookies it receives at DEBUG: proof that the
    # capture would catch a leak. Everything else logged is the server's.
    client_side = ("httpx", "httpcore")
    assert session and session in "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith(client_side)
    ), "the capture is not working"
    logged = "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if not r.name.startswith(client_side)
    )
    secrets_seen = {
        "password": PASSWORD,
        "wrong password": wrong,
        "session id": session,
        "API Key": api_key,
        "rotated API Key": new_api_key,
        "CSRF token": token,
    }
    for what, secret in secrets_seen.items():
        assert secret and secret not in logged, f"the {what} was logged"
    assert client_key  # public, but checked to be real: the flow above did run


# -- every asset is Parley's own ------------------------------------------------------------

# A reference that makes a browser load something: an attribute, a CSS url() or @import, a
# script's fetch/import, pointing at another host (a scheme, or a protocol-relative //).
_FOREIGN = re.compile(
    r"""(?:\b(?:src|href|action|srcset|poster|data)\s*=\s*["']?|url\(\s*["']?|@import\s+["']?"""
    r"""|\b(?:fetch|import|importScripts)\(\s*["'`])(?:[a-z][a-z0-9+.-]*:)?//""",
    re.IGNORECASE,
)


def test_no_template_or_static_file_loads_anything_from_elsewhere() -> None:
    files = [
        *(SRC / "dashboard" / "templates").glob("*.html"),
        *(SRC / "dashboard" / "static").iterdir(),
        *(p for p in (SRC / "web" / "static").iterdir() if p.suffix in (".js", ".css")),
        SRC / "web" / "routes.py",  # writes the Web URL page
    ]
    assert len(files) > 15
    found = {
        f"{path.name}: {match.group(0)}"
        for path in files
        for match in _FOREIGN.finditer(path.read_text(encoding="utf-8"))
    }
    assert found == set()
    # The check does see such a reference when there is one.
    assert _FOREIGN.search('<script src="https://cdn.example.com/x.js">')
    assert _FOREIGN.search("background: url(//fonts.example.com/a.woff2)")
