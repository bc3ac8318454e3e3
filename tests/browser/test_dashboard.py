"""The dashboard in Chromium, as an operator uses it: sign up, create an app, copy its
Client Key, use it, revoke it and generate another; see the API Key once; and find
another account's app out of reach. Screenshots of every page, desktop and phone, go to
test-screenshots/ (dashboard-*.png)."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import select
from websockets.sync.client import connect as ws_connect

from parley.services.clock import now_ms
from parley.storage.tables import KeyUsageRow, MessageRow
from tests.browser.conftest import shoot
from tests.browser.test_web_sdk import HostSite
from tests.conftest import Server, assert_error, issue_token, ok
from tests.dashboard.helpers import PASSWORD, create_app, dashboard_server, new_email, sign_up

VIEWPORTS: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 2,
        "is_mobile": True,
        "has_touch": True,
    },
}


@pytest.fixture(scope="module")
def dash(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with dashboard_server(
        request, tmp_path_factory.mktemp("dash-browser"), dashboard_signup="open"
    ) as node:
        yield node


class PageWatch:
    """What a page asked for and complained about: every request must stay on the
    server (no CDN), and the console must stay quiet (a CSP violation lands there)."""

    def __init__(self, page: Any, origin: str) -> None:
        self.origin = origin
        self.foreign: list[str] = []
        self.errors: list[str] = []
        page.on("request", self._request)
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _request(self, request: Any) -> None:
        if not request.url.startswith((self.origin, "data:")):
            self.foreign.append(request.url)

    def check(self) -> None:
        assert self.foreign == [], "requests to other hosts"
        # 404 pages are expected where a test asks for one; nothing else may complain.
        assert [e for e in self.errors if "404" not in e] == []


def user_client(server: Server, client_key: str, token: str) -> httpx.Client:
    return server.client(**{"IM-CLIENT-KEY": client_key, "IM-Authorization": token})


def sign_up_in_browser(page: Any, server: Server, email: str) -> None:
    page.goto(server.url + "/dashboard/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/dashboard/apps\?done=welcome$"))


def section(page: Any, heading: str) -> Any:
    return page.locator("section").filter(has=page.get_by_role("heading", name=heading, exact=True))


def test_operator_journey(context: Any, page: Any, dash: Server) -> None:
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=dash.url)
    watch = PageWatch(page, dash.url)
    sign_up_in_browser(page, dash, new_email("journey"))
    expect(page.get_by_role("heading", name="No applications yet")).to_be_visible()

    page.get_by_role("link", name="Add Application").click()
    page.get_by_label("Name").fill("Journey")
    page.get_by_label("Environment").select_option("staging")
    page.get_by_role("button", name="Create application").click()

    # The API Key, shown this once.
    expect(page.get_by_text("you will not see it again")).to_be_visible()
    api_key = page.locator("#api-key-value").input_value()
    assert api_key.startswith("prly_")

    # The Client Key, through the copy button and the clipboard.
    client_keys = section(page, "Client Key")
    client_keys.get_by_role("button", name="Copy").click()
    expect(client_keys.get_by_role("status")).to_have_text("Copied to the clipboard.")
    shoot(page, "dashboard-settings-new-api-key-desktop")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == client_keys.get_by_label("Client Key").input_value()
    assert copied.startswith("eyJ")

    with dash.client(**{"IM-API-KEY": api_key}) as backend:
        token = issue_token(backend, "journey-user", nickname="Journey User")
    with user_client(dash, copied, token) as user:
        assert ok(user.get("/me"))["_id"] == "journey-user"

    # Reloaded, the page shows only the key's prefix and last four characters.
    page.reload()
    expect(page.locator("#api-key-value")).to_have_count(0)
    expect(page.get_by_text(f"{api_key[:9]}…{api_key[-4:]}")).to_be_visible()
    assert api_key not in page.content()

    # Revoke (confirmed), then generate a new Client Key.
    section(page, "Client Key").get_by_role("link", name="Revoke…").click()
    expect(page.get_by_role("heading", name="Revoke the Client Key?")).to_be_visible()
    page.get_by_role("button", name="Revoke Client Key").click()
    expect(page.get_by_text("No live Client Key.")).to_be_visible()
    shoot(page, "dashboard-settings-revoked-desktop")
    page.get_by_role("button", name="Generate new Client Key").click()
    expect(page.get_by_role("status").first).to_have_text(re.compile("new Client Key"))
    new_key = section(page, "Client Key").get_by_label("Client Key").input_value()
    assert new_key.startswith("eyJ") and new_key != copied

    with user_client(dash, copied, token) as old:
        assert_error(old.get("/me"), 403, "INVALID_CLIENT_KEY")
    with user_client(dash, new_key, token) as new:
        ok(new.get("/me"))
    watch.check()


def test_another_account_cannot_reach_the_app(browser: Any, context: Any, dash: Server) -> None:
    owner = context.new_page()
    sign_up_in_browser(owner, dash, new_email("owner"))
    owner.get_by_role("link", name="Add Application").click()
    owner.get_by_label("Name").fill("Private")
    owner.get_by_role("button", name="Create application").click()
    settings_url = owner.url.split("?")[0]
    key_before = section(owner, "Client Key").get_by_label("Client Key").input_value()
    app_url = settings_url.removesuffix("/settings")

    other_context = browser.new_context()
    try:
        other = other_context.new_page()
        sign_up_in_browser(other, dash, new_email("other"))
        expect(other.get_by_text("Private")).to_have_count(0)
        for path in ("settings", "usage", "client-key/revoke", "api-key/rotate", "delete"):
            response = other.goto(f"{app_url}/{path}")
            assert response.status == 404, path
            expect(other.get_by_role("heading", name="Not found")).to_be_visible()
        other.goto(dash.url + "/dashboard/apps")
        token = other.locator("input[name=csrf]").first.input_value()
        form = {"csrf": token, "grace": "0", "overlap": "0", "confirm_name": "Private"}
        for action in ("client-key/revoke", "client-key/generate", "api-key/rotate", "delete"):
            response = other.request.post(f"{app_url}/{action}", form=form, max_redirects=0)
            assert response.status == 404, action
    finally:
        other_context.close()

    owner.reload()
    assert section(owner, "Client Key").get_by_label("Client Key").input_value() == key_before


def test_csrf_session_fixation_and_logout_in_the_browser(
    context: Any, page: Any, dash: Server
) -> None:
    """A session id planted before sign-in is never promoted; a page of another site
    that posts a dashboard form (the browser sends the cookie along) is refused; after
    logging out, the old cookie signs no one in."""
    planted = "planted-" + secrets.token_urlsafe(24)
    context.add_cookies(
        [{"name": "parley_session", "value": planted, "domain": "127.0.0.1", "path": "/dashboard"}]
    )
    sign_up_in_browser(page, dash, new_email("fixation"))
    session = session_of(context)
    assert session and session != planted
    for value, signed_in in ((planted, False), (session, True)):
        with dash.client() as replay:
            replay.cookies.set("parley_session", value, domain="127.0.0.1", path="/dashboard")
            assert (replay.get("/dashboard/apps").status_code == 200) is signed_in

    site = HostSite()
    site.thread.start()
    try:
        forged = site.add(
            f"""<!doctype html><title>Win a prize</title>
            <form method="post" action="{dash.url}/dashboard/apps/new">
              <input name="name" value="Forged"><input name="environment" value="production">
              <input name="domain" value="">
            </form><script>document.forms[0].submit()</script>"""
        )
        with page.expect_response(f"{dash.url}/dashboard/apps/new") as posted:
            page.goto(forged)
        assert posted.value.request.header_value("cookie")  # the session went along...
        assert posted.value.status == 403  # ...and the form was refused all the same
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    finally:
        site.close()
    page.goto(dash.url + "/dashboard/apps")
    expect(page.get_by_role("heading", name="No applications yet")).to_be_visible()
    expect(page.get_by_text("Forged")).to_have_count(0)

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/dashboard/login\?done=logged-out$"))
    assert session_of(context) is None
    with dash.client() as replay:
        replay.cookies.set("parley_session", session, domain="127.0.0.1", path="/dashboard")
        assert replay.get("/dashboard/apps").status_code == 303  # to the sign-in page


def session_of(context: Any) -> str | None:
    values = [c["value"] for c in context.cookies() if c["name"] == "parley_session"]
    return values[0] if values else None


# -- every page, on a desktop and on a phone --------------------------------------------------


def seed_history(server: Server, app_id: str, room_id: str, senders: list[str]) -> None:
    """Three weeks of earlier traffic, written straight to the tables the usage page
    reads, so that its charts have a history to draw (the requests and messages of the
    test itself are all from today)."""

    async def seed(svc: Any) -> None:
        await svc.usage.flush(svc.db)
        now = now_ms()
        async with svc.db.write() as s:
            today = await s.execute(select(KeyUsageRow).where(KeyUsageRow.app_id == app_id))
            keys = sorted({(row.key_kind, row.key_id) for row in today.scalars()})
            for back in range(1, 22):
                at = now - back * 86_400_000
                busy = 1.0 if back % 7 in (1, 2) else 1.6  # quieter at the weekend
                for n, (kind, key_id) in enumerate(keys):
                    rejections = {"INVALID_TOKEN": back % 4} if back % 3 else {}
                    if back in (4, 11):
                        rejections["RATE_LIMIT_EXCEEDED"] = 6
                    s.add(
                        KeyUsageRow(
                            key_kind=kind,
                            key_id=key_id,
                            day=datetime.fromtimestamp(at / 1000, UTC).strftime("%Y-%m-%d"),
                            app_id=app_id,
                            requests=int((120 + 40 * (back % 5)) * busy) // (n + 1),
                            rejections=rejections,
                            origins=["https://app.acme.example"] if kind == "client" else [],
                            last_used_at=at,
                        )
                    )
                active = senders[: 1 + back % len(senders)]
                for i in range(int((30 + 9 * (back % 6)) * busy)):
                    s.add(
                        MessageRow(
                            app_id=app_id,
                            room_id=room_id,
                            seq=100_000 + back * 1000 + i,
                            id=secrets.token_hex(12),
                            sender=active[i % len(active)],
                            message_type="text",
                            body={},
                            created_at=at + i,
                            updated_at=at + i,
                        )
                    )

    server.call(seed)


@pytest.fixture(scope="module")
def showcase(dash: Server) -> dict[str, str]:
    """An operator with two apps: "Acme Chat", used (today through the API, earlier days
    seeded), and "Quiet App", never used."""
    email = new_email("showcase")
    with dash.client() as client:
        sign_up(client, email)
        busy, api_key = create_app(client, "Acme Chat", "production", "chat.acme.example")
        quiet, _ = create_app(client, "Quiet App", "development")
        settings = client.get(f"/dashboard/apps/{busy}/settings").text
    client_key = settings.split('id="client-key-value"')[1].split('value="')[1].split('"')[0]
    senders = ["ana", "ben", "chen", "dara", "eli"]
    with dash.client(**{"IM-API-KEY": api_key}) as backend:
        tokens = {name: issue_token(backend, name, nickname=name.title()) for name in senders}
    origin = {"Origin": "https://app.acme.example"}
    with dash.client(**{"IM-CLIENT-KEY": client_key, "IM-Authorization": tokens["ana"]}) as ana:
        room = ok(ana.post("/rooms/createAndJoin", json={"name": "Lobby", "invitee": senders}))
    for name in senders:
        headers = {"IM-CLIENT-KEY": client_key, "IM-Authorization": tokens[name], **origin}
        with dash.client(**headers) as user:
            body = {"messageType": "text", "message": f"hi from {name}"}
            ok(user.post(f"/rooms/{room['_id']}/message", json=body))
    with dash.client(**{"IM-CLIENT-KEY": client_key, "IM-Authorization": "expired"}) as bad:
        assert_error(bad.get("/me"), 401, "INVALID_TOKEN")
    seed_history(dash, busy, room["_id"], senders)
    return {
        "email": email,
        "busy": busy,
        "quiet": quiet,
        "client_key": client_key,
        **{f"token:{name}": token for name, token in tokens.items()},
    }


@contextmanager
def live_sockets(server: Server, client_key: str, tokens: list[str]) -> Iterator[None]:
    """Real-time connections held open (Socket.IO CONNECT with the auth payload), so
    that the usage page has live sockets to count."""
    url = server.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    with ExitStack() as stack:
        for token in tokens:
            socket = stack.enter_context(ws_connect(url, open_timeout=10))
            assert str(socket.recv(timeout=10)).startswith("0")  # Engine.IO open
            socket.send("40" + json.dumps({"clientKey": client_key, "token": token}))
            for _ in range(10):
                frame = str(socket.recv(timeout=10))
                if frame == "2":
                    socket.send("3")
                    continue
                assert frame.startswith("40"), frame  # connected, not refused
                break
        yield


@pytest.mark.parametrize("device", VIEWPORTS)
def test_every_page(browser: Any, dash: Server, showcase: dict[str, str], device: str) -> None:
    context = browser.new_context(**VIEWPORTS[device])
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        watch = PageWatch(page, dash.url)
        base = dash.url + "/dashboard"

        page.goto(base + "/login")
        _check_page(page, device)
        shoot(page, f"dashboard-login-{device}")
        page.goto(base + "/signup")
        shoot(page, f"dashboard-signup-{device}")

        # Keyboard only: the fields are labelled, Enter submits.
        page.goto(base + "/login")
        page.get_by_label("Email").fill(showcase["email"])
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_label("Password").press("Enter")
        expect(page.get_by_role("heading", name="Applications")).to_be_visible()
        _check_page(page, device)
        shoot(page, f"dashboard-apps-{device}")

        page.goto(base + "/apps/new")
        _check_page(page, device)
        shoot(page, f"dashboard-app-new-{device}")

        busy, quiet = showcase["busy"], showcase["quiet"]
        page.goto(f"{base}/apps/{busy}/settings")
        chat_url = f"http://chat.acme.example:{dash.port}"
        expect(page.get_by_role("textbox", name="Chat Server URL")).to_have_value(chat_url)
        _check_page(page, device)
        shoot(page, f"dashboard-settings-{device}")

        tokens = [showcase[f"token:{name}"] for name in ("ana", "ben", "chen")]
        with live_sockets(dash, showcase["client_key"], tokens):
            page.goto(f"{base}/apps/{busy}/usage")
        connections = page.locator(".stat").filter(has_text="Connections now")
        expect(connections.locator(".stat-value")).to_have_text("3")
        expect(connections.locator(".stat-note")).to_contain_text("peak today 3")
        expect(page.get_by_role("heading", name="Peak connections per day")).to_be_visible()
        assert section(page, "Peak connections per day").locator("svg.chart").count() == 1
        expect(page.get_by_role("heading", name="Requests per day")).to_be_visible()
        assert page.locator("svg.chart").count() >= 4
        rejections = section(page, "Rejections by error code")
        expect(rejections.locator("text.item", has_text="INVALID_TOKEN")).to_be_visible()
        expect(page.locator("code.chip", has_text="https://app.acme.example")).to_be_visible()
        _check_page(page, device)
        shoot(page, f"dashboard-usage-{device}")
        page.reload()  # the sockets have closed: the day's peak was kept
        expect(connections.locator(".stat-note")).to_contain_text("peak today 3")

        page.goto(f"{base}/apps/{quiet}/usage")
        expect(page.get_by_text("No requests in the last 30 days.")).to_be_visible()
        expect(page.get_by_text("No messages yet.")).to_be_visible()
        _check_page(page, device)
        shoot(page, f"dashboard-usage-empty-{device}")

        for name, path in (
            ("rotate", "client-key/rotate"),
            ("revoke", "client-key/revoke"),
            ("delete", "delete"),
        ):
            page.goto(f"{base}/apps/{busy}/{path}")
            _check_page(page, device)
            shoot(page, f"dashboard-confirm-{name}-{device}")

        page.goto(base + "/account")
        _check_page(page, device)
        shoot(page, f"dashboard-account-{device}")

        page.goto(f"{base}/apps/not-an-app/settings")
        shoot(page, f"dashboard-not-found-{device}")
        watch.check()
    finally:
        context.close()


def _check_page(page: Any, device: str) -> None:
    """Nothing wider than the screen, and every visible field has a label."""
    if device == "phone":
        wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert wide <= 0, f"{page.url} is {wide}px wider than the phone"
    unlabelled = page.evaluate(
        """[...document.querySelectorAll('input, select, textarea')]
            .filter(el => el.type !== 'hidden' && el.labels.length === 0)
            .map(el => el.name || el.id)"""
    )
    assert unlabelled == [], f"fields without a label on {page.url}"
