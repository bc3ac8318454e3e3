"""Generated frames against a live gateway: nothing a client sends may cost more than
its own socket.

Each example opens one healthy socket (carol, in the room ``fence``) and one to three
fuzzed ones (trudy), brings each fuzzed socket to a stage of its handshake (opened;
connected without credentials; authenticated by CONNECT; authenticated by the IMKIT
``conf`` + ``auth2``), and sends it generated frames: Engine.IO packets of every type
and junk, Socket.IO packets (any type, namespace, ack id, JSON that is valid, invalid,
deeply nested or holds huge numbers), IMKIT events with arbitrary arguments, text or
binary. Then, for every example:

- each fuzzed socket answers an Engine.IO ping or is closed within ``SETTLE_WITHIN``
  seconds (nothing is stuck), never with 1011 (an internal error), and one sent only
  frames a client may send is never closed;
- no acknowledgement carries an RC of 500 or more;
- the healthy socket still gets a message sent through REST (the node serves on);
- the node logged no traceback and no error.

``PARLEY_FUZZ_EXAMPLES=N`` runs N random examples instead of the short fixed set.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import websockets
from hypothesis import given
from hypothesis import strategies as st

from parley.gateway.protocol import ProtocolError, decode_socket
from tests.conftest import LogCapture, Server, issue_token, ok
from tests.fuzz.budget import fuzz_settings, is_full_run
from tests.gateway.wire import CRASH_MARKS, Wire

SHORT_EXAMPLES = 40
SETTLE_WITHIN = 5.0  # seconds a fuzzed socket has to answer a ping, or be closed
ROOM = "lobby"  # trudy's and carol's
FENCE_ROOM = "fence"  # carol's alone: where the healthy socket's proof arrives
# Stand-ins the strategies put in frames, replaced by the real credentials at send time:
# generated frames then reach the paths behind a successful authentication too.
TOKEN, CLIENT_KEY = "$TOKEN$", "$CLIENT_KEY$"
ERROR_MARKS = (*CRASH_MARKS, " ERROR ", " CRITICAL ", "Task exception was never retrieved")
# The test's own clients log every frame at DEBUG: not the node's log.
CLIENT_LOGGERS = ("websockets.client ", "httpx ", "httpcore.", "hypothesis")


# -- the node -----------------------------------------------------------------------


@dataclass
class LiveGateway:
    """The session's server, with an app whose users trudy and carol share ``lobby``."""

    server: Server
    client_key: str
    api_key: str
    tokens: dict[str, str]
    log: LogCapture
    tally: Counter[str] = field(default_factory=Counter)  # examples, sockets, frames sent

    @property
    def ws_url(self) -> str:
        return self.server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"

    def auth(self, user: str) -> dict[str, str]:
        return {"clientKey": self.client_key, "token": self.tokens[user]}

    def admin(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.server.url, headers={"IM-API-KEY": self.api_key}, timeout=10
        )

    def fill_in(self, frame: str | bytes) -> str | bytes:
        """The frame with trudy's real credentials in place of the stand-ins."""
        if isinstance(frame, bytes):
            return frame
        return frame.replace(TOKEN, self.tokens["trudy"]).replace(CLIENT_KEY, self.client_key)


@pytest.fixture(scope="module")
def gateway(server: Server, log_capture: LogCapture) -> Iterator[LiveGateway]:
    keys = server.new_app("fuzz-frames")
    # Every example sends through REST: the API Key's rate limit is not under test.
    server.call(lambda s: s.apps.update(keys.id, rate_limit_per_minute=10**9))
    with server.client(**{"IM-API-KEY": keys.api_key}) as admin:
        tokens = {user: issue_token(admin, user) for user in ("carol", "trudy")}
        members = ["carol", "trudy"]
        ok(admin.post("/rooms", json={"_id": ROOM, "name": "Lobby", "members": members}))
        ok(admin.post("/rooms", json={"_id": FENCE_ROOM, "name": "Fence", "members": ["carol"]}))
    # uvicorn logs an unhandled exception of the app on its own logger, which does not
    # propagate to the root logger the capture listens on.
    uvicorn_log = logging.getLogger("uvicorn")
    uvicorn_log.addHandler(log_capture)
    live = LiveGateway(server, keys.client_key, keys.api_key, tokens, log_capture)
    try:
        yield live
    finally:
        uvicorn_log.removeHandler(log_capture)
        print(f"\ngateway frames: {dict(sorted(live.tally.items()))}")


# -- strategies ---------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """A frame to send; ``benign`` when a client may send it at its stage without being
    closed for it."""

    data: str | bytes
    benign: bool = False


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # now and then beyond 64 bits
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
HUGE_NUMBERS = (
    "1e400",
    "-1e400",
    "1" * 400,
    "18446744073709551616",
    "-9223372036854775809",
    "9223372036854775808",
    "1.7976931348623157e309",
    "4.9e-400",
    "-0",
)
# Digits beyond ASCII: ``str.isdigit`` says yes to them, ``int`` to some.
ODD_DIGITS = ("²", "٣", "߂", "໒", "¹", "\U0001d7d8")  # the last: a double-struck 0


def nested(depth: int, open_: str, close: str) -> str:
    return open_ * depth + close * depth


json_texts = st.one_of(
    json_values.map(json.dumps),
    st.text(max_size=30),  # mostly not JSON at all
    st.integers(1, 3000).map(lambda n: nested(n, "[", "]")),
    st.integers(1, 3000).map(lambda n: nested(n, '{"a":', "}").replace(":}", ":1}", 1)),
    st.sampled_from(HUGE_NUMBERS).map(lambda n: f'["typing",{n}]'),
    st.sampled_from(HUGE_NUMBERS),
    st.sampled_from(["[", "]", "{}", "[]", '["conf"', "[NaN]", "[Infinity]", '"\\ud800"']),
)

engine_types = st.sampled_from("0123456")
junk_engine = st.one_of(
    st.just(""),
    st.sampled_from(["7", "8", "9", "x", " ", "\x00", *ODD_DIGITS]).flatmap(
        lambda head: st.text(max_size=10).map(lambda tail: head + tail)
    ),
    st.text(max_size=30),
)
engine_packets = st.builds(lambda kind, data: kind + data, engine_types, st.text(max_size=30))

socket_types = st.sampled_from([*"0123456789", *ODD_DIGITS, "", "x"])
namespaces = st.sampled_from(["", "/", "/,", "/admin,", "/admin", "/x/y,", "/ünï,", "/,/,"])
ack_ids = st.one_of(
    st.just(""),
    st.integers(0, 2**70).map(str),
    st.sampled_from(["0", "00", *ODD_DIGITS, "1" + ODD_DIGITS[0], "9" * 17]),
)
socket_packets = st.builds(
    lambda kind, ns, ack, body: "4" + kind + ns + ack + body,
    socket_types,
    namespaces,
    ack_ids,
    st.one_of(st.just(""), json_texts),
)

tokens = st.one_of(st.just(TOKEN), st.text(max_size=20), json_values)
client_keys = st.one_of(st.just(CLIENT_KEY), st.text(max_size=20), json_values)
auth_headers = st.fixed_dictionaries(
    {},
    optional={
        "IM-CLIENT-KEY": client_keys,
        "CLIENT_KEY": client_keys,
        "IM-Authorization": tokens,
        "Authorization": tokens.map(lambda t: f"Bearer {t}" if isinstance(t, str) else t),
    },
)
rooms = st.one_of(st.sampled_from([ROOM, FENCE_ROOM, "nowhere", ""]), json_values)
message_bodies = st.fixed_dictionaries(
    {"room": rooms},
    optional={
        "message": st.one_of(st.text(max_size=40), json_values),
        "messageType": st.one_of(
            st.sampled_from(["text", "image", "file", "recall", "custom", ""]), json_values
        ),
        "_id": st.one_of(st.text(max_size=12), json_values),
        "extra": json_values,
        "mentions": json_values,
        "push": json_values,
    },
)
resumes = st.fixed_dictionaries(
    {},
    optional={
        "rooms": st.one_of(
            st.dictionaries(
                st.one_of(st.sampled_from([ROOM, FENCE_ROOM]), st.text(max_size=8)),
                st.one_of(st.integers(-(2**70), 2**70), json_values),
                max_size=3,
            ),
            json_values,
        )
    },
)
# The arguments of each IMKIT event: mostly shaped as the contract says, sometimes not.
EVENT_ARGS: dict[str, Any] = {
    "conf": st.tuples(
        st.one_of(
            st.fixed_dictionaries(
                {"encoding": st.one_of(st.sampled_from(["base64", "plain", "custom"]), json_values)}
            ),
            json_values,
        )
    ),
    "typing": st.tuples(
        st.one_of(rooms, st.fixed_dictionaries({}, optional={"room": rooms, "roomId": rooms}))
    ),
    "chat message": st.tuples(st.one_of(message_bodies, json_values)),
    "resume": st.tuples(st.one_of(resumes, json_values)),
    "auth2": st.tuples(tokens, st.one_of(auth_headers, json_values)),
    "auth": st.tuples(tokens),
}
any_args = st.lists(json_values, max_size=3).map(tuple)
# Events an authenticated client may send whatever their arguments: an error is acked,
# the socket stays. (A failed auth2/auth closes the socket, as it should.)
SURVIVABLE = ("conf", "typing", "chat message", "resume")


@st.composite
def imkit_events(draw: st.DrawFn) -> Frame:
    name = draw(st.one_of(st.sampled_from(sorted(EVENT_ARGS)), st.text(max_size=12)))
    args = draw(st.one_of(EVENT_ARGS.get(name, any_args), any_args))
    args = args[: draw(st.integers(0, len(args)))] if draw(st.booleans()) else args
    ack = draw(st.one_of(st.none(), st.integers(0, 2**53)))
    text = "42" + ("" if ack is None else str(ack)) + json.dumps([name, *args])
    return Frame(text, benign=name in SURVIVABLE)


# CONNECT with the modern handshake's auth object: credentials (real or not) and a resume.
connect_frames = st.builds(
    lambda auth: Frame("40" + json.dumps(auth)),
    st.fixed_dictionaries(
        {},
        optional={
            "clientKey": client_keys,
            "token": tokens,
            "resume": st.one_of(resumes.map(lambda r: r.get("rooms")), json_values),
        },
    ),
)


def ping(payload: str) -> Frame:
    return Frame("2" + payload, benign=True)


benign_always = st.one_of(
    st.text(max_size=20).map(ping),
    st.just(Frame("6", benign=True)),  # noop
    st.just(Frame("3", benign=True)),  # an unasked pong
)
frames = st.one_of(
    benign_always,
    imkit_events(),
    connect_frames,
    st.builds(Frame, engine_packets),
    st.builds(Frame, junk_engine),
    st.builds(Frame, socket_packets),
    st.builds(Frame, st.binary(max_size=64)),
    st.builds(Frame, imkit_events().map(lambda f: f.data.encode())),  # a good one, as binary
    st.builds(Frame, st.lists(json_values, max_size=2).map(lambda v: "43" + json.dumps(v))),
)

STAGES = ("open", "connected", "authenticated", "imkit")


@dataclass(frozen=True)
class Script:
    stage: str
    frames: tuple[Frame, ...]

    def benign(self) -> bool:
        """Only frames its client may send at its stage: it must not be closed."""
        authenticated = self.stage in ("authenticated", "imkit")
        return all(
            f.benign
            and (authenticated or not isinstance(f.data, str) or not f.data.startswith("4"))
            for f in self.frames
        )


# Half the scripts are mostly well-formed, so that they get past the first frame and
# reach what lies behind it (events answered, encodings switched, messages stored).
well_formed = st.one_of(benign_always, imkit_events(), imkit_events(), connect_frames)
scripts = st.builds(
    Script,
    st.sampled_from(STAGES),
    st.one_of(
        st.lists(frames, min_size=1, max_size=6),
        st.lists(well_formed, min_size=1, max_size=8),
    ).map(tuple),
)


# -- one example ----------------------------------------------------------------------


@dataclass
class Outcome:
    script: Script
    closed: bool
    close_code: int | None
    frames: list[str] = field(default_factory=list)


async def reach(wire: Wire, gateway: LiveGateway, stage: str) -> None:
    if stage == "open":
        return
    if stage == "connected":
        assert (await wire.connect()).startswith("40{")
    elif stage == "authenticated":
        assert (await wire.connect(gateway.auth("trudy"))).startswith("40{")
    else:
        assert (await wire.connect()).startswith("40{")
        await wire.ws.send('421["conf",{"encoding":"base64"}]')
        await wire.expect("431[")
        headers = {"IM-CLIENT-KEY": gateway.client_key}
        await wire.ws.send("422" + json.dumps(["auth2", gateway.tokens["trudy"], headers]))
        answer = await wire.expect("432[")
        assert '"RC":0' in base64.b64decode(json.loads(answer[3:])[0]).decode(), answer


async def settle(wire: Wire) -> None:
    """Wait until the socket answers a ping of ours (every frame sent before is handled)
    or is closed; fail when neither happens within ``SETTLE_WITHIN`` seconds."""
    probe = "probe" + secrets.token_hex(4)
    if not wire.closed.is_set():
        with contextlib.suppress(websockets.ConnectionClosed):
            await wire.ws.send("2" + probe)
    try:
        await wire.until(lambda: ("3" + probe) in wire.frames, "the probe's pong", SETTLE_WITHIN)
    except AssertionError:
        if not wire.closed.is_set():
            raise AssertionError(
                f"stuck: neither answered nor closed: {wire.frames[-3:]}"
            ) from None


async def play_script(gateway: LiveGateway, script: Script) -> Outcome:
    wire = await Wire.open(gateway)
    try:
        await reach(wire, gateway, script.stage)
        for frame in script.frames:
            if wire.closed.is_set():
                break
            try:
                await wire.ws.send(gateway.fill_in(frame.data))
            except websockets.ConnectionClosed:
                break
            gateway.tally["frames sent"] += 1
        await settle(wire)
        closed = wire.closed.is_set()
        gateway.tally["sockets closed" if closed else "sockets kept"] += 1
        return Outcome(script, closed, wire.ws.close_code if closed else None, wire.frames)
    finally:
        await wire.close()


def ack_payloads(frames: list[str]) -> list[Any]:
    """The first argument of every ACK the server sent (decoded when base64)."""
    found = []
    for frame in frames:
        if not frame.startswith("43"):
            continue
        body = frame[2:].lstrip("0123456789")
        (payload,) = json.loads(body)
        if isinstance(payload, str):
            with contextlib.suppress(binascii.Error, ValueError):
                payload = json.loads(base64.b64decode(payload, validate=True))
        found.append(payload)
    return found


async def play(gateway: LiveGateway, batch: list[Script]) -> list[Outcome]:
    async with gateway.admin() as admin:
        healthy = await Wire.open(gateway)
        try:
            assert (await healthy.connect(gateway.auth("carol"))).startswith("40{")
            outcomes = await asyncio.gather(*(play_script(gateway, s) for s in batch))
            fence = ok(
                await admin.post(
                    "/messages",
                    json={
                        "room": FENCE_ROOM,
                        "sender": "carol",
                        "message": "still here " + secrets.token_hex(4),
                        "messageType": "text",
                    },
                )
            )
            await healthy.until(
                lambda: any(m.get("_id") == fence["_id"] for m in healthy.chat()),
                "the fence message on the healthy socket",
            )
            assert (await admin.get("/health")).status_code == 200
        finally:
            await healthy.close()
    return list(outcomes)


def assert_clean_log(lines: list[str]) -> None:
    """The node logged no traceback and no error (the test's clients are left out)."""
    logged = "\n".join(line for line in lines if not line.startswith(CLIENT_LOGGERS))
    assert not any(mark in logged for mark in ERROR_MARKS), logged[-3000:]


def check(outcome: Outcome) -> None:
    assert outcome.close_code != 1011, "closed as an internal error"
    if outcome.script.benign():
        assert not outcome.closed, f"closed for frames a client may send: {outcome.frames[-3:]}"
    for payload in ack_payloads(outcome.frames):
        if isinstance(payload, dict) and isinstance(payload.get("RC"), int):
            assert payload["RC"] < 500, payload


@pytest.mark.timeout(0 if is_full_run() else 120)  # 0: no limit
@given(batch=st.lists(scripts, min_size=1, max_size=3))
@fuzz_settings(SHORT_EXAMPLES)
def test_generated_frames_cost_only_their_own_socket(
    gateway: LiveGateway, batch: list[Script]
) -> None:
    since = len(gateway.log.lines)
    gateway.tally["examples"] += 1
    outcomes = asyncio.run(asyncio.wait_for(play(gateway, batch), 60))
    for outcome in outcomes:
        check(outcome)
    assert_clean_log(gateway.log.lines[since:])


# -- what the fuzzing found -------------------------------------------------------------

# Socket.IO types and ack ids are ASCII digits. ``str.isdigit`` also says yes to "²" (which
# ``int`` then refused: an unhandled ValueError ended the socket with a traceback) and to
# "٣" (which ``int`` read as 3, so "4٣[1]" passed for an ACK).
NON_ASCII_DIGITS = ["4²", '42²["conf",{}]', "4٣[1]", '42٣["conf",{}]', "4\U0001d7d8"]


@pytest.mark.parametrize("frame", NON_ASCII_DIGITS)
def test_non_ascii_digits_are_a_protocol_error(frame: str) -> None:
    with pytest.raises(ProtocolError):
        decode_socket(frame[1:])


@pytest.mark.parametrize("frame", NON_ASCII_DIGITS)
def test_non_ascii_digits_close_only_their_own_socket(gateway: LiveGateway, frame: str) -> None:
    since = len(gateway.log.lines)
    script = Script("authenticated", (Frame(frame),))
    (outcome,) = asyncio.run(asyncio.wait_for(play(gateway, [script]), 30))
    assert outcome.closed, outcome.frames
    check(outcome)
    assert_clean_log(gateway.log.lines[since:])
