"""Invitations, preferences and the current user's devices, over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.api.conftest import Recorder
from tests.conftest import AppKeys, Server, assert_error, issue_token, ok


@pytest.fixture
def people(
    server: Server, app_keys: AppKeys, admin: httpx.Client
) -> Iterator[dict[str, httpx.Client]]:
    clients = {}
    for name in ("alice", "bob", "carol"):
        token = issue_token(admin, name, nickname=name.title())
        clients[name] = server.client(
            **{"IM-CLIENT-KEY": app_keys.client_key, "IM-Authorization": token}
        )
    yield clients
    for client in clients.values():
        client.close()


def test_invitation_lifecycle(people: dict[str, httpx.Client], events: Recorder) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    room = ok(
        alice.post(
            "/rooms/createAndJoin",
            json={"name": "Club", "invitee": ["bob", "carol"], "invitationRequired": True},
        )
    )
    room_id = room["_id"]
    assert [m["_id"] for m in room["members"]] == ["alice"]
    invitation = events.wait_for("invitation", user="bob")  # published to each invitee
    assert invitation.data["room"]["_id"] == room_id
    assert invitation.data["inviter"]["_id"] == "alice"
    assert room["invitationRequired"] is True
    mine = ok(bob.get("/rooms/invitations"))
    assert mine["totalCount"] == 1
    assert mine["data"][0]["room"]["_id"] == room_id
    assert mine["data"][0]["inviter"]["_id"] == "alice"
    assert ok(bob.get("/rooms"))["totalCount"] == 0  # not a member yet
    listed = ok(alice.get(f"/rooms/{room_id}/invitations"))
    assert [i["invitee"]["_id"] for i in listed["data"]] == ["bob", "carol"]

    joined = ok(bob.post(f"/rooms/{room_id}/join", json={}))  # accepting consumes it
    assert [m["_id"] for m in joined["members"]] == ["alice", "bob"]
    assert ok(bob.get("/rooms/invitations"))["totalCount"] == 0
    assert ok(carol.request("DELETE", f"/rooms/{room_id}/invitations"))["totalCount"] == 0
    assert_error(carol.post(f"/rooms/{room_id}/join", json={}), 403, "INSUFFICIENT_PERMISSIONS")

    ok(alice.post(f"/rooms/{room_id}/members", json={"invitees": ["carol"]}))  # re-invite
    remaining = ok(alice.post(f"/rooms/{room_id}/delete/invitations", json={"invitees": ["carol"]}))
    assert remaining["totalCount"] == 0
    assert events.wait_for("cancelInvitation", user="carol").data == {"room": room_id}
    assert ok(alice.get(f"/rooms/{room_id}"))["lastMessage"]["messageType"] == ("cancelInvitations")


def test_room_preferences(people: dict[str, httpx.Client], events: Recorder) -> None:
    alice = people["alice"]
    room_id = ok(alice.post("/rooms/createAndJoin", json={}))["_id"]
    pref = ok(alice.post(f"/roomPrefs/{room_id}", json={"tags": ["work"], "muted": True}))
    assert pref == {"room": room_id, "tags": ["work"], "muted": True}
    merged = ok(alice.post(f"/roomPrefs/{room_id}", json={"folder": "Inbox"}))
    assert merged["tags"] == ["work"] and merged["folder"] == "Inbox"
    room = ok(alice.get(f"/rooms/{room_id}"))
    assert room["muted"] is True and room["pref"]["folder"] == "Inbox"
    assert ok(alice.get("/roomPrefs"))["totalCount"] == 1
    assert "muted" not in ok(alice.request("DELETE", f"/roomPrefs/{room_id}/muted"))
    assert events.wait_for("roomPref", user="alice").data["room"] == room_id
    group = ok(alice.post(f"/roomPrefs/{room_id}/group/sales", json={"sticky": True}))
    assert group["sticky"] is True
    assert ok(alice.get("/roomPrefs/group/sales"))["data"][0]["sticky"] is True
    assert_error(
        alice.post(f"/roomPrefs/{room_id}", json={"colour": "red"}), 400, "INVALID_REQUEST"
    )
    assert_error(alice.post("/roomPrefs/nope", json={"muted": True}), 404, "ROOM_NOT_FOUND")


def test_a_group_name_longer_than_its_column_is_refused(people: dict[str, httpx.Client]) -> None:
    # The column holds 255 characters: SQLite once stored a longer name (answering 200),
    # where PostgreSQL refused it.
    alice = people["alice"]
    room_id = ok(alice.post("/rooms/createAndJoin", json={}))["_id"]
    group = "g" * 256
    for response in (
        alice.post(f"/roomPrefs/{room_id}/group/{group}", json={"sticky": True}),
        alice.request("DELETE", f"/roomPrefs/{room_id}/group/{group}/sticky"),
        alice.get(f"/roomPrefs/group/{group}"),
    ):
        assert_error(response, 400, "INVALID_REQUEST")
    assert ok(alice.post(f"/roomPrefs/{room_id}/group/{'g' * 255}", json={"sticky": True}))


def test_unsubscribing_an_unknown_device_type_is_refused(
    people: dict[str, httpx.Client],
) -> None:
    # It once answered {"n": 0} as if the type were real.
    alice = people["alice"]
    ok(alice.post("/me/subscribe", json={"type": "fcm", "token": "t1", "deviceId": "d1"}))
    response = alice.post("/me/unsubscribe", json={"type": "pager", "deviceId": "d1"})
    assert_error(response, 400, "INVALID_REQUEST")
    assert ok(alice.post("/me/unsubscribe", json={"type": "fcm", "deviceId": "d1"}))["n"] == 1


def test_user_preferences(people: dict[str, httpx.Client], events: Recorder) -> None:
    bob = people["bob"]
    assert ok(bob.post("/me/pref/folders-meta", json=[{"key": "a", "name": "A"}])) == {
        "key": "folders-meta",
        "data": [{"key": "a", "name": "A"}],
    }
    assert ok(bob.get("/me/pref", params={"key": "folders-meta"}))["data"][0]["name"] == "A"
    assert ok(bob.get("/me/prefs")) == {"folders-meta": [{"key": "a", "name": "A"}]}
    assert [p["key"] for p in ok(bob.get("/me/pref"))] == ["folders-meta"]
    assert events.wait_for("myPrefChange", user="bob").data["key"] == "folders-meta"
    assert ok(bob.request("DELETE", "/me/pref/folders-meta")) == {}
    assert events.wait_for("myPrefDelete", user="bob").data == "folders-meta"
    assert_error(bob.request("DELETE", "/me/pref/folders-meta"), 404, "CONFIG_NOT_FOUND")


def test_mute_notifications_devices_and_logout(
    server: Server, app_keys: AppKeys, admin: httpx.Client, people: dict[str, httpx.Client]
) -> None:
    carol = people["carol"]
    room_id = ok(carol.post("/rooms/createAndJoin", json={}))["_id"]
    assert ok(carol.post(f"/me/mute/{room_id}"))["mute"] == [room_id]
    assert ok(carol.get(f"/rooms/{room_id}"))["muted"] is True
    assert ok(carol.request("DELETE", f"/me/mute/{room_id}"))["mute"] == []
    assert_error(carol.request("DELETE", f"/me/mute/{room_id}"), 400, "ROOM_NOT_MUTED")
    assert ok(carol.post("/me/notification/disable"))["notificationEnabled"] is False
    assert ok(carol.post("/me/notification/enable"))["notificationEnabled"] is True
    assert (
        ok(carol.post("/me/subscribe", json={"type": "fcm", "token": "t1", "deviceId": "d1"})) == {}
    )
    assert_error(
        carol.post("/me/subscribe", json={"type": "pager", "token": "t"}), 400, "INVALID_REQUEST"
    )
    assert server.call(lambda s: s.devices.devices(app_keys.id, "carol")) == [
        {"deviceId": "d1", "type": "fcm"}
    ]

    other = issue_token(admin, "carol")  # a second session for carol... replaces the first
    assert_error(carol.get("/me"), 401, "INVALID_TOKEN")
    headers = {
        "IM-CLIENT-KEY": app_keys.client_key,
        "IM-Authorization": other,
        "IM-Device-ID": "d1",
    }
    with server.client(**headers) as session:
        assert ok(session.post("/me/logout"))["client"] == "carol"
        assert_error(session.get("/me"), 401, "INVALID_TOKEN")
    assert server.call(lambda s: s.devices.devices(app_keys.id, "carol")) == []


def test_quitted_rooms_and_rejoining(people: dict[str, httpx.Client]) -> None:
    alice, bob = people["alice"], people["bob"]
    room_id = ok(alice.post("/rooms/createAndJoin", json={"name": "Old", "invitee": ["bob"]}))[
        "_id"
    ]
    ok(bob.post(f"/rooms/{room_id}/delete/members", json={"members": ["bob"]}))
    quitted = ok(bob.get("/rooms/quitted"))
    assert [r["_id"] for r in quitted["data"]] == [room_id]
    assert quitted["data"][0]["name"] == "Old" and "quittedAt" in quitted["data"][0]["pref"]
    ok(bob.post(f"/rooms/{room_id}/join", json={}))
    assert ok(bob.get("/rooms/quitted"))["totalCount"] == 0


def test_rooms_filtered_by_the_callers_preferences(people: dict[str, httpx.Client]) -> None:
    alice = people["alice"]
    work = ok(alice.post("/rooms/createAndJoin", json={"name": "Work"}))["_id"]
    home = ok(alice.post("/rooms/createAndJoin", json={"name": "Home"}))["_id"]
    ok(alice.post(f"/roomPrefs/{work}", json={"tags": ["job", "daily"], "folder": "A"}))
    ok(alice.post(f"/roomPrefs/{home}", json={"tags": ["family"], "hidden": True}))

    def names(pref: dict[str, object]) -> list[str]:
        listed = ok(alice.get("/rooms", params={"pref": json.dumps(pref)}))
        return sorted(r["name"] for r in listed["data"])

    assert names({"tags": "job"}) == ["Work"]
    assert names({"tags": {"$in": ["job", "family"]}}) == ["Home", "Work"]
    assert names({"tags": {"$all": ["job", "daily"]}}) == ["Work"]
    assert names({"folder": "A"}) == ["Work"]
    assert names({"hidden": True}) == ["Home"]
    bad = alice.get("/rooms", params={"pref": json.dumps({"colour": "x"})})
    assert_error(bad, 400, "INVALID_QUERY")
