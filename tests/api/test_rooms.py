"""Rooms over HTTP: the main flows a chat app goes through, and the events they publish."""

from __future__ import annotations

import time

import httpx

from tests.api.conftest import Recorder
from tests.conftest import Server, assert_error, ok


def test_create_join_list_and_read(people: dict[str, httpx.Client], events: Recorder) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    room = ok(
        alice.post(
            "/rooms/createAndJoin",
            json={
                "name": "Demo",
                "invitee": ["bob"],
                "systemMessage": True,
                "roomTags": ["team"],
            },
        )
    )
    room_id = room["_id"]
    assert [m["_id"] for m in room["members"]] == ["alice", "bob"]
    assert room["owner"] == "alice" and room["isSuperuser"] is True
    assert room["lastMessage"]["messageType"] == "addMembers"
    assert room["lastMessage"]["sender"]["_id"] == "alice"
    assert events.wait_for("room", room_id).users == ["alice", "bob"]

    listed = ok(bob.get("/rooms"))
    assert listed["totalCount"] == 1 and listed["data"][0]["_id"] == room_id
    assert listed["data"][0]["unread"] == 1 and listed["data"][0]["isSuperuser"] is False
    assert ok(bob.get("/rooms", params={"q": '{"roomTags": "team"}'}))["totalCount"] == 1
    assert ok(bob.get("/rooms", params={"q": '{"roomTags": "other"}'}))["totalCount"] == 0
    assert ok(bob.get("/rooms/ids"))["data"] == [room_id]

    read = ok(bob.put(f"/rooms/{room_id}/lastRead", json={"message": room["lastMessage"]["_id"]}))
    assert read == {"client": "bob", "lastRead": room["lastMessage"]["_id"], "badge": 0}
    assert events.wait_for("lastRead", room_id).data == {
        "roomID": room_id,
        "memberID": "bob",
        "messageID": room["lastMessage"]["_id"],
    }

    assert_error(carol.get(f"/rooms/{room_id}"), 403, "NOT_ROOM_MEMBER")
    assert ok(carol.get(f"/rooms/{room_id}/exists")) == {"exists": True}
    assert_error(carol.get("/rooms/no-such-room"), 404, "ROOM_NOT_FOUND")


def test_roles_and_membership_rules(people: dict[str, httpx.Client]) -> None:
    alice, bob = people["alice"], people["bob"]
    room_id = ok(alice.post("/rooms/createAndJoin", json={"invitee": ["bob", "carol"]}))["_id"]
    # A plain member may not change the room, remove others, or grant roles.
    assert_error(
        bob.put(f"/rooms/{room_id}", json={"name": "mine"}), 403, "INSUFFICIENT_PERMISSIONS"
    )
    assert_error(
        bob.post(f"/rooms/{room_id}/delete/members", json={"members": ["carol"]}),
        403,
        "INSUFFICIENT_PERMISSIONS",
    )
    assert_error(
        bob.put(f"/rooms/{room_id}/member/bob", json={"property": "role", "value": "admin"}),
        403,
        "INSUFFICIENT_PERMISSIONS",
    )
    # The owner makes bob an admin; then bob may remove carol.
    granted = ok(
        alice.put(f"/rooms/{room_id}/member/bob", json={"property": "role", "value": "admin"})
    )
    assert {p["client"]: p["role"] for p in granted["memberProperties"]}["bob"] == "admin"
    assert granted["lastMessage"]["messageType"] == "assignAdmin"
    after = ok(bob.post(f"/rooms/{room_id}/delete/members", json={"members": ["carol"]}))
    assert [m["_id"] for m in after["members"]] == ["alice", "bob"]
    # Only the owner deletes the room.
    assert_error(bob.delete(f"/rooms/{room_id}"), 403, "INSUFFICIENT_PERMISSIONS")
    assert ok(alice.delete(f"/rooms/{room_id}")) == {"n": 1, "ok": 1}
    assert_error(alice.get(f"/rooms/{room_id}"), 404, "ROOM_NOT_FOUND")


def test_direct_room_id_is_stable_for_the_pair(people: dict[str, httpx.Client]) -> None:
    import hashlib

    room = ok(
        people["alice"].post("/rooms/createAndJoin", json={"roomType": "direct", "invitee": "bob"})
    )
    assert room["_id"] == hashlib.md5(b"alice_bob").hexdigest()  # noqa: S324 - the SDKs' id
    again = people["bob"].post(
        "/rooms/createAndJoin", json={"roomType": "direct", "invitee": "alice"}
    )
    assert_error(again, 409, "ROOM_EXISTS")


def test_admin_creates_rooms_and_clients_may_not(
    admin: httpx.Client, people: dict[str, httpx.Client]
) -> None:
    room = ok(
        admin.post("/rooms", json={"_id": "lobby", "members": ["alice", "bob"], "owner": "alice"})
    )
    assert room["_id"] == "lobby" and room["owner"] == "alice"
    assert_error(people["alice"].post("/rooms", json={"_id": "x"}), 403, "INSUFFICIENT_PERMISSIONS")
    assert_error(admin.post("/rooms", json={"members": ["ghost"]}), 404, "CLIENT_NOT_FOUND")
    assert_error(admin.post("/rooms", json={"roomType": "space"}), 400, "INVALID_REQUEST")


def test_a_room_of_another_app_is_not_found(
    server: Server, people: dict[str, httpx.Client]
) -> None:
    room_id = ok(people["alice"].post("/rooms/createAndJoin", json={}))["_id"]
    other = server.new_app("other")
    with server.client(**{"IM-API-KEY": other.api_key}) as stranger:
        assert_error(stranger.get(f"/rooms/{room_id}"), 404, "ROOM_NOT_FOUND")
        assert ok(stranger.get(f"/rooms/{room_id}/exists")) == {"exists": False}


def test_typing_reaches_the_room(people: dict[str, httpx.Client], events: Recorder) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    room_id = ok(alice.post("/rooms/createAndJoin", json={"invitee": ["bob"]}))["_id"]
    assert ok(bob.post(f"/rooms/{room_id}/typing", json={"message": "…"})) == {
        "message": "…",
        "room": room_id,
        "sender": "bob",
    }
    typing = events.wait_for("typing", room_id)
    assert typing.data["sender"] == "bob" and typing.data["senderInfo"]["nickname"] == "Bob"
    assert_error(carol.post(f"/rooms/{room_id}/typing", json={}), 403, "NOT_ROOM_MEMBER")


def test_typing_is_relayed_once_a_second_per_user_and_room(
    people: dict[str, httpx.Client], events: Recorder
) -> None:
    alice, bob = people["alice"], people["bob"]
    room_id = ok(alice.post("/rooms/createAndJoin", json={"invitee": ["bob"]}))["_id"]
    started = time.monotonic()
    for _ in range(5):  # a client reporting every keystroke
        assert ok(bob.post(f"/rooms/{room_id}/typing", json={}))["sender"] == "bob"
    ok(alice.post(f"/rooms/{room_id}/typing", json={}))  # someone else: not throttled
    events.wait_for("typing", room_id)
    time.sleep(0.3)

    def relayed(sender: str) -> int:
        return sum(
            1
            for e in events.events
            if e.kind == "typing" and room_id in e.rooms and e.data["sender"] == sender
        )

    elapsed = time.monotonic() - started  # a slow machine may span a second boundary
    assert 1 <= relayed("bob") <= min(4, 1 + int(elapsed))
    assert relayed("alice") == 1
    time.sleep(1.0)
    ok(bob.post(f"/rooms/{room_id}/typing", json={}))
    deadline = time.monotonic() + 5
    while relayed("bob") < 2:
        assert time.monotonic() < deadline, "the next second's typing was not relayed"
        time.sleep(0.02)
