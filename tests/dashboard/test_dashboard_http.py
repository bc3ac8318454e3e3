"""The dashboard's accounts and forms over plain HTTP: CSRF, sessions, passwords, sign-in
limits, sign-up modes, cookie flags, tenancy, and what the pages show."""

from __future__ import annotations

import asyncio
import html
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from parley.app import route_operations
from parley.dashboard import charts
from parley.storage.db import run_migrations
from parley.storage.tables import OperatorRow
from tests.conftest import (
    DATABASE_URL,
    Server,
    assert_error,
    issue_token,
    ok,
    start_of_a_fresh_window,
)
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
    session_cookie,
    sign_up,
    signed_in,
)

ACCOUNT_ATTEMPTS = 5
ADDRESS_ATTEMPTS = 8


@pytest.fixture(scope="module")
def dash(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Open sign-up, a trusted proxy (so each test names its own client address), and
    low sign-in limits over one-minute windows."""
    with dashboard_server(
        request,
        tmp_path_factory.mktemp("dash"),
        dashboard_signup="open",
        trust_proxy=True,
        dashboard_login_attempts=ACCOUNT_ATTEMPTS,
        dashboard_login_attempts_per_ip=ADDRESS_ATTEMPTS,
        dashboard_login_window_seconds=60,
    ) as node:
        yield node


def browser(server: Server, address: str | None = None, **headers: str) -> httpx.Client:
    """A client that keeps cookies, from an address of its own."""
    return server.client(**{"X-Forwarded-For": address or new_address(), **headers})


def operator_with_app(server: Server) -> tuple[httpx.Client, str, str, str]:
    """A signed-in operator with one app: (client, email, app id, API Key)."""
    client = browser(server)
    email = new_email()
    sign_up(client, email)
    app_id, api_key = create_app(client)
    return client, email, app_id, api_key


# -- CSRF -----------------------------------------------------------------------------------


def test_a_form_without_the_right_csrf_token_is_refused(dash: Server) -> None:
    with browser(dash) as alice, browser(dash) as bob:
        sign_up(alice, new_email("alice"))
        sign_up(bob, new_email("bob"))
        form = {"name": "Forged", "environment": "production", "domain": ""}
        assert alice.post("/dashboard/apps/new", data=form).status_code == 403
        wrong = {**form, "csrf": "0" * 64}
        assert alice.post("/dashboard/apps/new", data=wrong).status_code == 403
        # A token is bound to its session: Bob's page gives no token for Alice's session.
        bobs = {**form, "csrf": csrf_of(bob.get("/dashboard/apps/new"))}
        assert alice.post("/dashboard/apps/new", data=bobs).status_code == 403
        assert "Forged" not in alice.get("/dashboard/apps").text

        right = {**form, "csrf": csrf_of(alice.get("/dashboard/apps/new"))}
        assert alice.post("/dashboard/apps/new", data=right).status_code == 303
        assert "Forged" in alice.get("/dashboard/apps").text


def test_signed_out_forms_need_their_token_too(dash: Server) -> None:
    email = new_email()
    with browser(dash) as client:
        sign_up(client, email)
    with browser(dash) as client:
        fields = {"email": email, "password": PASSWORD}
        assert client.post("/dashboard/login", data=fields).status_code == 403
        client.get("/dashboard/login")  # sets the signed-out cookie...
        refused = client.post("/dashboard/login", data={**fields, "csrf": "x" * 64})
        assert refused.status_code == 403  # ...but a token it did not sign is still refused
        assert log_in(client, email).status_code == 303
        assert signed_in(client)


def test_logging_out_needs_the_token(dash: Server) -> None:
    with browser(dash) as client:
        sign_up(client, new_email())
        assert client.post("/dashboard/logout").status_code == 403
        assert signed_in(client)


# -- sessions --------------------------------------------------------------------------------


def test_the_session_id_changes_at_sign_in(dash: Server) -> None:
    """Session fixation: an id planted in the browser before sign-in is never promoted."""
    email = new_email()
    with browser(dash) as client:
        sign_up(client, email)
    with browser(dash) as victim:
        planted = "attacker-chosen-session-id-0123456789"
        victim.cookies.set("parley_session", planted, domain="127.0.0.1", path="/dashboard")
        signed = log_in(victim, email)
        assert signed.status_code == 303
        first = session_cookie(signed)
        assert first and first != planted
        assert signed_in(victim)

        # Signing in again (a login form left open in another tab) issues yet another id.
        again = post_form(
            victim,
            "/dashboard/login",
            {"email": email, "password": PASSWORD},
            page="/dashboard/apps",
        )
        assert again.status_code == 303
        second = session_cookie(again)
        assert second and second not in (first, planted)
    with browser(dash) as attacker:
        for old in (planted, first):
            attacker.cookies.set("parley_session", old, domain="127.0.0.1", path="/dashboard")
            assert not signed_in(attacker)


def test_an_old_cookie_is_dead_after_logout(dash: Server) -> None:
    with browser(dash) as client:
        raw = session_cookie(sign_up(client, new_email()))
        assert raw and signed_in(client)
        out = post_form(client, "/dashboard/logout", {}, page="/dashboard/apps")
        assert out.status_code == 303
        assert out.headers["location"] == "/dashboard/login?done=logged-out"
        assert cookie_attributes(out, "parley_session").get("max-age") == "0"
        assert not signed_in(client)
    with browser(dash) as replay:
        replay.cookies.set("parley_session", raw, domain="127.0.0.1", path="/dashboard")
        assert not signed_in(replay)


def test_changing_the_password(dash: Server) -> None:
    email, new_password = new_email(), "another long passphrase"
    with browser(dash) as client, browser(dash) as elsewhere:
        sign_up(client, email)
        assert log_in(elsewhere, email).status_code == 303

        wrong = post_form(
            client,
            "/dashboard/account",
            {
                "current_password": "not it at all",
                "new_password": new_password,
                "confirm": new_password,
            },
        )
        assert wrong.status_code == 400
        assert "current password is incorrect" in wrong.text

        changed = post_form(
            client,
            "/dashboard/account",
            {"current_password": PASSWORD, "new_password": new_password, "confirm": new_password},
        )
        assert changed.status_code == 303
        assert session_cookie(changed)  # this browser gets a fresh session...
        assert signed_in(client)
        assert not signed_in(elsewhere)  # ...every other one is signed out

    with browser(dash) as client:
        old = log_in(client, email, PASSWORD)
        assert old.status_code == 400
        assert "email or password is incorrect" in old.text
        assert log_in(client, email, new_password).status_code == 303


def test_a_short_password_is_refused(dash: Server) -> None:
    with browser(dash) as client:
        response = post_form(
            client,
            "/dashboard/signup",
            {"email": new_email(), "password": "short", "confirm": "short"},
        )
        assert response.status_code == 400
        assert "at least 10 characters" in response.text


# -- sign-in limits ---------------------------------------------------------------------------


def test_sign_in_attempts_are_limited_per_account(dash: Server) -> None:
    email = new_email()
    dash.call(lambda s: s.operators.create(email, PASSWORD))
    start_of_a_fresh_window()
    for _ in range(ACCOUNT_ATTEMPTS):
        with browser(dash) as client:  # a new address each time: only the account counts
            assert log_in(client, email, "wrong password!").status_code == 400
    with browser(dash) as client:
        refused = log_in(client, email)  # the right password, too late
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert "Too many sign-in attempts" in refused.text
        assert session_cookie(refused) is None
        assert not signed_in(client)


def test_sign_in_attempts_are_limited_per_address(dash: Server) -> None:
    emails = [new_email() for _ in range(3)]
    for email in emails:
        dash.call(lambda s, email=email: s.operators.create(email, PASSWORD))
    address = new_address()
    start_of_a_fresh_window()
    with browser(dash, address) as client:
        for attempt in range(ADDRESS_ATTEMPTS):
            email = emails[attempt % 2]  # under each account's own limit
            assert log_in(client, email, "wrong password!").status_code == 400
        assert log_in(client, emails[2]).status_code == 429
    with browser(dash) as elsewhere:  # another address is not held back
        assert log_in(elsewhere, emails[2]).status_code == 303


# -- sign-up modes ----------------------------------------------------------------------------


def test_sign_up_closed_by_config(
    request: pytest.FixtureRequest, tmp_path: Path, fresh_database: str
) -> None:
    with (
        dashboard_server(
            request, tmp_path, database_url=fresh_database, dashboard_signup="closed"
        ) as node,
        node.client() as client,
    ):
        home = client.get("/dashboard")
        assert home.headers["location"] == "/dashboard/login"
        page = client.get("/dashboard/signup")
        assert page.status_code == 403
        assert "Sign-up is closed" in page.text
        assert "Create an account" not in client.get("/dashboard/login").text
        token = csrf_of(client.get("/dashboard/login"))
        fields = {"csrf": token, "email": new_email(), "password": PASSWORD, "confirm": PASSWORD}
        assert client.post("/dashboard/signup", data=fields).status_code == 403
        assert node.call(lambda s: s.operators.count()) == 0


def test_a_fresh_server_offers_the_first_sign_up_only(
    request: pytest.FixtureRequest, tmp_path: Path, fresh_database: str
) -> None:
    with dashboard_server(request, tmp_path, database_url=fresh_database) as node:
        existing = node.new_app("made with the CLI")  # no owner yet
        with node.client() as first:
            assert first.get("/dashboard").headers["location"] == "/dashboard/signup"
            page = first.get("/dashboard/signup")
            assert "the first one you create here" in page.text
            sign_up(first, new_email("first"))
            # The first account adopts the apps that had no owner.
            assert existing.id in first.get("/dashboard/apps").text
        with node.client() as second:
            assert second.get("/dashboard").headers["location"] == "/dashboard/login"
            assert second.get("/dashboard/signup").status_code == 403
            token = csrf_of(second.get("/dashboard/login"))
            fields = {
                "csrf": token,
                "email": new_email(),
                "password": PASSWORD,
                "confirm": PASSWORD,
            }
            assert second.post("/dashboard/signup", data=fields).status_code == 403
        assert node.call(lambda s: s.operators.count()) == 1


@pytest.fixture
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, migrated database of the run's kind, for tests that need no operators."""
    if not DATABASE_URL:
        url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        run_migrations(url)
        yield url
        return
    from tests.storage.test_migrations import fresh_postgres_database

    with fresh_postgres_database(DATABASE_URL, "parley_dash") as url:
        run_migrations(url)
        yield url


# -- cookies and storage ------------------------------------------------------------------------


def test_cookie_flags(dash: Server) -> None:
    with browser(dash) as client:
        anon = cookie_attributes(client.get("/dashboard/login"), "parley_csrf")
        assert "httponly" in anon and anon["samesite"].lower() in ("lax", "strict")
        plain = sign_up(client, new_email())
        flags = cookie_attributes(plain, "parley_session")
        assert "httponly" in flags
        assert flags["samesite"].lower() in ("lax", "strict")
        assert flags["path"] == "/dashboard"
        assert "secure" not in flags  # plain HTTP: a Secure cookie would never come back


def test_cookies_are_secure_behind_tls(dash: Server) -> None:
    """Behind a trusted proxy that terminates TLS (X-Forwarded-Proto: https). The test
    client speaks plain HTTP, so it hands the Secure cookie back by hand."""
    with browser(dash, **{"X-Forwarded-Proto": "https"}) as client:
        page = client.get("/dashboard/signup")
        anon = cookie_attributes(page, "parley_csrf")
        assert "secure" in anon and "httponly" in anon
        value = page.headers["set-cookie"].split(";")[0]
        password = {"password": PASSWORD, "confirm": PASSWORD}
        signed = client.post(
            "/dashboard/signup",
            data={"csrf": csrf_of(page), "email": new_email(), **password},
            headers={"Cookie": value},
        )
        assert signed.status_code == 303, signed.text
        flags = cookie_attributes(signed, "parley_session")
        assert {"secure", "httponly"} <= set(flags)
        assert flags["samesite"].lower() in ("lax", "strict")


def test_forwarded_proto_is_ignored_without_trust_proxy(tmp_path: Path) -> None:
    """As `parley run` serves it (the in-process test servers let uvicorn believe proxy
    headers from 127.0.0.1, which `parley run` does only with PARLEY_TRUST_PROXY)."""
    from tests.cli.test_cli import ServerProcess, parley_env

    env = parley_env(tmp_path, PARLEY_SECRET_KEY="s" * 64)
    node = ServerProcess(env, tmp_path / "server.log").wait_ready()
    try:
        page = httpx.get(node.url + "/dashboard/login", headers={"X-Forwarded-Proto": "https"})
        assert "secure" not in cookie_attributes(page, "parley_csrf")
    finally:
        node.stop()


def test_passwords_are_stored_as_argon2id(dash: Server) -> None:
    email = new_email()
    with browser(dash) as client:
        sign_up(client, email)

    async def stored(svc: object) -> str:
        async with svc.db.read() as s:  # type: ignore[attr-defined]
            row = await s.execute(
                select(OperatorRow.password_hash).where(OperatorRow.email == email)
            )
            return str(row.scalar_one())

    password_hash = dash.call(stored)
    assert password_hash.startswith("$argon2id$")
    assert PASSWORD not in password_hash
    assert PasswordHasher().verify(password_hash, PASSWORD)


# -- tenancy --------------------------------------------------------------------------------------


APP_PAGES = [
    "settings",
    "usage",
    "client-key/revoke",
    "client-key/rotate",
    "api-key/rotate",
    "delete",
]
APP_ACTIONS = [
    "settings",
    "client-key/revoke",
    "client-key/rotate",
    "client-key/generate",
    "client-key/end-grace",
    "api-key/rotate",
    "delete",
]


def test_another_account_cannot_see_or_touch_an_app(dash: Server) -> None:
    alice, _, app_id, api_key = operator_with_app(dash)
    with closing(alice), browser(dash) as mallory:
        sign_up(mallory, new_email("mallory"))
        assert app_id not in mallory.get("/dashboard/apps").text
        token = csrf_of(mallory.get("/dashboard/apps"))  # a valid token of her own
        for page in APP_PAGES:
            assert mallory.get(f"/dashboard/apps/{app_id}/{page}").status_code == 404, page
        fields = {
            "csrf": token,
            "name": "taken over",
            "environment": "production",
            "domains": "",
            "origins": "",
            "grace": "0",
            "overlap": "0",
            "confirm_name": "Demo",
        }
        for action in APP_ACTIONS:
            response = mallory.post(f"/dashboard/apps/{app_id}/{action}", data=fields)
            assert response.status_code == 404, action
        # Alice's app is as it was: same name, same keys.
        settings = alice.get(f"/dashboard/apps/{app_id}/settings")
        assert "taken over" not in settings.text
        client_key = client_key_on(settings)
        assert client_key
        with dash.client(**{"IM-API-KEY": api_key}) as backend:
            token = issue_token(backend, "alice-user")
        headers = {"IM-CLIENT-KEY": client_key, "IM-Authorization": token}
        with dash.client(**headers) as user:
            ok(user.get("/me"))


def test_an_unknown_app_is_a_404_page(dash: Server) -> None:
    with browser(dash) as client:
        sign_up(client, new_email())
        page = client.get("/dashboard/apps/00000000-0000-0000-0000-000000000000/settings")
        assert page.status_code == 404
        assert "text/html" in page.headers["content-type"]


# -- keys --------------------------------------------------------------------------------------


def test_the_api_key_is_shown_once(dash: Server) -> None:
    client, _, app_id, api_key = operator_with_app(dash)
    with closing(client):
        again = client.get(f"/dashboard/apps/{app_id}/settings")
        assert api_key not in again.text
        display = html.escape(f"{api_key[:9]}…{api_key[-4:]}")
        assert display in again.text

        rotated = post_form(
            client,
            f"/dashboard/apps/{app_id}/api-key/rotate",
            {"overlap": "0"},
        )
        assert rotated.status_code == 303
        first_view = client.get(rotated.headers["location"])
        assert "you will not see it again" in first_view.text
        new_key = first_view.text.split('id="api-key-value"')[1].split('value="')[1].split('"')[0]
        assert new_key.startswith("prly_") and new_key != api_key
        assert new_key not in client.get(f"/dashboard/apps/{app_id}/settings").text
    with dash.client(**{"IM-API-KEY": api_key}) as old:
        assert_error(old.get("/admin/clients"), 401, "INVALID_API_KEY")
    with dash.client(**{"IM-API-KEY": new_key}) as new:
        ok(new.get("/admin/clients"))


def test_a_reveal_cookie_works_only_for_its_session(dash: Server) -> None:
    alice, email, app_id, _ = operator_with_app(dash)
    with closing(alice):
        rotated = post_form(alice, f"/dashboard/apps/{app_id}/api-key/rotate", {"overlap": "0"})
        kept = alice.cookies.get("parley_reveal", path=f"/dashboard/apps/{app_id}")
        assert kept
        # Signing in again gives the same browser a new session: the cookie is no good there.
        assert log_in(alice, email, page="/dashboard/apps").status_code == 303
        page = alice.get(rotated.headers["location"])
        assert "you will not see it again" not in page.text
        assert kept.split(".")[0] not in page.text


def test_revoke_generate_and_rotate_with_grace(dash: Server) -> None:
    client, _, app_id, api_key = operator_with_app(dash)
    with closing(client), dash.client(**{"IM-API-KEY": api_key}) as backend:
        token = issue_token(backend, "grace-user")
        first = client_key_on(client.get(f"/dashboard/apps/{app_id}/settings"))
        assert first

        rotated = post_form(
            client, f"/dashboard/apps/{app_id}/client-key/rotate", {"grace": "3600"}
        )
        assert rotated.status_code == 303
        page = client.get(f"/dashboard/apps/{app_id}/settings")
        second = client_key_on(page)
        assert second and second != first
        assert "Old keys still working" in page.text
        for key in (first, second):  # both work during the grace period
            with dash.client(**{"IM-CLIENT-KEY": key, "IM-Authorization": token}) as user:
                ok(user.get("/me"))

        post_form(
            client,
            f"/dashboard/apps/{app_id}/client-key/end-grace",
            {},
            page=f"/dashboard/apps/{app_id}/settings",
        )
        with dash.client(**{"IM-CLIENT-KEY": first, "IM-Authorization": token}) as user:
            assert_error(user.get("/me"), 403, "INVALID_CLIENT_KEY")

        post_form(client, f"/dashboard/apps/{app_id}/client-key/revoke", {})
        page = client.get(f"/dashboard/apps/{app_id}/settings")
        assert client_key_on(page) is None
        assert "No live Client Key" in page.text
        with dash.client(**{"IM-CLIENT-KEY": second, "IM-Authorization": token}) as user:
            assert_error(user.get("/me"), 403, "INVALID_CLIENT_KEY")

        post_form(
            client,
            f"/dashboard/apps/{app_id}/client-key/generate",
            {},
            page=f"/dashboard/apps/{app_id}/settings",
        )
        third = client_key_on(client.get(f"/dashboard/apps/{app_id}/settings"))
        assert third and third not in (first, second)
        with dash.client(**{"IM-CLIENT-KEY": third, "IM-Authorization": token}) as user:
            ok(user.get("/me"))


def test_an_unoffered_grace_period_is_refused(dash: Server) -> None:
    client, _, app_id, _ = operator_with_app(dash)
    with closing(client):
        before = client_key_on(client.get(f"/dashboard/apps/{app_id}/settings"))
        refused = post_form(
            client, f"/dashboard/apps/{app_id}/client-key/rotate", {"grace": "999999999"}
        )
        assert refused.status_code == 400
        assert client_key_on(client.get(f"/dashboard/apps/{app_id}/settings")) == before


def test_domains_origins_and_environment(dash: Server) -> None:
    client, _, app_id, _ = operator_with_app(dash)
    taken = f"taken-{app_id[:8]}.example.test"
    other = dash.new_app("someone else's", domains=[taken])
    assert other.id
    with closing(client):
        path = f"/dashboard/apps/{app_id}/settings"
        fields = {"name": "Renamed", "environment": "staging", "origins": "https://web.example.com"}
        saved = post_form(client, path, {**fields, "domains": f"chat-{app_id[:8]}.example.test"})
        assert saved.status_code == 303
        page = client.get(path)
        assert "Renamed" in page.text and "staging" in page.text
        assert f"http://chat-{app_id[:8]}.example.test:{dash.port}" in page.text  # Chat Server URL
        assert "https://web.example.com" in page.text

        conflict = post_form(client, path, {**fields, "domains": taken})
        assert conflict.status_code == 409
        assert "already serves another application" in conflict.text
        bad = post_form(client, path, {**fields, "domains": "", "origins": "not an origin"})
        assert bad.status_code == 400
        view = dash.call(lambda s: s.apps.show(app_id))
        assert view.domains == [f"chat-{app_id[:8]}.example.test"]


def test_deleting_asks_for_the_name(dash: Server) -> None:
    client, _, app_id, api_key = operator_with_app(dash)
    with closing(client):
        path = f"/dashboard/apps/{app_id}/delete"
        assert post_form(client, path, {"confirm_name": "wrong"}).status_code == 400
        assert client.get(f"/dashboard/apps/{app_id}/settings").status_code == 200
        deleted = post_form(client, path, {"confirm_name": "Demo"})
        assert deleted.headers["location"] == "/dashboard/apps?done=app-deleted"
        assert client.get(f"/dashboard/apps/{app_id}/settings").status_code == 404
    with dash.client(**{"IM-API-KEY": api_key}) as backend:
        assert_error(backend.get("/admin/clients"), 401, "INVALID_API_KEY")


# -- usage ---------------------------------------------------------------------------------------


def test_usage_with_no_data_shows_empty_states(dash: Server) -> None:
    client, _, app_id, _ = operator_with_app(dash)
    with closing(client):
        page = client.get(f"/dashboard/apps/{app_id}/usage")
        assert page.status_code == 200
        assert "No requests in the last 30 days" in page.text
        assert "No messages yet" in page.text
        assert "No rejections" in page.text
        assert "No connections yet" in page.text


def test_usage_counts_requests_rejections_origins_and_messages(dash: Server) -> None:
    client, _, app_id, api_key = operator_with_app(dash)
    with closing(client), dash.client(**{"IM-API-KEY": api_key}) as backend:
        client_key = client_key_on(client.get(f"/dashboard/apps/{app_id}/settings"))
        assert client_key
        token = issue_token(backend, "counted")
        hostile = "https://<script>alert(1)</script>.example"
        headers = {"IM-CLIENT-KEY": client_key, "IM-Authorization": token, "Origin": hostile}
        with dash.client(**headers) as user:
            room = ok(user.post("/rooms/createAndJoin", json={"name": "Lobby"}))["_id"]
            for text in ("one", "two", "three"):
                body = {"message": text, "messageType": "text"}
                ok(user.post(f"/rooms/{room}/message", json=body))
        with dash.client(**{"IM-CLIENT-KEY": client_key, "IM-Authorization": "nonsense"}) as bad:
            assert_error(bad.get("/me"), 401, "INVALID_TOKEN")

        page = client.get(f"/dashboard/apps/{app_id}/usage?days=7")
        assert page.status_code == 200
        assert "INVALID_TOKEN" in page.text  # rejections by error code
        assert "<script>alert(1)</script>" not in page.text  # an Origin is data, escaped
        assert html.escape(hostile) in page.text  # and shown among the Origins seen
        assert "No messages yet" not in page.text
        assert "3 messages" in page.text  # today's bar's hover text
        assert "No requests in the last" not in page.text


# -- where the dashboard lives ---------------------------------------------------------------------


def test_dashboard_is_not_part_of_the_api(server: Server) -> None:
    assert not [op for op in route_operations(server.app) if "dashboard" in op[1]]
    with server.client() as client:
        spec = client.get("/openapi.json").json()
        assert not [path for path in spec["paths"] if path.startswith("/dashboard")]
        assert client.get("/").headers["location"] == "/dashboard"
        page = client.get("/dashboard/login")
        assert page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["cache-control"] == "no-store"
        css = client.get("/dashboard/static/dashboard.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert client.get("/dashboard/static/../templates/base.html").status_code == 404


def test_an_oversized_form_is_refused(dash: Server) -> None:
    with browser(dash) as client:
        client.get("/dashboard/login")
        response = client.post("/dashboard/login", content=b"a=" + b"x" * 100_000)
        assert response.status_code == 413


def test_charts_escape_their_text() -> None:
    svg = charts.hbar_list([('<b onclick="x">', 3)], label='"quoted" <label>')
    assert "<b " not in svg and "&lt;b onclick=&#34;x&#34;&gt;" in svg
    assert 'aria-label="&#34;quoted&#34; &lt;label&gt;"' in svg


def test_chart_ticks_cover_the_largest_value() -> None:
    assert charts.nice_ticks(0) == [0, 1]
    assert charts.nice_ticks(7) == [0, 2, 4, 6, 8]
    assert charts.nice_ticks(120)[-1] >= 120
    assert charts.nice_ticks(1_000_001)[-1] >= 1_000_001


def test_cli_creates_an_operator_who_owns_the_apps(tmp_path: Path) -> None:
    from tests.cli.test_cli import parley, parley_env, parley_json

    env = parley_env(tmp_path, PARLEY_SECRET_KEY="s" * 64)
    parley(env, "migrate")
    app = parley_json(env, "app", "create", "cli-made")
    done = parley(
        env,
        "operator",
        "create",
        "Root@Example.com",
        "--password-stdin",
        "--owns-all",
        stdin=PASSWORD + "\n",
    )
    assert done.returncode == 0, done.stderr
    assert "owns 1 application" in done.stdout
    duplicate = parley(
        env, "operator", "create", "root@example.com", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert duplicate.returncode == 1 and "EMAIL_TAKEN" in duplicate.stderr
    short = parley(env, "operator", "create", "x@example.com", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "INVALID_REQUEST" in short.stderr

    from parley.config import Settings
    from parley.services.container import Services

    async def check() -> list[str]:
        svc = Services(Settings(data_dir=tmp_path, secret_key="s" * 64))
        try:
            operator, _ = await svc.operators.log_in("root@example.com", PASSWORD, "cli-test")
            return [owned.app.id for owned in await svc.operators.apps_of(operator.id)]
        finally:
            await svc.db.close()

    assert asyncio.run(check()) == [app["id"]]
