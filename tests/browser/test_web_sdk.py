"""The Web SDK (``/sdk/imkit.js``) and the Web URL (``/chat?token=…``) in Chromium.

A customer embeds the SDK in pages of its own site: here a small HTTP server on
127.0.0.1 (its own port, so its own Origin) serves each test's host page, which loads
``/sdk/imkit.js`` from Parley and calls ``IMKitUI.init``. Each app under test is served
on a host of its own, ``<name>.localhost`` (Chromium resolves every ``*.localhost`` to the
loopback address), so the Host → app rule and the app's allowed Origins decide as they
would in production, while the session's other apps keep serving 127.0.0.1.

Screenshots of what the tests saw go to ``test-screenshots/`` (see ``conftest.shoot``).
"""

from __future__ import annotations

import io
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser.conftest import shoot
from tests.conftest import AppKeys, Server, issue_token, ok

STATIC = Path(__file__).resolve().parents[2] / "src" / "parley" / "web" / "static"
NODE_LOCK = Path(__file__).resolve().parents[1] / "gateway" / "node" / "package-lock.json"
LIVE_MS = 1000  # a message shows on the other page within a second
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}

# -- the customer's site -------------------------------------------------------------------


class HostSite:
    """Pages on the customer's own origin (http://127.0.0.1:<port>)."""

    def __init__(self) -> None:
        pages: dict[str, bytes] = {}
        self.pages = pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path.split("?")[0])
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def add(self, html: str) -> str:
        path = f"/page-{secrets.token_hex(6)}.html"
        self.pages[path] = html.encode()
        return self.origin + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module", autouse=True)
def server_before_browser(server: Server) -> Server:
    """The server's setup runs the event loop (migrations): it must come before the
    browser, whose sync API keeps a loop of its own in this thread."""
    return server


@pytest.fixture(scope="module")
def host_site() -> Iterator[HostSite]:
    site = HostSite()
    site.thread.start()
    yield site
    site.close()


@dataclass
class ChatApp:
    """An app served on a host of its own, with its backend (API Key) client."""

    keys: AppKeys
    domain: str
    base: str  # what a page passes as ``domain``: Parley at the app's host
    admin: httpx.Client

    def user(self, user_id: str, nickname: str) -> str:
        return issue_token(self.admin, user_id, nickname=nickname)

    def room(self, *members: str, room_type: str = "direct", name: str | None = None) -> str:
        body: dict[str, Any] = {"roomType": room_type, "members": list(members)}
        if name:
            body["name"] = name
        return str(ok(self.admin.post("/rooms", json=body))["_id"])

    def send_as(self, sender: str, room_id: str, text: str) -> dict[str, Any]:
        body = {"room": room_id, "sender": sender, "message": text, "messageType": "text"}
        result: dict[str, Any] = ok(self.admin.post("/messages", json=body))
        return result


def new_chat_app(server: Server, origins: list[str]) -> Iterator[ChatApp]:
    domain = f"shop-{secrets.token_hex(4)}.localhost"
    keys = server.new_app("shop", [domain], origins)
    with server.client(**{"IM-API-KEY": keys.api_key}) as admin:
        yield ChatApp(keys, domain, f"http://{domain}:{server.port}", admin)


@pytest.fixture
def shop(server: Server, host_site: HostSite) -> Iterator[ChatApp]:
    """An app whose pages are on the host site (its only allowed Origin)."""
    yield from new_chat_app(server, [host_site.origin])


@pytest.fixture
def plain_shop(server: Server) -> Iterator[ChatApp]:
    """An app with no Origin restriction, for its Web URL."""
    yield from new_chat_app(server, [])


def host_page(app: ChatApp, **config: Any) -> str:
    """The customer's page: the SDK from Parley, ``init`` with ``config``; the outcome of
    ``ready`` and every ``onError`` call are kept on ``window`` for the test to read."""
    settings = json.dumps({"domain": app.base, "container": "#chat", **config})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<script src="{app.base}/sdk/imkit.js"></script></head>
<body style="margin:0"><div id="chat" style="height:100vh"></div>
<script>
  window.reported = [];
  var settings = {settings};
  settings.onError = function (e) {{ window.reported.push({{code: e.code, message: e.message}}); }};
  window.chat = IMKitUI.init(settings);
  window.outcome = window.chat.ready.then(
    function () {{ return "ready"; }},
    function (e) {{ return e.code; }}
  );
</script></body></html>"""


@dataclass
class Tab:
    """A page and what its console and script errors said."""

    page: Any
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def outcome(self) -> str:
        return str(self.page.evaluate("() => window.outcome"))


def open_tab(context: Any, url: str) -> Tab:
    tab = Tab(context.new_page())
    tab.page.on("console", lambda m: tab.console.append(f"{m.type}: {m.text}"))
    tab.page.on("pageerror", lambda e: tab.errors.append(str(e)))
    tab.page.goto(url)
    return tab


def open_sdk(context: Any, site: HostSite, app: ChatApp, token: str) -> Tab:
    tab = open_tab(context, site.add(host_page(app, clientKey=app.keys.client_key, token=token)))
    assert tab.outcome() == "ready", tab.console
    return tab


def open_room(page: Any, name: str) -> None:
    page.locator(".imk-room", has_text=name).click()
    expect(page.locator(".imk-conv-title")).to_have_text(name)


def bubble(page: Any, text: str) -> Any:
    return page.locator(".imk-msg .imk-text", has_text=re.compile(f"^{re.escape(text)}$"))


def png(width: int = 96, height: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (61, 91, 217)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def second_context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport=DESKTOP)
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


# -- two users chat --------------------------------------------------------------------------


def test_two_users_chat_live_with_typing_receipts_and_badges(
    context: Any, second_context: Any, host_site: HostSite, shop: ChatApp
) -> None:
    alice_token, bob_token = shop.user("alice", "Alice"), shop.user("bob", "Bob")
    shop.room("alice", "bob")
    alice = open_sdk(context, host_site, shop, alice_token)
    bob = open_sdk(second_context, host_site, shop, bob_token)
    # The bundled Socket.IO client stays private to the SDK.
    assert alice.page.evaluate("() => typeof window.io") == "undefined"
    expect(alice.page.locator(".imk-me-name")).to_have_text("Alice")
    expect(alice.page.locator(".imk-conn")).to_have_text("Online")

    open_room(alice.page, "Bob")
    alice.page.locator(".imk-input").fill("Hello Bob")
    alice.page.keyboard.press("Enter")
    bob_room = bob.page.locator(".imk-room", has_text="Alice")
    expect(bob_room.locator(".imk-badge")).to_have_attribute("data-count", "1", timeout=LIVE_MS)
    expect(bob_room.locator(".imk-room-preview")).to_have_text("Hello Bob")

    # Bob opens the room: it is read, his badge goes, Alice sees the receipt.
    open_room(bob.page, "Alice")
    expect(bubble(bob.page, "Hello Bob")).to_be_visible()
    expect(bob_room.locator(".imk-badge")).to_have_count(0)
    expect(alice.page.locator(".imk-out .imk-status")).to_have_text("Read")
    expect(alice.page.locator(".imk-out .imk-tick")).to_have_attribute("data-state", "read")

    # Typing shows on the other side, and goes when the message arrives.
    bob.page.locator(".imk-input").press_sequentially("Hi Al", delay=30)
    expect(alice.page.locator(".imk-typing")).to_have_text("Bob is typing\u2026")
    expect(alice.page.locator(".imk-room", has_text="Bob")).to_contain_text("typing")
    bob.page.locator(".imk-input").press_sequentially("ice")
    bob.page.keyboard.press("Enter")
    expect(bubble(alice.page, "Hi Alice")).to_be_visible(timeout=LIVE_MS)
    expect(alice.page.locator(".imk-typing")).to_have_text("")
    expect(bob.page.locator(".imk-out .imk-status")).to_have_text("Read")
    shoot(alice.page, "web-sdk-desktop-alice")
    shoot(bob.page, "web-sdk-desktop-bob")

    # A reload keeps the history.
    bob.page.reload()
    assert bob.outcome() == "ready"
    open_room(bob.page, "Alice")
    expect(bubble(bob.page, "Hello Bob")).to_be_visible()
    expect(bubble(bob.page, "Hi Alice")).to_be_visible()
    assert alice.errors == [] and bob.errors == []


def test_a_late_answer_to_an_older_read_mark_brings_no_badge_back(
    context: Any, host_site: HostSite, shop: ChatApp
) -> None:
    """Two read marks in flight, answered out of order: the older answer (counting the
    newer message as unread) must not put a badge on the room being read."""
    bob_token = shop.user("bob", "Bob")
    shop.user("alice", "Alice")
    room_id = shop.room("alice", "bob")
    shop.send_as("alice", room_id, "zero")
    bob = open_sdk(context, host_site, shop, bob_token)
    open_room(bob.page, "Alice")
    room_item = bob.page.locator(".imk-room", has_text="Alice")
    expect(room_item.locator(".imk-badge")).to_have_count(0)

    held: list[Any] = []  # the first mark's route, then its answer, kept back
    passed: list[str] = []

    def answer_now(request: Any) -> httpx.Response:
        """The server's answer to a request the page made (sent from here: the
        browser's own fetch cannot resolve the app's *.localhost host)."""
        url = httpx.URL(request.url)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        local = url.copy_with(host="127.0.0.1")
        return httpx.request(
            request.method,
            local,
            headers={**headers, "host": url.netloc.decode()},
            content=request.post_data_buffer,
            timeout=10,
        )

    def marks(route: Any) -> None:
        if route.request.method != "PUT":
            route.continue_()
        elif not held:
            held.append(route)
        else:
            held.append(answer_now(held[0].request))  # the newer message is unread to it
            route.continue_()
            passed.append(route.request.url)

    bob.page.route(re.compile(r"/rooms/[^/]+/lastRead$"), marks)
    shop.send_as("alice", room_id, "first")
    expect(bubble(bob.page, "first")).to_be_visible()
    deadline = time.monotonic() + 5
    while not held and time.monotonic() < deadline:
        bob.page.wait_for_timeout(50)
    assert held, "the first read mark was never sent"

    shop.send_as("alice", room_id, "second")
    expect(bubble(bob.page, "second")).to_be_visible()
    while not passed and time.monotonic() < deadline + 5:
        bob.page.wait_for_timeout(50)
    assert passed, "the second read mark was never sent"
    bob.page.wait_for_timeout(400)  # the newer answer is in
    route, stale = held
    assert stale.json()["result"]["badge"] == 1  # the old answer does count "second"
    kept = {
        k: v for k, v in stale.headers.items() if k not in ("content-encoding", "content-length")
    }
    route.fulfill(status=stale.status_code, headers=kept, body=stale.content)
    bob.page.wait_for_timeout(400)
    expect(room_item.locator(".imk-badge")).to_have_count(0)
    assert bob.errors == []


def test_group_rooms_name_senders_and_count_readers(
    context: Any, second_context: Any, host_site: HostSite, shop: ChatApp
) -> None:
    tokens = {name: shop.user(name.lower(), name) for name in ("Alice", "Bob", "Carol")}
    shop.room("alice", "bob", "carol", room_type="group", name="Crew")
    alice = open_sdk(context, host_site, shop, tokens["Alice"])
    bob = open_sdk(second_context, host_site, shop, tokens["Bob"])
    carol = open_sdk(second_context, host_site, shop, tokens["Carol"])
    for tab in (alice, bob):
        open_room(tab.page, "Crew")
    expect(alice.page.locator(".imk-conv-sub")).to_have_text("3 members")
    alice.page.get_by_role("textbox", name="Message").fill("Lunch at noon?")
    alice.page.keyboard.press("Enter")
    expect(bob.page.locator(".imk-in .imk-sender")).to_have_text("Alice")
    expect(alice.page.locator(".imk-out .imk-status")).to_have_text("Read by 1 (Bob)")
    open_room(carol.page, "Crew")
    expect(alice.page.locator(".imk-out .imk-status")).to_have_text("Read by everyone")
    assert alice.errors == bob.errors == carol.errors == []


def test_message_content_is_never_markup(context: Any, host_site: HostSite, shop: ChatApp) -> None:
    bob_token = shop.user("bob", "Bob")
    shop.user("alice", "Alice")
    room_id = shop.room("alice", "bob")
    trap = '<img src=x onerror="window.pwned=1">'
    shop.send_as("alice", room_id, trap)
    hostile = {
        "room": room_id,
        "sender": "alice",
        "messageType": "file",
        "message": "invoice.pdf",
        "originalUrl": "javascript:window.pwned=2",
    }
    ok(shop.admin.post("/messages", json=hostile))
    bob = open_sdk(context, host_site, shop, bob_token)
    open_room(bob.page, "Alice")
    expect(bubble(bob.page, trap)).to_be_visible()  # shown as the text it is
    link = bob.page.locator(".imk-file")
    expect(link).to_have_attribute("href", "#")
    link.click()
    assert bob.page.evaluate("() => window.pwned") is None


def test_live_messages_arrive_within_a_second(
    context: Any, second_context: Any, host_site: HostSite, shop: ChatApp
) -> None:
    alice_token, bob_token = shop.user("alice", "Alice"), shop.user("bob", "Bob")
    shop.room("alice", "bob")
    alice = open_sdk(context, host_site, shop, alice_token)
    bob = open_sdk(second_context, host_site, shop, bob_token)
    open_room(alice.page, "Bob")
    open_room(bob.page, "Alice")
    for n in range(3):
        text = f"ping {n}"
        alice.page.locator(".imk-input").fill(text)
        started = time.monotonic()
        alice.page.keyboard.press("Enter")
        expect(bubble(bob.page, text)).to_be_visible(timeout=LIVE_MS)
        assert time.monotonic() - started < LIVE_MS / 1000


def test_an_image_and_a_file_reach_the_other_page(
    context: Any, second_context: Any, host_site: HostSite, shop: ChatApp
) -> None:
    alice_token, bob_token = shop.user("alice", "Alice"), shop.user("bob", "Bob")
    shop.room("alice", "bob")
    alice = open_sdk(context, host_site, shop, alice_token)
    bob = open_sdk(second_context, host_site, shop, bob_token)
    open_room(alice.page, "Bob")
    open_room(bob.page, "Alice")

    picture = {"name": "sky.png", "mimeType": "image/png", "buffer": png()}
    alice.page.locator("input[type=file]").set_input_files(picture)
    image = bob.page.locator(".imk-in .imk-image")
    expect(image).to_have_count(1)
    # Loaded with Bob's credentials (a blob: URL) and really decoded as a picture.
    bob.page.wait_for_function(
        """() => {
          const root = document.querySelector('.imkit-ui').shadowRoot;
          const img = root.querySelector('.imk-in .imk-image');
          return img && img.src.startsWith('blob:') && img.complete && img.naturalWidth > 0;
        }"""
    )
    expect(alice.page.locator(".imk-out .imk-image")).to_have_count(1)

    notes = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"bring snacks\n"}
    alice.page.locator("input[type=file]").set_input_files(notes)
    link = bob.page.locator(".imk-in .imk-file")
    expect(link.locator(".imk-file-name")).to_have_text("notes.txt")
    with bob.page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "notes.txt"
    assert Path(download.value.path()).read_bytes() == b"bring snacks\n"
    shoot(bob.page, "web-sdk-desktop-files")
    assert alice.errors == [] and bob.errors == []


def test_scrolling_up_pages_older_history(context: Any, host_site: HostSite, shop: ChatApp) -> None:
    bob_token = shop.user("bob", "Bob")
    shop.user("alice", "Alice")
    room_id = shop.room("alice", "bob")
    for n in range(1, 46):
        shop.send_as("alice", room_id, f"note {n}")
    bob = open_sdk(context, host_site, shop, bob_token)
    open_room(bob.page, "Alice")
    expect(bubble(bob.page, "note 45")).to_be_visible()
    expect(bubble(bob.page, "note 16")).to_have_count(1)  # the first page: 30 messages
    expect(bubble(bob.page, "note 15")).to_have_count(0)

    bob.page.locator(".imk-log").evaluate("log => { log.scrollTop = 0; }")
    expect(bubble(bob.page, "note 1")).to_have_count(1)
    expect(bob.page.locator(".imk-start")).to_be_visible()
    expect(bob.page.locator(".imk-msg .imk-text")).to_have_count(45)  # each exactly once
    texts = bob.page.locator(".imk-msg .imk-text").all_inner_texts()
    assert texts == [f"note {n}" for n in range(1, 46)]


def test_a_reconnection_resumes_what_was_missed(
    context: Any, host_site: HostSite, shop: ChatApp
) -> None:
    bob_token = shop.user("bob", "Bob")
    shop.user("alice", "Alice")
    room_id = shop.room("alice", "bob")
    shop.send_as("alice", room_id, "before")
    bob = open_sdk(context, host_site, shop, bob_token)
    open_room(bob.page, "Alice")
    expect(bubble(bob.page, "before")).to_be_visible()

    bob.page.evaluate("() => window.chat.socket.disconnect()")
    expect(bob.page.locator(".imk-conn")).to_have_text("Reconnecting\u2026")
    for text in ("while away 1", "while away 2"):
        shop.send_as("alice", room_id, text)

    bob.page.evaluate("() => window.chat.socket.connect()")
    expect(bob.page.locator(".imk-conn")).to_have_text("Online")
    expect(bubble(bob.page, "while away 2")).to_be_visible()
    texts = bob.page.locator(".imk-msg .imk-text").all_inner_texts()
    assert texts == ["before", "while away 1", "while away 2"]
    assert bob.errors == []


# -- errors reach the integrating developer --------------------------------------------------


@pytest.fixture
def other_app_key(server: Server) -> str:
    return server.new_app("another shop").client_key


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("no client key", "MISSING_CLIENT_KEY"),
        ("malformed key", "INVALID_CLIENT_KEY"),
        ("key of another app", "CLIENT_KEY_MISMATCH"),
        ("origin not allowed", "CLIENT_KEY_MISMATCH"),
    ],
)
def test_init_errors_reach_console_ui_and_callers(
    server: Server,
    context: Any,
    host_site: HostSite,
    shop: ChatApp,
    other_app_key: str,
    case: str,
    code: str,
) -> None:
    token = shop.user("alice", "Alice")
    config: dict[str, Any] = {"token": token}
    if case == "malformed key":
        config["clientKey"] = "eyJub3QiOiJhIGtleSJ9.x.y"
    elif case == "key of another app":
        config["clientKey"] = other_app_key
    elif case == "origin not allowed":
        server.call(lambda s: s.apps.update(shop.keys.id, origins=["https://shop.example"]))
        config["clientKey"] = shop.keys.client_key
    elif case != "no client key":
        raise AssertionError(case)
    tab = open_tab(context, host_site.add(host_page(shop, **config)))
    assert tab.outcome() == code
    assert [r["code"] for r in tab.page.evaluate("() => window.reported")] == [code]
    assert any(line.startswith("error: ") and code in line for line in tab.console), tab.console
    expect(tab.page.locator(".imk-error")).to_be_visible()
    expect(tab.page.locator(".imk-error-code")).to_have_text(code)
    expect(tab.page.locator(".imk-layout")).to_be_hidden()
    if case == "key of another app":
        shoot(tab.page, "web-sdk-error-mismatch")


def test_a_revoked_token_stops_a_running_chat(
    context: Any, host_site: HostSite, shop: ChatApp
) -> None:
    token = shop.user("alice", "Alice")
    tab = open_sdk(context, host_site, shop, token)
    ok(shop.admin.delete("/admin/clients/alice/token"))
    expect(tab.page.locator(".imk-error-code")).to_have_text("INVALID_TOKEN")
    assert [r["code"] for r in tab.page.evaluate("() => window.reported")] == ["INVALID_TOKEN"]


# -- the Web URL -------------------------------------------------------------------------------


def test_web_url_opens_the_chat_of_the_hosts_app(
    browser: Any, context: Any, plain_shop: ChatApp
) -> None:
    alice_token = plain_shop.user("alice", "Alice")
    plain_shop.user("bob", "Bob")
    room_id = plain_shop.room("alice", "bob")
    plain_shop.send_as("bob", room_id, "Welcome to the shop")
    url = f"{plain_shop.base}/chat?token={alice_token}"

    tab = Tab(context.new_page())
    tab.page.on("console", lambda m: tab.console.append(f"{m.type}: {m.text}"))
    response = tab.page.goto(url)
    assert response is not None and response.status == 200
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert response.headers["referrer-policy"] == "no-referrer"
    assert plain_shop.keys.client_key in response.text()
    assert alice_token not in response.text()  # the token stays in the address bar

    expect(tab.page.locator(".imk-me-name")).to_have_text("Alice")
    # By keyboard alone, through labelled controls.
    tab.page.get_by_role("navigation", name="Conversations").get_by_role("button").focus()
    tab.page.keyboard.press("Enter")
    expect(tab.page.get_by_role("heading", name="Bob")).to_be_visible()
    expect(tab.page.get_by_role("log", name="Bob")).to_be_visible()
    expect(bubble(tab.page, "Welcome to the shop")).to_be_visible()
    composer = tab.page.get_by_role("textbox", name="Message")
    expect(composer).to_be_focused()
    expect(tab.page.get_by_role("button", name="Attach an image or file")).to_be_visible()
    expect(tab.page.get_by_role("button", name="Send")).to_be_visible()
    tab.page.keyboard.type("Thanks!")
    tab.page.keyboard.press("Enter")
    expect(tab.page.locator(".imk-out .imk-status")).to_have_text("Sent")
    shoot(tab.page, "web-url-desktop")
    assert not [line for line in tab.console if "Content Security Policy" in line], tab.console

    phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = phone.new_page()
        page.goto(url)
        expect(page.locator(".imk-room", has_text="Bob")).to_be_visible()
        expect(page.locator(".imk-conv")).to_be_hidden()
        shoot(page, "web-url-phone-list")
        open_room(page, "Bob")
        expect(page.locator(".imk-side")).to_be_hidden()  # one pane at a time
        expect(bubble(page, "Thanks!")).to_be_visible()
        shoot(page, "web-url-phone-room")
        page.locator(".imk-back").click()
        expect(page.locator(".imk-room", has_text="Bob")).to_be_focused()
    finally:
        phone.close()


def test_web_url_on_an_unknown_host_is_an_error_page(context: Any, server: Server) -> None:
    host = f"nobody-{secrets.token_hex(4)}.localhost"
    page = context.new_page()
    response = page.goto(f"http://{host}:{server.port}/chat?token=whatever")
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_have_text("No chat here")
    expect(page.locator("main")).to_contain_text(host)
    assert "default-src 'self'" in response.headers["content-security-policy"]


def test_web_url_works_for_an_app_with_allowed_origins(
    context: Any, host_site: HostSite, shop: ChatApp
) -> None:
    token = shop.user("alice", "Alice")
    page = context.new_page()
    page.goto(f"{shop.base}/chat?token={token}")
    expect(page.locator(".imk-me-name")).to_have_text("Alice", timeout=3000)
    expect(page.locator(".imk-conn")).to_have_text("Online", timeout=3000)


def test_web_url_connects_when_its_own_origin_is_listed_too(
    server: Server, context: Any, host_site: HostSite, shop: ChatApp
) -> None:
    """Listing the app's own origin among the allowed ones changes nothing."""
    token = shop.user("alice", "Alice")
    origins = [host_site.origin, shop.base]
    server.call(lambda s: s.apps.update(shop.keys.id, origins=origins))
    page = context.new_page()
    page.goto(f"{shop.base}/chat?token={token}")
    expect(page.locator(".imk-conn")).to_have_text("Online")
    expect(page.locator(".imk-error")).to_be_hidden()


# -- serving -------------------------------------------------------------------------------------


def test_sdk_files_are_cached_by_version_and_etag(server: Server) -> None:
    with server.client() as client:
        plain = client.get("/sdk/imkit.js")
        assert plain.status_code == 200
        assert plain.headers["content-type"].startswith("text/javascript")
        assert plain.headers["cache-control"] == "no-cache"
        assert plain.headers["content-encoding"] == "gzip"
        again = client.get("/sdk/imkit.js", headers={"If-None-Match": plain.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        version = re.search(r'PARLEY_SDK_VERSION = "(\w+)"', plain.text)
        assert version is not None
        pinned = client.get("/sdk/imkit.js", params={"v": version.group(1)})
        assert pinned.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert client.head("/sdk/imkit.css").status_code == 200
        assert client.post("/sdk/imkit.js").status_code == 405
        paths = json.dumps(client.get("/openapi.json").json()["paths"])
        assert "/sdk/" not in paths and "/chat" not in paths


def test_the_bundled_socket_io_client_is_the_pinned_npm_release(server: Server) -> None:
    lock = json.loads(NODE_LOCK.read_text())
    pinned = lock["packages"]["node_modules/socket.io-client"]["version"]
    shipped = (STATIC / "socket.io.min.js").read_bytes()
    assert shipped.startswith(f"/*!\n * Socket.IO v{pinned}\n".encode())
    assert "MIT License" in (STATIC / "socket.io.LICENSE").read_text()
    with server.client() as client:
        served = client.get("/sdk/socket.io.min.js")
        assert served.content == shipped
        bundle = client.get("/sdk/imkit.js").text
    assert f"Socket.IO v{pinned}" in bundle and "sourceMappingURL" not in bundle
