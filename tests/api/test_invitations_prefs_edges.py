"""Invitations, preferences and the current user's devices and sessions at their edges:
every endpoint's success shape and errors, who may do what, what crosses between users
and apps, and which events reach whom (contract §3.2, §3.5, §3.6, §4.2, §4.5, §5.4)."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from parley.services.container import Services
from parley.services.events import CHANNEL, Event
from parley.storage.tables import DeviceRow, RoomPrefRow, UserPrefRow
from tests.api.conftest import Recorder
from tests.api.test_clients import add_token_row
from tests.conftest import AppKeys, Server, assert_error, issue_token, ok

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
PREF_LIMIT = 65_536  # bytes of JSON one /me/pref key may hold


# -- fixtures and helpers -------------------------------------------------------------------


@dataclass
class Crowd:
    """Users of one fresh app, each with a token and a client of their own."""

    server: Server
    keys: AppKeys
    admin: httpx.Client
    tokens: dict[str, str] = field(default_factory=dict)
    clients: dict[str, httpx.Client] = field(default_factory=dict)
    extra: list[httpx.Client] = field(default_factory=list)

    def __getitem__(self, name: str) -> httpx.Client:
        return self.clients[name]

    def session(self, token: str, **headers: str) -> httpx.Client:
        """Another client with this app's Client Key and ``token``."""
        client = self.server.client(
            **{"IM-CLIENT-KEY": self.keys.client_key, "IM-Authorization": token, **headers}
        )
        self.extra.append(client)
        return client

    def acting(self, name: str) -> httpx.Client:
        """The API Key acting as ``name`` (IM-CLIENT-ID)."""
        client = self.server.client(**{"IM-API-KEY": self.keys.api_key, "IM-CLIENT-ID": name})
        self.extra.append(client)
        return client


def gather(server: Server, keys: AppKeys, admin: httpx.Client, names: list[str]) -> Crowd:
    crowd = Crowd(server, keys, admin)
    for name in names:
        crowd.tokens[name] = issue_token(admin, name, nickname=name.title())
        crowd.clients[name] = crowd.session(crowd.tokens[name])
    return crowd


@pytest.fixture
def crowd(server: Server, app_keys: AppKeys, admin: httpx.Client) -> Iterator[Crowd]:
    people = gather(server, app_keys, admin, ["alice", "bob", "carol", "dave", "erin"])
    yield people
    for client in people.extra:
        client.close()


@pytest.fixture
def stranger(server: Server) -> Iterator[httpx.Client]:
    """User "bob" of another app: same name, different world. That app also has "zed",
    who is no user of the test's app."""
    keys = server.new_app("elsewhere")
    with server.client(**{"IM-API-KEY": keys.api_key}) as admin:
        people = gather(server, keys, admin, ["bob", "zed"])
        yield people["bob"]
        for client in people.extra:
            client.close()


class Heard:
    """The events of one app, as the real-time gateway receives them."""

    def __init__(self, recorder: Recorder, server: Server, app_id: str) -> None:
        self.recorder = recorder
        self.server = server
        self.app_id = app_id

    def settle(self) -> None:
        """Wait until everything published so far has arrived: the broker keeps order, so
        once a probe sent now comes back, every earlier event is in."""
        marker = secrets.token_hex(8)
        probe = Event("probe", "probe", None, rooms=[marker])

        async def publish(services: Services) -> bool:
            return await services.broker.publish(CHANNEL, probe.encode())

        self.server.call(publish)
        self.recorder.wait_for("probe", room=marker)

    def of(self, kind: str) -> list[Event]:
        self.settle()
        return [e for e in self.recorder.events if e.app_id == self.app_id and e.kind == kind]


@pytest.fixture
def heard(server: Server, app_keys: AppKeys, events: Recorder) -> Heard:
    return Heard(events, server, app_keys.id)


def club(crowd: Crowd, members: tuple[str, ...] = ("bob", "carol")) -> str:
    """A group room of alice (owner) with ``members`` added at once (no invitations)."""
    room = crowd["alice"].post("/rooms/createAndJoin", json={"name": "Club", "invitee": members})
    return str(ok(room)["_id"])


def invite(client: httpx.Client, room_id: str, *invitees: str) -> dict[str, Any]:
    body = {"invitees": list(invitees), "invitationRequired": True}
    result: dict[str, Any] = ok(client.post(f"/rooms/{room_id}/members", json=body))
    return result


def invitees_of(client: httpx.Client, room_id: str) -> list[str]:
    return [i["invitee"]["_id"] for i in ok(client.get(f"/rooms/{room_id}/invitations"))["data"]]


def my_rooms_invited(client: httpx.Client) -> list[str]:
    return [i["room"]["_id"] for i in ok(client.get("/rooms/invitations"))["data"]]


def members_of(client: httpx.Client, room_id: str) -> list[str]:
    return [m["_id"] for m in ok(client.get(f"/rooms/{room_id}"))["members"]]


def devices(crowd: Crowd, user_id: str) -> list[str]:
    found = crowd.server.call(lambda s: s.devices.devices(crowd.keys.id, user_id))
    return sorted(d["deviceId"] for d in found)


def rows_of(server: Server, app_id: str, user_id: str) -> int:
    """Preference and device rows stored for one user of one app."""

    async def count(services: Services) -> int:
        total = 0
        async with services.db.read() as s:
            for table in (RoomPrefRow, UserPrefRow, DeviceRow):
                total += int(
                    (
                        await s.execute(
                            select(func.count())
                            .select_from(table)
                            .where(table.app_id == app_id, table.user_id == user_id)
                        )
                    ).scalar()
                    or 0
                )
        return total

    return server.call(count)


def assert_bad_request(response: httpx.Response) -> None:
    """A 400 in the contract's error shape, whichever 400 code names the problem."""
    assert response.status_code == 400, response.text
    assert_error(response, 400, response.json()["error"])


# -- every endpoint refuses a caller without a token ---------------------------------------

ENDPOINTS = [
    ("GET", "/rooms/invitations", None),
    ("GET", "/rooms/r1/invitations", None),
    ("POST", "/rooms/r1/delete/invitations", {"invitees": ["bob"]}),
    ("DELETE", "/rooms/r1/invitations/bob", None),
    ("DELETE", "/rooms/r1/invitations", None),
    ("POST", "/roomPrefs/r1", {"muted": True}),
    ("GET", "/roomPrefs", None),
    ("DELETE", "/roomPrefs/r1/muted", None),
    ("POST", "/roomPrefs/r1/group/g1", {"muted": True}),
    ("GET", "/roomPrefs/group/g1", None),
    ("DELETE", "/roomPrefs/r1/group/g1/muted", None),
    ("GET", "/me/pref", None),
    ("GET", "/me/prefs", None),
    ("POST", "/me/pref/k", {"a": 1}),
    ("DELETE", "/me/pref/k", None),
    ("POST", "/me/mute/r1", None),
    ("DELETE", "/me/mute/r1", None),
    ("POST", "/me/notification/enable", None),
    ("POST", "/me/notification/disable", None),
    ("POST", "/me/subscribe", {"type": "fcm", "token": "t"}),
    ("POST", "/me/unsubscribe", {"type": "fcm"}),
    ("POST", "/me/logout", None),
    ("POST", "/me/logout-others", None),
]
ENDPOINT_IDS = [f"{m} {p}" for m, p, _ in ENDPOINTS]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS, ids=ENDPOINT_IDS)
def test_every_endpoint_wants_a_token(
    server: Server, app_keys: AppKeys, method: str, path: str, body: Any
) -> None:
    with server.client() as anonymous:
        assert_error(anonymous.request(method, path, json=body), 401, "MISSING_CLIENT_KEY")
    with server.client(**{"IM-CLIENT-KEY": app_keys.client_key}) as keyed:
        assert_error(keyed.request(method, path, json=body), 401, "INVALID_TOKEN")
        garbage = keyed.request(method, path, json=body, headers={"IM-Authorization": "nope"})
        assert_error(garbage, 401, "INVALID_TOKEN")


# -- the API Key: acting as a user, or missing one -----------------------------------------

# The endpoints about "the current user": the API Key must name one.
# (Listing and withdrawing a room's invitations are not: there it acts as a superuser.)
CURRENT_USER_ENDPOINTS = [
    (m, p, b)
    for m, p, b in ENDPOINTS
    if not (p.startswith("/rooms/r1/") and (m, p) != ("DELETE", "/rooms/r1/invitations"))
]
CURRENT_USER_IDS = [f"{m} {p}" for m, p, _ in CURRENT_USER_ENDPOINTS]


@pytest.mark.parametrize(("method", "path", "body"), CURRENT_USER_ENDPOINTS, ids=CURRENT_USER_IDS)
def test_api_key_without_im_client_id_is_missing_a_user(
    crowd: Crowd, method: str, path: str, body: Any
) -> None:
    room_id = club(crowd)
    invite(crowd["alice"], room_id, "dave")
    path = path.replace("r1", room_id)
    assert_error(crowd.admin.request(method, path, json=body), 400, "MISSING_PARAMETER")
    # Nothing happened to anyone: dave is still invited, nobody has preferences or devices.
    assert invitees_of(crowd["alice"], room_id) == ["dave"]
    for name in crowd.clients:
        assert rows_of(crowd.server, crowd.keys.id, name) == 0
    assert_error(crowd.admin.get("/me/pref", params={"key": "k"}), 400, "MISSING_PARAMETER")


def test_api_key_with_im_client_id_acts_as_that_user(crowd: Crowd, heard: Heard) -> None:
    room_id = club(crowd)
    invite(crowd["alice"], room_id, "dave", "erin")
    as_dave = crowd.acting("dave")
    assert my_rooms_invited(as_dave) == [room_id]
    assert my_rooms_invited(crowd.acting("bob")) == []

    assert ok(as_dave.post("/me/pref/theme", json={"dark": True})) == {
        "key": "theme",
        "data": {"dark": True},
    }
    assert ok(crowd["dave"].get("/me/prefs")) == {"theme": {"dark": True}}
    assert ok(as_dave.post(f"/roomPrefs/{room_id}", json={"folder": "Later"}))["folder"] == "Later"
    assert ok(crowd["dave"].get("/roomPrefs"))["data"] == [{"room": room_id, "folder": "Later"}]
    assert ok(as_dave.post(f"/me/mute/{room_id}"))["mute"] == [room_id]
    assert ok(crowd["dave"].get("/me"))["mute"] == [room_id]
    assert ok(as_dave.post("/me/notification/disable"))["notificationEnabled"] is False
    assert ok(crowd["dave"].get("/me"))["notificationEnabled"] is False
    body = {"type": "web", "token": "w", "deviceId": "w1"}
    assert ok(as_dave.post("/me/subscribe", json=body)) == {}
    assert devices(crowd, "dave") == ["w1"]
    assert ok(as_dave.request("DELETE", f"/rooms/{room_id}/invitations"))["totalCount"] == 0
    assert invitees_of(crowd["alice"], room_id) == ["erin"]

    # The events went to dave, as if he had done it himself.
    assert [e.users for e in heard.of("myPrefChange")] == [["dave"]]
    assert [e.users for e in heard.of("roomPref")] == [["dave"]]
    assert ok(crowd.admin.get("/me/prefs", headers={"IM-CLIENT-ID": "erin"})) == {}


def test_api_key_cannot_log_a_user_out(crowd: Crowd) -> None:
    # Logging out ends the session of the token sent; the API Key has none to end.
    for path in ("/me/logout", "/me/logout-others"):
        assert_error(crowd.acting("carol").post(path), 400, "INVALID_REQUEST")
    assert ok(crowd["carol"].get("/me"))["_id"] == "carol"


@pytest.mark.parametrize("acting", ["ghost", "zed"], ids=["unknown", "of-another-app"])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/me/pref/k", {"a": 1}),
        ("POST", "/roomPrefs/{room}", {"muted": True}),
        ("POST", "/roomPrefs/{room}/group/g1", {"muted": True}),
        ("POST", "/me/subscribe", {"type": "fcm", "token": "t", "deviceId": "d"}),
        ("POST", "/me/mute/{room}", None),
        ("POST", "/me/notification/disable", None),
    ],
    ids=["me-pref", "room-pref", "group-pref", "subscribe", "mute", "notification"],
)
def test_api_key_acting_as_a_user_that_is_not_here_stores_nothing(
    crowd: Crowd, stranger: httpx.Client, acting: str, method: str, path: str, body: Any
) -> None:
    # As GET /me and POST /me answer: a user the app does not have is CLIENT_NOT_FOUND,
    # and no preference or device is kept for them (those rows have no foreign key).
    room_id = club(crowd)
    response = crowd.acting(acting).request(method, path.replace("{room}", room_id), json=body)
    assert_error(response, 404, "CLIENT_NOT_FOUND")
    assert rows_of(crowd.server, crowd.keys.id, acting) == 0


def test_api_key_subscribe_with_client_id_registers_for_that_user(crowd: Crowd) -> None:
    body = {"type": "ios", "token": "apns-1", "deviceId": "phone", "clientId": "bob"}
    assert ok(crowd.admin.post("/me/subscribe", json=body)) == {}
    assert devices(crowd, "bob") == ["phone"]
    # unsubscribe takes the same clientId
    result = ok(crowd.admin.post("/me/unsubscribe", json={**body, "token": None}))
    assert result == {"n": 1, "ok": 1}
    assert devices(crowd, "bob") == []
    # Without clientId (and without IM-CLIENT-ID) there is no user to register for.
    del body["clientId"]
    assert_error(crowd.admin.post("/me/subscribe", json=body), 400, "MISSING_PARAMETER")
    assert_error(crowd.admin.post("/me/unsubscribe", json=body), 400, "MISSING_PARAMETER")
    assert devices(crowd, "bob") == []


def test_a_user_cannot_subscribe_for_someone_else(crowd: Crowd) -> None:
    # clientId is for the API Key only: a user's token decides whose device it is.
    body = {"type": "fcm", "token": "f1", "deviceId": "d1", "clientId": "bob"}
    assert ok(crowd["alice"].post("/me/subscribe", json=body)) == {}
    assert devices(crowd, "alice") == ["d1"]
    assert devices(crowd, "bob") == []
    assert ok(crowd["alice"].post("/me/unsubscribe", json=body)) == {"n": 1, "ok": 1}


# -- rooms of another app, and rooms that do not exist -------------------------------------

ROOM_ENDPOINTS = [
    ("GET", "/rooms/{room}/invitations", None),
    ("POST", "/rooms/{room}/delete/invitations", {"invitees": ["bob"]}),
    ("DELETE", "/rooms/{room}/invitations/bob", None),
    ("DELETE", "/rooms/{room}/invitations", None),
    ("POST", "/roomPrefs/{room}", {"muted": True}),
    ("DELETE", "/roomPrefs/{room}/muted", None),
    ("POST", "/roomPrefs/{room}/group/g1", {"muted": True}),
    ("DELETE", "/roomPrefs/{room}/group/g1/muted", None),
    ("POST", "/me/mute/{room}", None),
    ("DELETE", "/me/mute/{room}", None),
]


@pytest.mark.parametrize("whose", ["unknown", "of-another-app"])
@pytest.mark.parametrize(
    ("method", "path", "body"), ROOM_ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ROOM_ENDPOINTS]
)
def test_a_room_that_is_not_here_is_room_not_found(
    crowd: Crowd,
    stranger: httpx.Client,
    heard: Heard,
    whose: str,
    method: str,
    path: str,
    body: Any,
) -> None:
    # A room of another app is indistinguishable from one that does not exist, even for
    # a user who shares a name with one of its invitees.
    room_id = club(crowd)
    invite(crowd["alice"], room_id, "dave", "erin")
    caller, target = (crowd["bob"], "nope") if whose == "unknown" else (stranger, room_id)
    response = caller.request(method, path.replace("{room}", target), json=body)
    assert_error(response, 404, "ROOM_NOT_FOUND")
    assert heard.of("roomPref") == []
    assert invitees_of(crowd["alice"], room_id) == ["dave", "erin"]


def test_invitations_of_this_app_are_not_shown_to_a_namesake_elsewhere(
    crowd: Crowd, stranger: httpx.Client
) -> None:
    room_id = club(crowd, members=())
    invite(crowd["alice"], room_id, "bob")
    assert my_rooms_invited(crowd["bob"]) == [room_id]
    assert ok(stranger.get("/rooms/invitations")) == {"totalCount": 0, "data": []}
    assert_error(stranger.post(f"/rooms/{room_id}/join"), 404, "ROOM_NOT_FOUND")
    assert my_rooms_invited(crowd["bob"]) == [room_id]


# -- invitations ---------------------------------------------------------------------------


def test_invitation_shapes(crowd: Crowd) -> None:
    alice, dave = crowd["alice"], crowd["dave"]
    room = ok(
        alice.post(
            "/rooms/createAndJoin",
            json={"name": "Club", "invitee": ["dave"], "invitationRequired": True},
        )
    )
    room_id = room["_id"]
    assert room["invitationRequired"] is True and [m["_id"] for m in room["members"]] == ["alice"]

    # §4.5 for the invitee: inviter a Client, room a Room, times in both forms.
    mine = ok(dave.get("/rooms/invitations"))
    assert mine["totalCount"] == 1
    [invitation] = mine["data"]
    assert invitation["inviter"]["_id"] == invitation["inviter"]["id"] == "alice"
    assert invitation["inviter"]["nickname"] == "Alice"
    assert invitation["room"]["_id"] == invitation["room"]["id"] == room_id
    assert invitation["room"]["name"] == "Club"
    assert [m["_id"] for m in invitation["room"]["members"]] == ["alice"]
    assert ISO_MS.match(invitation["createdAt"]) and ISO_MS.match(invitation["updatedAt"])
    assert isinstance(invitation["createdTimeMS"], int)
    assert invitation["updatedTimeMS"] == invitation["createdTimeMS"]

    # §3.5 for the room: invitee and inviter as Clients.
    listed = ok(alice.get(f"/rooms/{room_id}/invitations"))
    assert listed["totalCount"] == 1
    [row] = listed["data"]
    assert row["invitee"]["_id"] == "dave" and row["invitee"]["nickname"] == "Dave"
    assert row["inviter"]["_id"] == "alice"
    assert row["createdAt"] == invitation["createdAt"]
    assert row["updatedTimeMS"] == invitation["updatedTimeMS"]

    # An invitation is not a membership: the room is not among dave's rooms.
    assert ok(dave.get("/rooms"))["totalCount"] == 0
    assert_error(dave.get(f"/rooms/{room_id}"), 403, "NOT_ROOM_MEMBER")


def test_a_direct_room_ignores_invitation_required(crowd: Crowd, heard: Heard) -> None:
    room = ok(
        crowd["alice"].post(
            "/rooms/createAndJoin",
            json={"roomType": "direct", "invitee": "bob", "invitationRequired": True},
        )
    )
    assert sorted(m["_id"] for m in room["members"]) == ["alice", "bob"]
    assert room["invitationRequired"] is False
    assert ok(crowd["bob"].get(f"/rooms/{room['_id']}"))["roomType"] == "direct"
    assert my_rooms_invited(crowd["bob"]) == []
    assert invitees_of(crowd["alice"], room["_id"]) == []
    assert heard.of("invitation") == []
    # Nor can one be invited into it afterwards: a direct room keeps its two members.
    response = crowd["alice"].post(
        f"/rooms/{room['_id']}/members", json={"invitees": ["carol"], "invitationRequired": True}
    )
    assert_error(response, 400, "INVALID_REQUEST")
    assert my_rooms_invited(crowd["carol"]) == []


def test_the_api_key_direct_room_ignores_invitation_required(crowd: Crowd) -> None:
    room = ok(
        crowd.admin.post(
            "/rooms",
            json={"roomType": "direct", "members": ["alice", "bob"], "invitationRequired": True},
        )
    )
    assert sorted(members_of(crowd["bob"], room["_id"])) == ["alice", "bob"]
    assert my_rooms_invited(crowd["bob"]) == []


def test_reinviting_renews_the_invitation(crowd: Crowd, heard: Heard) -> None:
    room_id = club(crowd)
    invite(crowd["alice"], room_id, "dave")
    [first] = ok(crowd["dave"].get("/rooms/invitations"))["data"]
    time.sleep(0.005)  # so that the renewal has a later millisecond
    invite(crowd["bob"], room_id, "dave")
    mine = ok(crowd["dave"].get("/rooms/invitations"))
    assert mine["totalCount"] == 1  # renewed, not duplicated
    [renewed] = mine["data"]
    assert renewed["createdTimeMS"] == first["createdTimeMS"]
    assert renewed["updatedTimeMS"] > first["updatedTimeMS"]
    assert renewed["inviter"]["_id"] == "bob"  # the latest inviter stands behind it
    assert invitees_of(crowd["carol"], room_id) == ["dave"]
    # Each invitation is announced again, to dave alone.
    sent = heard.of("invitation")
    assert [(e.users, e.rooms) for e in sent] == [(["dave"], []), (["dave"], [])]
    assert sent[1].data["updatedTimeMS"] == renewed["updatedTimeMS"]


def test_members_are_not_invited(crowd: Crowd, heard: Heard) -> None:
    room_id = club(crowd)
    invite(crowd["alice"], room_id, "bob", "dave")  # bob is a member already
    assert invitees_of(crowd["alice"], room_id) == ["dave"]
    assert [e.users for e in heard.of("invitation")] == [["dave"]]


def test_inviting_an_unknown_user_invites_nobody(crowd: Crowd, heard: Heard) -> None:
    room_id = club(crowd)
    response = crowd["alice"].post(
        f"/rooms/{room_id}/members",
        json={"invitees": ["dave", "ghost"], "invitationRequired": True},
    )
    assert_error(response, 404, "CLIENT_NOT_FOUND")
    assert invitees_of(crowd["alice"], room_id) == []
    assert heard.of("invitation") == []


def test_adding_an_invited_user_directly_settles_the_invitation(crowd: Crowd) -> None:
    # dave is invited, then added at once: he is a member, and nothing is left pending.
    room_id = club(crowd)
    invite(crowd["alice"], room_id, "dave")
    ok(crowd["alice"].post(f"/rooms/{room_id}/members", json={"invitees": ["dave"]}))
    assert "dave" in members_of(crowd["alice"], room_id)
    assert invitees_of(crowd["alice"], room_id) == []
    assert my_rooms_invited(crowd["dave"]) == []


def test_joining_accepts_and_declining_refuses(crowd: Crowd) -> None:
    alice = crowd["alice"]
    room_id = ok(
        alice.post(
            "/rooms/createAndJoin", json={"invitee": ["dave", "erin"], "invitationRequired": True}
        )
    )["_id"]
    assert_error(crowd["carol"].post(f"/rooms/{room_id}/join"), 403, "INSUFFICIENT_PERMISSIONS")
    joined = ok(crowd["dave"].post(f"/rooms/{room_id}/join", json={"systemMessage": False}))
    assert [m["_id"] for m in joined["members"]] == ["alice", "dave"]
    assert my_rooms_invited(crowd["dave"]) == []

    # Declining: the invitee's remaining invitations come back; the room no longer admits.
    other = ok(alice.post("/rooms/createAndJoin", json={"invitee": ["erin"]}))["_id"]
    invite(alice, other, "dave")
    remaining = ok(crowd["erin"].request("DELETE", f"/rooms/{room_id}/invitations"))
    assert remaining == {"totalCount": 0, "data": []}
    assert invitees_of(alice, room_id) == []
    assert_error(crowd["erin"].post(f"/rooms/{room_id}/join"), 403, "INSUFFICIENT_PERMISSIONS")
    # A second refusal has nothing to refuse.
    response = crowd["erin"].request("DELETE", f"/rooms/{room_id}/invitations")
    assert_error(response, 404, "INVITATION_NOT_FOUND")
    # dave declines the other room: his own list answers, now empty.
    assert ok(crowd["dave"].request("DELETE", f"/rooms/{other}/invitations"))["totalCount"] == 0
    # A member has no invitation to decline either.
    response = crowd["dave"].request("DELETE", f"/rooms/{room_id}/invitations")
    assert_error(response, 404, "INVITATION_NOT_FOUND")
    assert members_of(alice, room_id) == ["alice", "dave"]


def test_decline_answers_with_the_remaining_invitations(crowd: Crowd) -> None:
    one, two = club(crowd), club(crowd)
    invite(crowd["alice"], one, "dave")
    invite(crowd["alice"], two, "dave")
    remaining = ok(crowd["dave"].request("DELETE", f"/rooms/{one}/invitations"))
    assert remaining["totalCount"] == 1
    assert remaining["data"][0]["room"]["_id"] == two
    assert remaining["data"][0]["inviter"]["_id"] == "alice"


def test_a_non_member_cannot_see_or_withdraw_a_rooms_invitations(crowd: Crowd) -> None:
    room_id = club(crowd)
    invite(crowd["alice"], room_id, "dave", "erin")
    # Not even an invitee sees who else is invited.
    for outsider in ("dave", "erin"):
        client = crowd[outsider]
        assert_error(client.get(f"/rooms/{room_id}/invitations"), 403, "NOT_ROOM_MEMBER")
        response = client.post(f"/rooms/{room_id}/delete/invitations", json={"invitees": ["dave"]})
        assert_error(response, 403, "NOT_ROOM_MEMBER")
        response = client.request("DELETE", f"/rooms/{room_id}/invitations/erin")
        assert_error(response, 403, "NOT_ROOM_MEMBER")
    assert invitees_of(crowd["alice"], room_id) == ["dave", "erin"]


def test_a_plain_member_withdraws_only_their_own_invitations(crowd: Crowd, heard: Heard) -> None:
    alice, bob, carol = crowd["alice"], crowd["bob"], crowd["carol"]
    room_id = club(crowd)
    invite(bob, room_id, "dave")
    invite(alice, room_id, "erin")

    # carol sent neither; bob did not send erin's, and one foreign invitee spoils the lot.
    for client, invitees in ((carol, ["dave"]), (bob, ["erin"]), (bob, ["dave", "erin"])):
        response = client.post(f"/rooms/{room_id}/delete/invitations", json={"invitees": invitees})
        assert_error(response, 403, "INSUFFICIENT_PERMISSIONS")
    response = carol.request("DELETE", f"/rooms/{room_id}/invitations/dave")
    assert_error(response, 403, "INSUFFICIENT_PERMISSIONS")
    assert invitees_of(alice, room_id) == ["dave", "erin"]
    assert heard.of("cancelInvitation") == []

    remaining = ok(bob.post(f"/rooms/{room_id}/delete/invitations", json={"invitees": ["dave"]}))
    assert [i["invitee"]["_id"] for i in remaining["data"]] == ["erin"]
    assert remaining["totalCount"] == 1
    assert [(e.users, e.data) for e in heard.of("cancelInvitation")] == [
        (["dave"], {"room": room_id})
    ]


def test_superusers_withdraw_anyones_invitations(crowd: Crowd, heard: Heard) -> None:
    alice, bob, carol = crowd["alice"], crowd["bob"], crowd["carol"]
    room_id = club(crowd)
    ok(alice.put(f"/rooms/{room_id}", json={"managers": ["carol"]}))
    invite(bob, room_id, "dave")
    invite(bob, room_id, "erin")
    # The manager withdraws one (the legacy form), the owner the other.
    remaining = ok(carol.request("DELETE", f"/rooms/{room_id}/invitations/dave"))
    assert [i["invitee"]["_id"] for i in remaining["data"]] == ["erin"]
    remaining = ok(alice.post(f"/rooms/{room_id}/delete/invitations", json={"invitees": ["erin"]}))
    assert remaining == {"totalCount": 0, "data": []}
    # The API Key, acting as no one, is a superuser too.
    invite(bob, room_id, "dave")
    assert invitees_of(crowd.admin, room_id) == ["dave"]
    response = crowd.admin.post(f"/rooms/{room_id}/delete/invitations", json={"invitees": ["dave"]})
    assert ok(response)["totalCount"] == 0
    assert [e.users for e in heard.of("cancelInvitation")] == [["dave"], ["erin"], ["dave"]]
    assert my_rooms_invited(crowd["dave"]) == my_rooms_invited(crowd["erin"]) == []


def test_withdrawing_leaves_a_system_message_unless_asked_not_to(crowd: Crowd) -> None:
    alice = crowd["alice"]
    room_id = club(crowd)
    invite(alice, room_id, "dave", "erin")
    body = {"invitees": ["dave"], "systemMessage": False}
    ok(alice.post(f"/rooms/{room_id}/delete/invitations", json=body))
    assert "lastMessage" not in ok(alice.get(f"/rooms/{room_id}"))
    ok(alice.post(f"/rooms/{room_id}/delete/invitations", json={"invitees": ["erin"]}))
    last = ok(alice.get(f"/rooms/{room_id}"))["lastMessage"]
    assert last["messageType"] == "cancelInvitations"
    assert [i["_id"] for i in last["extra"]["invitees"]] == ["erin"]


def test_withdrawing_what_is_not_pending_changes_nothing(crowd: Crowd, heard: Heard) -> None:
    alice = crowd["alice"]
    room_id = club(crowd)
    invite(alice, room_id, "dave")
    remaining = ok(alice.post(f"/rooms/{room_id}/delete/invitations", json={"invitees": ["erin"]}))
    assert [i["invitee"]["_id"] for i in remaining["data"]] == ["dave"]
    assert "lastMessage" not in ok(alice.get(f"/rooms/{room_id}"))  # no system message
    assert heard.of("cancelInvitation") == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"invitees": []},
        {"invitees": "dave"},
        {"invitees": [""]},
        {"invitees": [7]},
        {"invitees": ["x" * 256]},
        {"invitees": ["dave"], "systemMessage": "maybe"},
        [],
    ],
    ids=["none", "empty", "string", "blank", "number", "too-long", "bad-flag", "array"],
)
def test_withdrawing_needs_a_list_of_invitees(crowd: Crowd, body: Any) -> None:
    room_id = club(crowd)
    invite(crowd["alice"], room_id, "dave")
    assert_bad_request(crowd["alice"].post(f"/rooms/{room_id}/delete/invitations", json=body))
    assert invitees_of(crowd["alice"], room_id) == ["dave"]


def test_withdrawing_takes_a_bounded_list(crowd: Crowd) -> None:
    # As adding members does: one request names at most 1,000 invitees. (Unbounded, a
    # long list overruns the database's limit on query parameters.)
    room_id = club(crowd)
    invite(crowd["alice"], room_id, "dave")
    many = [f"u{i}" for i in range(40_000)]
    response = crowd["alice"].post(f"/rooms/{room_id}/delete/invitations", json={"invitees": many})
    assert_error(response, 413, "TOO_MANY_MEMBERS")
    assert invitees_of(crowd["alice"], room_id) == ["dave"]


def test_invitation_endpoints_refuse_malformed_ids(crowd: Crowd) -> None:
    alice = crowd["alice"]
    room_id = club(crowd)
    long_id = "r" * 256
    assert_bad_request(alice.get(f"/rooms/{long_id}/invitations"))
    assert_bad_request(alice.request("DELETE", f"/rooms/{room_id}/invitations/{'x' * 256}"))
    assert_bad_request(alice.post(f"/rooms/{room_id}/delete/invitations", content=b"{oops"))
    assert_error(
        alice.post(f"/rooms/{room_id}/delete/invitations", content=b"{oops"), 400, "INVALID_BODY"
    )


def test_invitation_events_reach_the_invitees_only(crowd: Crowd, heard: Heard) -> None:
    alice = crowd["alice"]
    room = ok(
        alice.post(
            "/rooms/createAndJoin",
            json={"name": "Club", "invitee": ["dave", "erin"], "invitationRequired": True},
        )
    )
    room_id = room["_id"]
    sent = heard.of("invitation")
    # One event per invitee, addressed to that user and to no room (a room's members
    # would otherwise all hear it).
    assert sorted(e.users[0] for e in sent) == ["dave", "erin"]
    assert all(len(e.users) == 1 and e.rooms == [] for e in sent)
    for event in sent:
        assert event.data["room"]["_id"] == room_id and event.data["room"]["name"] == "Club"
        assert event.data["inviter"]["_id"] == "alice"
        assert isinstance(event.data["createdTimeMS"], int)
        assert isinstance(event.data["updatedTimeMS"], int)
    # The room event of the creation goes to the members, not the invitees.
    assert [e.users for e in heard.of("room")] == [["alice"]]

    ok(alice.post(f"/rooms/{room_id}/delete/invitations", json={"invitees": ["erin"]}))
    cancelled = heard.of("cancelInvitation")
    assert [(e.users, e.rooms, e.data) for e in cancelled] == [(["erin"], [], {"room": room_id})]


def test_deleting_a_room_withdraws_its_invitations(crowd: Crowd, heard: Heard) -> None:
    # The invitee's pending invitation goes with the room, and the invitee hears of it
    # (a client that listed it would otherwise keep offering a room that is gone).
    room_id = club(crowd)
    invite(crowd["alice"], room_id, "dave")
    assert ok(crowd["alice"].request("DELETE", f"/rooms/{room_id}")) == {"n": 1, "ok": 1}
    assert my_rooms_invited(crowd["dave"]) == []
    told = [e for e in heard.of("cancelInvitation") if "dave" in e.users]
    told += [e for e in heard.of("roomDeleted") if "dave" in e.users]
    assert told, "dave was not told that his invitation is gone"


# -- room preferences ----------------------------------------------------------------------


def test_room_preferences_merge_and_unset(crowd: Crowd, heard: Heard) -> None:
    alice = crowd["alice"]
    room_id = club(crowd)
    body = {"tags": ["work"], "tagColors": {"work": "#ff0000"}, "folder": "Inbox"}
    assert ok(alice.post(f"/roomPrefs/{room_id}", json=body)) == {"room": room_id, **body}
    flags = {"muted": True, "sticky": True, "hidden": False, "translation": True}
    merged = ok(alice.post(f"/roomPrefs/{room_id}", json=flags))
    assert merged == {"room": room_id, **body, **flags}
    assert ok(alice.get("/roomPrefs")) == {"totalCount": 1, "data": [merged]}
    assert ok(alice.get(f"/rooms/{room_id}"))["pref"] == merged

    unset = ok(alice.request("DELETE", f"/roomPrefs/{room_id}/folder"))
    assert "folder" not in unset and unset["tags"] == ["work"]
    # folder may also be cleared with null
    assert ok(alice.post(f"/roomPrefs/{room_id}", json={"folder": None}))["folder"] is None

    # Every change reaches alice alone, carrying the preference as answered.
    sent = heard.of("roomPref")
    assert all(e.users == ["alice"] and e.rooms == [] for e in sent)
    assert [e.data for e in sent][:3] == [{"room": room_id, **body}, merged, unset]


@pytest.mark.parametrize(
    "body",
    [
        {"colour": "red"},
        {"muted": "maybe"},
        {"sticky": None, "hidden": [True]},
        {"tags": "work"},
        {"tags": [""]},
        {"tags": ["t"] * 101},
        {"tags": ["x" * 101]},
        {"tagColors": ["#fff"]},
        {"tagColors": {"work": 5}},
        {"folder": 5},
        {"folder": "f" * 256},
        [],
    ],
    ids=[
        "unknown-key",
        "bool-as-text",
        "bool-as-list",
        "tags-string",
        "tag-empty",
        "too-many-tags",
        "tag-too-long",
        "colors-list",
        "color-number",
        "folder-number",
        "folder-too-long",
        "array",
    ],
)
def test_room_preferences_refuse_bad_values(crowd: Crowd, heard: Heard, body: Any) -> None:
    room_id = club(crowd)
    for path in (f"/roomPrefs/{room_id}", f"/roomPrefs/{room_id}/group/g1"):
        assert_bad_request(crowd["alice"].post(path, json=body))
    assert ok(crowd["alice"].get("/roomPrefs"))["totalCount"] == 0
    assert ok(crowd["alice"].get("/roomPrefs/group/g1"))["totalCount"] == 0
    assert heard.of("roomPref") == []


def test_unsetting_an_unknown_room_preference_is_refused(crowd: Crowd) -> None:
    room_id = club(crowd)
    ok(crowd["alice"].post(f"/roomPrefs/{room_id}", json={"muted": True}))
    for path in (f"/roomPrefs/{room_id}/colour", f"/roomPrefs/{room_id}/group/g1/room"):
        assert_error(crowd["alice"].request("DELETE", path), 400, "INVALID_REQUEST")
    assert ok(crowd["alice"].get("/roomPrefs"))["data"] == [{"room": room_id, "muted": True}]
    assert_error(crowd["alice"].post("/roomPrefs/x", content=b"{oops"), 400, "INVALID_BODY")


def test_room_preferences_are_private(crowd: Crowd, heard: Heard) -> None:
    alice, bob = crowd["alice"], crowd["bob"]
    room_id = club(crowd)
    ok(alice.post(f"/roomPrefs/{room_id}", json={"muted": True, "tags": ["vip"]}))
    ok(alice.post(f"/roomPrefs/{room_id}/group/sales", json={"sticky": True}))
    # bob shares the room but sees none of alice's preferences.
    assert ok(bob.get("/roomPrefs")) == {"totalCount": 0, "data": []}
    assert ok(bob.get("/roomPrefs/group/sales")) == {"totalCount": 0, "data": []}
    room = ok(bob.get(f"/rooms/{room_id}"))
    assert room["pref"] == {"room": room_id} and room["muted"] is False
    # bob unsetting "muted" unsets his own (absent) one, not alice's.
    ok(bob.request("DELETE", f"/roomPrefs/{room_id}/muted"))
    assert ok(alice.get("/roomPrefs"))["data"][0]["muted"] is True
    assert all(e.users == ["alice"] for e in heard.of("roomPref") if e.data.get("muted"))


def test_group_preferences_stay_out_of_the_own_view(crowd: Crowd) -> None:
    alice = crowd["alice"]
    room_id = club(crowd)
    group = ok(alice.post(f"/roomPrefs/{room_id}/group/sales", json={"sticky": True}))
    assert group["room"] == room_id and group["sticky"] is True
    assert ok(alice.get("/roomPrefs")) == {"totalCount": 0, "data": []}
    assert ok(alice.get(f"/rooms/{room_id}"))["pref"] == {"room": room_id}
    assert ok(alice.get("/roomPrefs/group/other"))["totalCount"] == 0
    [listed] = ok(alice.get("/roomPrefs/group/sales"))["data"]
    assert listed["room"] == room_id and listed["sticky"] is True

    # Own and group preferences of one room are set and unset independently.
    ok(alice.post(f"/roomPrefs/{room_id}", json={"sticky": False, "muted": True}))
    ok(alice.request("DELETE", f"/roomPrefs/{room_id}/group/sales/sticky"))
    assert ok(alice.get("/roomPrefs"))["data"] == [
        {"room": room_id, "sticky": False, "muted": True}
    ]
    assert "sticky" not in ok(alice.get("/roomPrefs/group/sales"))["data"][0]
    ok(alice.post(f"/roomPrefs/{room_id}/group/sales", json={"hidden": True}))
    ok(alice.request("DELETE", f"/roomPrefs/{room_id}/muted"))
    assert ok(alice.get("/roomPrefs/group/sales"))["data"][0]["hidden"] is True
    assert ok(alice.get(f"/rooms/{room_id}"))["pref"] == {"room": room_id, "sticky": False}


def test_group_preference_events_say_which_group(crowd: Crowd, heard: Heard) -> None:
    # The roomPref event of a group preference must not read as the user's own one:
    # a client merging it into the room's own preferences would show the group's.
    alice = crowd["alice"]
    room_id = club(crowd)
    ok(alice.post(f"/roomPrefs/{room_id}/group/sales", json={"sticky": True}))
    ok(alice.request("DELETE", f"/roomPrefs/{room_id}/group/sales/sticky"))
    ok(alice.post(f"/roomPrefs/{room_id}", json={"muted": True}))
    sent = heard.of("roomPref")
    assert [e.data.get("group") for e in sent] == ["sales", "sales", None]


def test_a_deleted_rooms_preferences_go_with_it(crowd: Crowd) -> None:
    alice = crowd["alice"]
    room_id = club(crowd)
    ok(alice.post(f"/roomPrefs/{room_id}", json={"hidden": True}))
    ok(alice.post(f"/roomPrefs/{room_id}/group/sales", json={"sticky": True}))
    ok(alice.request("DELETE", f"/rooms/{room_id}"))
    assert ok(alice.get("/roomPrefs"))["totalCount"] == 0
    assert ok(alice.get("/roomPrefs/group/sales"))["totalCount"] == 0
    # A new room under the same id starts without the old one's preferences.
    ok(alice.post("/rooms/createAndJoin", json={"_id": room_id}))
    assert ok(alice.get(f"/rooms/{room_id}"))["pref"] == {"room": room_id}


# -- /me/pref ------------------------------------------------------------------------------

JSON_VALUES = [
    {"theme": "dark", "size": [1, 2]},
    [{"key": "a", "name": "A"}],
    "plain text",
    42,
    3.5,
    True,
    None,
    {},
    [],
    "",
]


@pytest.mark.parametrize(
    "data",
    JSON_VALUES,
    ids=["object", "array", "string", "int", "float", "bool", "null", "{}", "[]", "''"],
)
def test_a_user_preference_holds_any_json(crowd: Crowd, heard: Heard, data: Any) -> None:
    bob = crowd["bob"]
    assert ok(bob.post("/me/pref/k1", json=data)) == {"key": "k1", "data": data}
    assert ok(bob.get("/me/pref", params={"key": "k1"})) == {"key": "k1", "data": data}
    assert ok(bob.get("/me/prefs")) == {"k1": data}
    [listed] = ok(bob.get("/me/pref"))
    assert listed["key"] == "k1" and listed["data"] == data
    [event] = heard.of("myPrefChange")
    assert (event.users, event.rooms, event.data) == (["bob"], [], {"key": "k1", "data": data})


def test_a_user_preference_is_replaced_not_merged(crowd: Crowd) -> None:
    bob = crowd["bob"]
    ok(bob.post("/me/pref/k", json={"a": 1, "b": 2}))
    ok(bob.post("/me/pref/k", json={"c": 3}))
    assert ok(bob.get("/me/pref", params={"key": "k"}))["data"] == {"c": 3}
    ok(bob.post("/me/pref/other", json=[1]))
    assert [p["key"] for p in ok(bob.get("/me/pref"))] == ["k", "other"]
    assert ok(bob.get("/me/prefs")) == {"k": {"c": 3}, "other": [1]}


def test_a_user_preference_may_be_64_kib(crowd: Crowd, heard: Heard) -> None:
    bob = crowd["bob"]
    at_limit = "x" * (PREF_LIMIT - 2)  # with its quotes, exactly the limit
    assert ok(bob.post("/me/pref/big", json=at_limit))["data"] == at_limit
    over = "x" * (PREF_LIMIT - 1)
    assert_error(bob.post("/me/pref/big", json=over), 413, "PAYLOAD_TOO_LARGE")
    assert_error(bob.post("/me/pref/bigger", json={"a": over}), 413, "PAYLOAD_TOO_LARGE")
    assert ok(bob.get("/me/pref", params={"key": "big"}))["data"] == at_limit
    assert_error(bob.get("/me/pref", params={"key": "bigger"}), 404, "CONFIG_NOT_FOUND")
    assert len(heard.of("myPrefChange")) == 1


@pytest.mark.parametrize(
    "raw",
    [b"[" * 300 + b"]" * 300, b"123456789012345678901234567890", b'{"a": NaN}', b"-Infinity"],
    ids=["nested-300-deep", "integer-over-64-bits", "nan", "infinity"],
)
def test_a_user_preference_json_cannot_hold_is_a_bad_request(crowd: Crowd, raw: bytes) -> None:
    # JSON that the server cannot store as it stores everything else (orjson: 64-bit
    # integers, fewer than 255 levels) is the caller's mistake, as for custom fields; so are
    # NaN and Infinity, which are not JSON at all (and would come back as null).
    response = crowd["bob"].post("/me/pref/odd", content=raw)
    assert_bad_request(response)
    assert_error(crowd["bob"].get("/me/pref", params={"key": "odd"}), 404, "CONFIG_NOT_FOUND")


def test_user_preference_keys_and_bodies_are_checked(crowd: Crowd) -> None:
    bob = crowd["bob"]
    assert_bad_request(bob.post(f"/me/pref/{'k' * 256}", json=1))
    assert_bad_request(bob.request("DELETE", f"/me/pref/{'k' * 256}"))
    assert_bad_request(bob.get("/me/pref", params={"key": "k" * 256}))
    assert_bad_request(bob.post("/me/pref/%01", json=1))  # not printable
    assert_error(bob.post("/me/pref/k", content=b"{oops"), 400, "INVALID_BODY")
    assert ok(bob.post(f"/me/pref/{'k' * 255}", json=1))["key"] == "k" * 255
    assert ok(bob.get("/me/prefs")) == {"k" * 255: 1}


def test_a_missing_user_preference_is_config_not_found(crowd: Crowd, heard: Heard) -> None:
    bob = crowd["bob"]
    assert ok(bob.get("/me/pref")) == []
    assert ok(bob.get("/me/prefs")) == {}
    assert_error(bob.get("/me/pref", params={"key": "nope"}), 404, "CONFIG_NOT_FOUND")
    assert_error(bob.request("DELETE", "/me/pref/nope"), 404, "CONFIG_NOT_FOUND")
    assert heard.of("myPrefDelete") == []


def test_deleting_a_user_preference(crowd: Crowd, heard: Heard) -> None:
    bob = crowd["bob"]
    ok(bob.post("/me/pref/folders-meta", json=[{"key": "a"}]))
    ok(bob.post("/me/pref/keep", json=1))
    assert ok(bob.request("DELETE", "/me/pref/folders-meta")) == {}
    assert ok(bob.get("/me/prefs")) == {"keep": 1}
    assert_error(bob.get("/me/pref", params={"key": "folders-meta"}), 404, "CONFIG_NOT_FOUND")
    [event] = heard.of("myPrefDelete")
    assert (event.users, event.rooms, event.data) == (["bob"], [], "folders-meta")


def test_user_preferences_are_private(crowd: Crowd, heard: Heard) -> None:
    alice, bob = crowd["alice"], crowd["bob"]
    ok(alice.post("/me/pref/secret", json={"pin": 1234}))
    assert ok(bob.get("/me/pref")) == []
    assert ok(bob.get("/me/prefs")) == {}
    assert_error(bob.get("/me/pref", params={"key": "secret"}), 404, "CONFIG_NOT_FOUND")
    assert_error(bob.request("DELETE", "/me/pref/secret"), 404, "CONFIG_NOT_FOUND")
    # bob's own key of the same name is his, and alice's stays as it was.
    ok(bob.post("/me/pref/secret", json="mine"))
    assert ok(alice.get("/me/pref", params={"key": "secret"}))["data"] == {"pin": 1234}
    ok(bob.request("DELETE", "/me/pref/secret"))
    assert ok(alice.get("/me/prefs")) == {"secret": {"pin": 1234}}
    changes = [(e.users, e.data["data"]) for e in heard.of("myPrefChange")]
    assert changes == [(["alice"], {"pin": 1234}), (["bob"], "mine")]
    assert [e.users for e in heard.of("myPrefDelete")] == [["bob"]]


# -- mute and notifications ----------------------------------------------------------------


def test_mute_and_unmute_a_room(crowd: Crowd) -> None:
    alice, bob = crowd["alice"], crowd["bob"]
    room_id = club(crowd)
    muted = ok(alice.post(f"/me/mute/{room_id}"))
    assert muted["_id"] == "alice" and muted["mute"] == [room_id]
    assert ok(alice.post(f"/me/mute/{room_id}"))["mute"] == [room_id]  # once only
    assert ok(alice.get("/me"))["mute"] == [room_id]
    assert ok(alice.get(f"/rooms/{room_id}"))["muted"] is True
    assert ok(bob.get(f"/rooms/{room_id}"))["muted"] is False  # alice's mute, not bob's
    assert ok(bob.get("/me"))["mute"] == []

    unmuted = ok(alice.request("DELETE", f"/me/mute/{room_id}"))
    assert unmuted["mute"] == []
    assert ok(alice.get(f"/rooms/{room_id}"))["muted"] is False
    assert_error(alice.request("DELETE", f"/me/mute/{room_id}"), 400, "ROOM_NOT_MUTED")
    assert_error(bob.request("DELETE", f"/me/mute/{room_id}"), 400, "ROOM_NOT_MUTED")


def test_notifications_switch(crowd: Crowd) -> None:
    carol = crowd["carol"]
    assert ok(carol.get("/me"))["notificationEnabled"] is True
    off = ok(carol.post("/me/notification/disable"))
    assert off["_id"] == "carol" and off["notificationEnabled"] is False
    assert ok(carol.post("/me/notification/disable"))["notificationEnabled"] is False
    assert ok(carol.get("/me"))["notificationEnabled"] is False
    assert ok(crowd["bob"].get("/me"))["notificationEnabled"] is True
    assert ok(carol.post("/me/notification/enable"))["notificationEnabled"] is True
    assert ok(carol.get("/me"))["notificationEnabled"] is True


# -- devices -------------------------------------------------------------------------------


def test_subscribe_and_unsubscribe_devices(crowd: Crowd) -> None:
    carol = crowd["carol"]
    for device, kind in (("d1", "fcm"), ("d2", "ios"), ("d3", "ios-voip")):
        body = {"type": kind, "token": f"tok-{device}", "deviceId": device}
        assert ok(carol.post("/me/subscribe", json=body)) == {}
    # The same device again replaces its token instead of adding a device.
    ok(carol.post("/me/subscribe", json={"type": "android", "token": "new", "deviceId": "d1"}))
    assert devices(crowd, "carol") == ["d1", "d2", "d3"]
    # Without deviceId the token names the device.
    ok(carol.post("/me/subscribe", json={"type": "web", "token": "browser"}))
    assert devices(crowd, "carol") == ["browser", "d1", "d2", "d3"]

    assert ok(carol.post("/me/unsubscribe", json={"type": "ios", "deviceId": "d2"})) == {
        "n": 1,
        "ok": 1,
    }
    assert ok(carol.post("/me/unsubscribe", json={"type": "ios", "deviceId": "d2"}))["n"] == 0
    # The type alone drops that type's devices.
    assert ok(carol.post("/me/unsubscribe", json={"type": "ios-voip"}))["n"] == 1
    assert devices(crowd, "carol") == ["browser", "d1"]
    assert devices(crowd, "bob") == []


@pytest.mark.parametrize(
    "body",
    [
        {"type": "pager", "token": "t"},
        {"token": "t"},
        {"type": "fcm"},
        {"type": "fcm", "token": ""},
        {"type": "fcm", "token": 5},
        {"type": "fcm", "token": "t" * 4097},
        {"type": "fcm", "token": "t", "deviceId": "d" * 256},
        [],
    ],
    ids=[
        "unknown-type",
        "no-type",
        "no-token",
        "empty-token",
        "number-token",
        "token-too-long",
        "device-too-long",
        "array",
    ],
)
def test_subscribe_refuses_bad_bodies(crowd: Crowd, body: Any) -> None:
    assert_bad_request(crowd["carol"].post("/me/subscribe", json=body))
    assert devices(crowd, "carol") == []


def test_unsubscribe_refuses_bad_bodies(crowd: Crowd) -> None:
    carol = crowd["carol"]
    ok(carol.post("/me/subscribe", json={"type": "fcm", "token": "t", "deviceId": "d1"}))
    for body in ({}, {"deviceId": "d1"}, {"type": "fcm", "deviceId": ""}, []):
        assert_bad_request(carol.post("/me/unsubscribe", json=body))
    assert devices(crowd, "carol") == ["d1"]


# -- logout --------------------------------------------------------------------------------


def test_logout_ends_this_session_at_once(crowd: Crowd) -> None:
    carol = crowd["carol"]
    add_token_row(crowd.server, crowd.keys, "carol", "carol-tablet")
    tablet = crowd.session("carol-tablet", **{"IM-Device-ID": "tab"})
    ok(carol.post("/me/subscribe", json={"type": "fcm", "token": "p", "deviceId": "phone"}))
    ok(tablet.post("/me/subscribe", json={"type": "fcm", "token": "t", "deviceId": "tab"}))
    assert ok(tablet.get("/me"))["_id"] == "carol"  # cached as valid before the logout

    record = ok(tablet.post("/me/logout"))
    assert record["client"] == "carol"
    assert ISO_MS.match(record["expirationDate"]) and isinstance(record["expirationDateMS"], int)
    assert "token" not in record  # the secret is never echoed
    assert_error(tablet.get("/me"), 401, "INVALID_TOKEN")
    assert_error(tablet.post("/me/logout"), 401, "INVALID_TOKEN")
    # Only that session and that device: the phone's token and subscription live on.
    assert ok(carol.get("/me"))["_id"] == "carol"
    assert devices(crowd, "carol") == ["phone"]


def test_logout_without_a_device_id_keeps_the_devices(crowd: Crowd) -> None:
    carol = crowd["carol"]
    ok(carol.post("/me/subscribe", json={"type": "fcm", "token": "p", "deviceId": "phone"}))
    assert ok(carol.post("/me/logout"))["client"] == "carol"
    assert_error(carol.get("/me"), 401, "INVALID_TOKEN")
    assert devices(crowd, "carol") == ["phone"]
    assert ok(crowd["bob"].get("/me"))["_id"] == "bob"  # other users untouched


def test_logout_others_keeps_this_session_only(crowd: Crowd) -> None:
    add_token_row(crowd.server, crowd.keys, "carol", "carol-tablet")
    add_token_row(crowd.server, crowd.keys, "carol", "carol-laptop")
    here = crowd.session(crowd.tokens["carol"], **{"IM-Device-ID": "phone"})
    tablet = crowd.session("carol-tablet")
    laptop = crowd.session("carol-laptop")
    for client, device in ((here, "phone"), (tablet, "tab"), (laptop, "lap")):
        ok(client.post("/me/subscribe", json={"type": "fcm", "token": device, "deviceId": device}))
        assert ok(client.get("/me"))["_id"] == "carol"
    ok(crowd["bob"].post("/me/subscribe", json={"type": "fcm", "token": "b", "deviceId": "tab"}))

    result = ok(here.post("/me/logout-others"))
    assert len(result["data"]) == 2
    assert all(r["client"] == "carol" and "token" not in r for r in result["data"])
    assert ok(here.get("/me"))["_id"] == "carol"
    for gone in (tablet, laptop):
        assert_error(gone.get("/me"), 401, "INVALID_TOKEN")
    assert devices(crowd, "carol") == ["phone"]
    # bob's device of the same name and his session are his own.
    assert devices(crowd, "bob") == ["tab"]
    assert ok(crowd["bob"].get("/me"))["_id"] == "bob"
    # Nothing else to end now.
    assert ok(here.post("/me/logout-others")) == {"data": []}
    assert ok(here.get("/me"))["_id"] == "carol"
