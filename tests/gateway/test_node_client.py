"""The real-time gateway as the npm ``socket.io-client`` 4.x sees it, from Node.

``node/scenarios.mjs`` performs the steps each test writes (open a socket, emit, call
REST, wait for events or a close) and prints what happened; every assertion is here.
Negative checks ("carol hears nothing") are fenced, not timed: once a member has the
event, a round trip on the other socket proves anything sent to it has arrived.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.services.clock import iso, now_ms
from tests.conftest import AppKeys, Server, issue_token, need_service, ok

NODE_DIR = Path(__file__).parent / "node"
SCRIPT = NODE_DIR / "scenarios.mjs"
LOCKFILE = NODE_DIR / "package-lock.json"
# npm rewrites this copy of the lock file on every install: older than the lock file
# means node_modules predates the last change of the dependencies.
INSTALLED = NODE_DIR / "node_modules" / ".package-lock.json"
WAIT_MS = 3000  # the longest any one step waits: a scenario finishes in seconds
RUN_TIMEOUT = 30


# -- Node and its packages ------------------------------------------------------------


def install_packages(npm: str) -> None:
    """``npm ci`` when node_modules is missing or older than package-lock.json."""
    if INSTALLED.exists() and INSTALLED.stat().st_mtime >= LOCKFILE.stat().st_mtime:
        return
    command = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
    try:
        done = subprocess.run(command, cwd=NODE_DIR, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        need_service("npm ci of tests/gateway/node (timed out)")
    if done.returncode != 0:
        need_service(f"npm ci of tests/gateway/node ({done.stderr.strip()[-500:]})")


@pytest.fixture(scope="module")
def node() -> str:
    """The ``node`` binary, with tests/gateway/node's packages installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        need_service("Node.js and npm (for the socket.io-client tests)")
    assert node is not None and npm is not None
    install_packages(npm)
    return node


# -- scenarios ------------------------------------------------------------------------


@dataclass
class Scenario:
    """Steps for the Node script; ``label`` names a step whose result a test reads."""

    name: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)

    def step(self, op: str, label: str | None = None, **fields: Any) -> Scenario:
        if label is not None:
            self.labels[label] = len(self.steps)
        self.steps.append({"op": op, **fields})
        return self

    def open(
        self,
        socket: str,
        *,
        auth: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        label: str | None = None,
    ) -> Scenario:
        fields: dict[str, Any] = {"socket": socket}
        if auth is not None:
            fields["auth"] = auth
        if headers is not None:
            fields["extraHeaders"] = headers
        return self.step("open", label, **fields)

    def emit(
        self, socket: str, event: str, *args: Any, ack: bool = True, label: str | None = None
    ) -> Scenario:
        return self.step("emit", label, socket=socket, event=event, args=list(args), ack=ack)

    def http(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Any = None,
        label: str | None = None,
    ) -> Scenario:
        fields = {"method": method, "path": path, "headers": headers}
        if body is not None:
            fields["body"] = body
        return self.step("http", label, **fields)

    def wait_events(self, socket: str, event: str, count: int = 1) -> Scenario:
        label = f"{socket} heard {count} {event}"
        return self.step("waitEvents", label, socket=socket, event=event, count=count)

    def wait_closed(self, socket: str) -> Scenario:
        return self.step("waitClosed", f"{socket} closed", socket=socket)

    def fence(self, socket: str) -> Scenario:
        """A round trip on ``socket``: whatever was sent to it before has arrived."""
        return self.emit(socket, "conf", {}, label=f"{socket} fence")


@dataclass
class Outcome:
    """What the Node script reported for one scenario."""

    scenario: Scenario
    steps: list[dict[str, Any]]
    sockets: dict[str, dict[str, Any]]

    def __getitem__(self, label: str) -> dict[str, Any]:
        return self.steps[self.scenario.labels[label]]

    def ack(self, label: str, *, encoded: bool = False) -> Any:
        """The first argument of the ack of the step ``label``, decoded if base64."""
        result = self[label]
        assert "ack" in result, f"{label}: no ack ({result})"
        return decode(result["ack"][0]) if encoded else result["ack"][0]

    def heard(self, socket: str, event: str, *, encoded: bool = False) -> list[Any]:
        """The payloads of the ``event`` events ``socket`` received, in order."""
        payloads = [args[1] for args in self.sockets[socket]["events"] if args[0] == event]
        return [decode(p) for p in payloads] if encoded else payloads

    def events(self, socket: str) -> list[str]:
        return [args[0] for args in self.sockets[socket]["events"]]


def decode(value: Any) -> Any:
    """A payload of a base64 socket: base64 of the JSON."""
    assert isinstance(value, str), f"not base64 text: {value!r}"
    return json.loads(base64.b64decode(value, validate=True))


def play(
    node: str, server: Server, *scenarios: Scenario, wait_ms: int = WAIT_MS, strict: bool = True
) -> list[Outcome]:
    """Run the scenarios in one Node process, one after the other. ``strict``: no step
    may time out or fail in Node."""
    description = {
        "url": server.url,
        "waitMs": wait_ms,
        "scenarios": [{"name": s.name, "steps": s.steps} for s in scenarios],
    }
    done = subprocess.run(
        [node, str(SCRIPT)],
        cwd=NODE_DIR,
        input=json.dumps(description),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert [line["name"] for line in lines] == [s.name for s in scenarios], done.stdout
    outcomes = []
    for scenario, line in zip(scenarios, lines, strict=True):
        failed = [r for r in line["steps"] if "error" in r or r.get("timedOut")]
        assert not (strict and failed), (scenario.name, line["steps"])
        outcomes.append(Outcome(scenario, line["steps"], line["sockets"]))
    return outcomes


# -- handshakes -----------------------------------------------------------------------
# Each opens ``socket`` as the user of ``token`` and labels the answer "<socket> auth".


def connect_auth(s: Scenario, socket: str, key: str | None, token: str, **open: Any) -> None:
    """socket.io's own way: ``auth: {clientKey, token}`` in CONNECT."""
    auth = {"token": token} if key is None else {"clientKey": key, "token": token}
    s.open(socket, auth=auth, label=f"{socket} auth", **open)


def imkit_auth2(s: Scenario, socket: str, key: str | None, token: str, **open: Any) -> None:
    """The mobile SDKs: ``conf`` base64, then ``auth2(token, {IM-CLIENT-KEY}, ack)``."""
    s.open(socket, **open)
    s.emit(socket, "conf", {"encoding": "base64"}, label=f"{socket} conf")
    headers = {} if key is None else {"IM-CLIENT-KEY": key, "IM-Authorization": token}
    s.emit(socket, "auth2", token, headers, label=f"{socket} auth")


def web_auth2(
    s: Scenario, socket: str, key: str | None, token: str, *, probe: bool = True, **open: Any
) -> None:
    """The web SDKs: no ``conf``, ``auth2(token, {CLIENT_KEY, Authorization})`` without
    an ack. A ``resume`` of no rooms, answered only once authenticated, confirms it."""
    s.open(socket, **open)
    headers = {"Authorization": token}
    if key is not None:
        headers["CLIENT_KEY"] = key
    s.emit(socket, "auth2", token, headers, ack=False)
    if probe:
        s.emit(socket, "resume", {"rooms": {}}, label=f"{socket} auth")


def legacy_auth(s: Scenario, socket: str, key: str | None, token: str, **open: Any) -> None:
    """The legacy ``auth(token, ack)``: the Client Key rides on the upgrade's headers."""
    headers = dict(open.pop("headers", None) or {})
    if key is not None:
        headers["IM-CLIENT-KEY"] = key
    s.open(socket, headers=headers, **open)
    s.emit(socket, "auth", token, label=f"{socket} auth")


HANDSHAKES = {
    "connect-auth": connect_auth,
    "imkit-auth2-base64": imkit_auth2,
    "web-auth2-no-ack": web_auth2,
    "legacy-auth": legacy_auth,
}
BASE64 = {"imkit-auth2-base64"}


def auth_answer(outcome: Outcome, socket: str, handshake: str) -> Any:
    """The handshake's answer: CONNECT's refusal data, or the (decoded) ack."""
    if handshake == "connect-auth":
        return outcome[f"{socket} auth"]
    return outcome.ack(f"{socket} auth", encoded=handshake in BASE64)


# -- the cast -------------------------------------------------------------------------


@dataclass
class Cast:
    """App A: alice, bob and erin in "lobby", carol in "side" only; app B: its own bob
    in its own "lobby" (the same ids on purpose)."""

    keys: AppKeys
    tokens: dict[str, str]
    other: AppKeys
    other_bob: str

    def user(self, name: str) -> dict[str, str]:
        return {"IM-CLIENT-KEY": self.keys.client_key, "IM-Authorization": self.tokens[name]}

    @property
    def api(self) -> dict[str, str]:
        return {"IM-API-KEY": self.keys.api_key}


@pytest.fixture
def cast(server: Server, node: str) -> Cast:
    keys, other = server.new_app("node-a"), server.new_app("node-b")
    with server.client(**{"IM-API-KEY": keys.api_key}) as admin:
        tokens = {
            name: issue_token(admin, name, nickname=name.title())
            for name in ("alice", "bob", "carol", "erin")
        }
        members = ["alice", "bob", "erin"]
        ok(admin.post("/rooms", json={"_id": "lobby", "name": "Lobby", "members": members}))
        ok(admin.post("/rooms", json={"_id": "side", "name": "Side", "members": ["carol"]}))
    with server.client(**{"IM-API-KEY": other.api_key}) as admin:
        other_bob = issue_token(admin, "bob", nickname="Other Bob")
        ok(admin.post("/rooms", json={"_id": "lobby", "name": "B", "members": ["bob"]}))
    return Cast(keys, tokens, other, other_bob)


# -- handshakes that succeed ----------------------------------------------------------


@pytest.mark.parametrize("handshake", HANDSHAKES)
def test_each_handshake_authenticates_and_receives(
    node: str, server: Server, cast: Cast, handshake: str
) -> None:
    s = Scenario(handshake)
    HANDSHAKES[handshake](s, "bob", cast.keys.client_key, cast.tokens["bob"])
    body = {"message": "over REST", "messageType": "text"}
    s.http("POST", "/rooms/lobby/message", cast.user("alice"), body, label="sent")
    s.wait_events("bob", "chat message")
    (outcome,) = play(node, server, s)

    answer = auth_answer(outcome, "bob", handshake)
    if handshake == "connect-auth":
        assert answer == {"connected": True}
    elif handshake == "web-auth2-no-ack":
        assert answer == {"RC": 0, "RM": "OK", "result": {"rooms": {}}}
    else:
        assert answer["RC"] == 0 and answer["RM"] == "OK"
        assert answer["result"]["_id"] == "bob" and answer["result"]["nickname"] == "Bob"
    if handshake in BASE64:
        assert outcome.ack("bob conf", encoded=True)["result"] == {"encoding": "base64"}

    sent = outcome["sent"]
    assert sent["status"] == 200, sent
    (message,) = outcome.heard("bob", "chat message", encoded=handshake in BASE64)
    assert message["_id"] == sent["body"]["result"]["_id"]
    assert message["message"] == "over REST" and message["room"] == "lobby"
    assert isinstance(message["sender"], dict) and message["sender"]["_id"] == "alice"
    for stamp in ("createdAtMS", "updatedAtMS", "messageTimeMS"):
        assert isinstance(message[stamp], int) and message[stamp] > 0, stamp
    assert outcome.sockets["bob"]["disconnect"] is None


def test_auth2_takes_the_token_from_its_headers(node: str, server: Server, cast: Cast) -> None:
    s = Scenario("token in headers")
    s.open("bob")
    headers = {"IM-Client-Key": cast.keys.client_key, "IM-Authorization": cast.tokens["bob"]}
    s.emit("bob", "auth2", None, headers, label="bob auth")
    (outcome,) = play(node, server, s)
    answer = outcome.ack("bob auth")
    assert answer["RC"] == 0 and answer["result"]["_id"] == "bob"


# -- handshakes that are refused ------------------------------------------------------


@dataclass
class Refusal:
    """Credentials that REST refuses with ``status``/``code``: the socket must too."""

    key: str | None
    token: str
    headers: dict[str, str]
    status: int
    code: str


def refusal(server: Server, cast: Cast, case: str) -> Refusal:
    key, token = cast.keys.client_key, cast.tokens["bob"]
    if case == "missing-client-key":
        return Refusal(None, token, {}, 401, "MISSING_CLIENT_KEY")
    if case == "invalid-client-key":
        return Refusal("not-a-client-key", token, {}, 403, "INVALID_CLIENT_KEY")
    if case == "key-on-another-apps-domain":
        domain = f"chat-{secrets.token_hex(4)}.other.example"
        server.new_app("node-hosted", domains=[domain])
        return Refusal(key, token, {"Host": domain}, 403, "CLIENT_KEY_MISMATCH")
    if case == "origin-not-allowed":
        web = server.new_app("node-web", origins=["https://app.node.example"])
        with server.client(**{"IM-API-KEY": web.api_key}) as admin:
            web_token = issue_token(admin, "bob")
        headers = {"Origin": "https://evil.node.example"}
        return Refusal(web.client_key, web_token, headers, 403, "CLIENT_KEY_MISMATCH")
    if case == "bad-token":
        return Refusal(key, "not-a-token", {}, 401, "INVALID_TOKEN")
    if case == "revoked-token":
        with server.client(**cast.api) as admin:
            assert admin.delete("/admin/clients/bob/token").status_code == 200
        return Refusal(key, token, {}, 401, "INVALID_TOKEN")
    assert case == "expired-token", case
    return Refusal(key, expired_token(server, cast), {}, 401, "INVALID_TOKEN")


def expired_token(server: Server, cast: Cast) -> str:
    """An assigned token that expires a moment from now (the API takes no past date),
    returned once REST refuses it."""
    token = f"dave-{secrets.token_hex(8)}"
    body = {"_id": "dave", "token": token, "expirationDate": iso(now_ms() + 300)}
    with server.client(**cast.api) as admin:
        ok(admin.post("/admin/clients", json=body))
    headers = {"IM-CLIENT-KEY": cast.keys.client_key, "IM-Authorization": token}
    with server.client(**headers) as client:
        deadline = now_ms() + 5000
        while client.get("/me").status_code == 200:
            assert now_ms() < deadline, "the token never expired"
    return token


def rest_refusal(server: Server, case: Refusal) -> dict[str, Any]:
    """``GET /me`` with the same credentials: the REST answer to compare with."""
    headers = {"IM-Authorization": case.token, **case.headers}
    if case.key is not None:
        headers["IM-CLIENT-KEY"] = case.key
    response = httpx.get(f"{server.url}/me", headers=headers, timeout=10)
    body: dict[str, Any] = response.json()
    assert response.status_code == case.status, body
    assert body["error"] == case.code, body
    return body


REFUSALS = [
    "missing-client-key",
    "invalid-client-key",
    "key-on-another-apps-domain",
    "origin-not-allowed",
    "bad-token",
    "expired-token",
    "revoked-token",
]


@pytest.mark.parametrize("case", REFUSALS)
def test_refused_handshakes_answer_the_rest_error_and_close(
    node: str, server: Server, cast: Cast, case: str
) -> None:
    refused = refusal(server, cast, case)
    rest = rest_refusal(server, refused)
    scenarios = []
    for handshake in ("connect-auth", "imkit-auth2-base64", "legacy-auth"):
        s = Scenario(f"refused {handshake}")
        HANDSHAKES[handshake](s, "bob", refused.key, refused.token, headers=refused.headers)
        if handshake != "connect-auth":
            s.wait_closed("bob")
        scenarios.append(s)
    no_ack = Scenario("refused web-auth2-no-ack")  # no ack to read: the close says it all
    web_auth2(no_ack, "bob", refused.key, refused.token, probe=False, headers=refused.headers)
    scenarios.append(no_ack.wait_closed("bob"))
    connect, auth2, legacy, web = play(node, server, *scenarios)

    refusal_of_connect = connect["bob auth"].get("connectError")
    assert refusal_of_connect is not None, connect["bob auth"]
    assert refusal_of_connect["message"] == refused.code
    answers = [
        refusal_of_connect["data"],
        auth2.ack("bob auth", encoded=True),
        legacy.ack("bob auth"),
    ]
    for answer in answers:
        assert answer["RC"] == refused.status
        assert answer["error"] == {"code": refused.code, "message": rest["message"]}
        # RM is free text that clients never parse; the contract fixes it for 401 only.
        assert isinstance(answer["RM"], str) and answer["RM"]
        if refused.status == 401:
            assert answer["RM"] == "Unauthorized"
    for outcome in (auth2, legacy, web):
        closed = outcome["bob closed"]
        assert closed.get("reason") in ("transport close", "io server disconnect"), closed
    for outcome in (connect, auth2, legacy, web):
        assert outcome.heard("bob", "chat message") == []


# -- delivery -------------------------------------------------------------------------


def test_messages_reach_members_only_of_the_same_app(node: str, server: Server, cast: Cast) -> None:
    s = Scenario("delivery")
    connect_auth(s, "bob", cast.keys.client_key, cast.tokens["bob"])
    imkit_auth2(s, "erin", cast.keys.client_key, cast.tokens["erin"])
    web_auth2(s, "carol", cast.keys.client_key, cast.tokens["carol"])
    connect_auth(s, "other bob", cast.other.client_key, cast.other_bob)
    s.open("anonymous")  # connected, never authenticated
    body = {"room": "lobby", "sender": "alice", "message": "hello", "messageType": "text"}
    s.http("POST", "/messages", cast.api, body, label="sent")
    s.wait_events("bob", "chat message").wait_events("erin", "chat message")
    for socket in ("carol", "other bob", "anonymous"):
        s.fence(socket)
    (outcome,) = play(node, server, s)

    sent = outcome["sent"]["body"]["result"]
    (plain,) = outcome.heard("bob", "chat message")
    (encoded,) = outcome.heard("erin", "chat message", encoded=True)
    assert plain == encoded, "both encodings carry the same message"
    assert plain["_id"] == sent["_id"] and plain["sender"]["_id"] == "alice"
    assert plain["sender"]["nickname"] == "Alice"
    for stamp in ("createdAtMS", "updatedAtMS", "messageTimeMS"):
        assert isinstance(plain[stamp], int), stamp
    assert outcome.ack("carol fence")["RC"] == 0
    assert outcome.events("carol") == [], "not a member of lobby"
    assert outcome.events("other bob") == [], "the same ids in another app"
    assert outcome.events("anonymous") == [], "not authenticated"


def test_room_last_read_and_typing_events(node: str, server: Server, cast: Cast) -> None:
    s = Scenario("room events")
    connect_auth(s, "alice", cast.keys.client_key, cast.tokens["alice"])
    connect_auth(s, "bob", cast.keys.client_key, cast.tokens["bob"])
    imkit_auth2(s, "erin", cast.keys.client_key, cast.tokens["erin"])
    connect_auth(s, "carol", cast.keys.client_key, cast.tokens["carol"])
    s.http("PUT", "/rooms/lobby", cast.api, {"name": "Renamed"}, label="renamed")
    s.wait_events("bob", "room").wait_events("erin", "room")
    body = {"message": "read me", "messageType": "text"}
    s.http("POST", "/rooms/lobby/message", cast.user("alice"), body, label="sent")
    s.wait_events("bob", "chat message").fence("carol")
    (outcome,) = play(node, server, s)
    message_id = outcome["sent"]["body"]["result"]["_id"]

    # The read receipt names a message only known now: a second scenario.
    s = Scenario("receipts and typing")
    connect_auth(s, "alice", cast.keys.client_key, cast.tokens["alice"])
    imkit_auth2(s, "erin", cast.keys.client_key, cast.tokens["erin"])
    connect_auth(s, "carol", cast.keys.client_key, cast.tokens["carol"])
    s.http("PUT", "/rooms/lobby/lastRead", cast.user("bob"), {"message": message_id})
    s.wait_events("alice", "lastRead").wait_events("erin", "lastRead")
    s.emit("alice", "typing", "lobby", ack=False)
    s.wait_events("erin", "typing")
    s.emit("erin", "typing", {"room": "lobby"}, ack=False)
    s.wait_events("alice", "typing")
    s.fence("carol")
    (later,) = play(node, server, s)

    room = outcome.heard("bob", "room")[-1]
    assert room["_id"] == "lobby" and room["name"] == "Renamed"
    assert outcome.heard("erin", "room", encoded=True)[-1]["name"] == "Renamed"
    assert outcome.heard("alice", "room")[-1]["name"] == "Renamed"

    receipt = {"roomID": "lobby", "memberID": "bob", "messageID": message_id}
    assert later.heard("alice", "lastRead") == [receipt]
    assert later.heard("erin", "lastRead", encoded=True) == [receipt]

    (from_alice,) = later.heard("erin", "typing", encoded=True)
    assert from_alice["room"] == "lobby" and from_alice["sender"] == "alice"
    assert from_alice["senderInfo"]["nickname"] == "Alice"
    heard_by_alice = later.heard("alice", "typing")
    assert [t["sender"] for t in heard_by_alice] == ["erin"], "the sender does not hear itself"

    for run in (outcome, later):
        assert run.events("carol") == [], "carol is not in lobby"


# -- client events --------------------------------------------------------------------


def test_chat_message_from_a_socket_is_stored_once(node: str, server: Server, cast: Cast) -> None:
    body = {"room": "lobby", "message": "from Node", "clientMessageId": secrets.token_hex(6)}
    s = Scenario("socket send")
    imkit_auth2(s, "alice", cast.keys.client_key, cast.tokens["alice"])
    connect_auth(s, "bob", cast.keys.client_key, cast.tokens["bob"])
    s.emit("alice", "chat message", body, label="first")
    s.emit("alice", "chat message", body, label="again")
    s.wait_events("bob", "chat message").fence("bob")
    s.emit("alice", "chat message", {"room": "side", "message": "x"}, label="not a member")
    s.emit("alice", "chat message", {"message": "no room"}, label="no room")
    s.http("GET", "/rooms/lobby/messages/v3?limit=50", cast.user("bob"), label="history")
    (outcome,) = play(node, server, s)

    first = outcome.ack("first", encoded=True)
    again = outcome.ack("again", encoded=True)
    assert first["RC"] == 0 and first["RM"] == "OK"
    stored = first["result"]
    assert stored["message"] == "from Node" and stored["clientMessageId"] == body["clientMessageId"]
    assert isinstance(stored["sender"], dict) and stored["sender"]["_id"] == "alice"
    assert again["RC"] == 0 and again["result"]["_id"] == stored["_id"]

    assert [m["_id"] for m in outcome.heard("bob", "chat message")] == [stored["_id"]]
    history = outcome["history"]["body"]["result"]["data"]
    same = [m for m in history if m.get("clientMessageId") == body["clientMessageId"]]
    assert [m["_id"] for m in same] == [stored["_id"]]

    not_member = outcome.ack("not a member", encoded=True)
    assert not_member["RC"] == 403 and not_member["error"]["code"] == "NOT_ROOM_MEMBER"
    no_room = outcome.ack("no room", encoded=True)
    assert no_room["RC"] == 400 and no_room["error"]["code"] == "MISSING_PARAMETER"
    assert outcome.sockets["alice"]["disconnect"] is None, "an error ack keeps the socket"


def test_an_unauthenticated_socket_may_not_send(node: str, server: Server, cast: Cast) -> None:
    s = Scenario("unauthenticated")
    connect_auth(s, "bob", cast.keys.client_key, cast.tokens["bob"])
    s.open("anonymous")
    s.emit("anonymous", "chat message", {"room": "lobby", "message": "x"}, label="send")
    s.emit("anonymous", "typing", "lobby", ack=False)
    s.emit("anonymous", "resume", {"rooms": {"lobby": 0}}, label="resume")
    s.fence("bob")
    (outcome,) = play(node, server, s)

    for label in ("send", "resume"):
        answer = outcome.ack(label)
        assert (answer["RC"], answer["RM"]) == (401, "Unauthorized"), label
    assert outcome.events("bob") == [], "nothing was sent or relayed"
    assert outcome.events("anonymous") == []


def test_a_wait_that_is_never_met_is_reported(node: str, server: Server, cast: Cast) -> None:
    """The harness can fail: an event that never comes is a timeout, within its bound."""
    s = Scenario("nothing comes")
    connect_auth(s, "carol", cast.keys.client_key, cast.tokens["carol"])
    s.wait_events("carol", "chat message")
    (outcome,) = play(node, server, s, wait_ms=300, strict=False)
    assert outcome["carol heard 1 chat message"] == {"count": 0, "timedOut": True}
