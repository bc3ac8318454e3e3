"""Changing messages over HTTP (contract §3.7): edit, recall, delete, hide for the room,
hide for me, hide by sender, pin and react — who may, what each leaves behind for whom,
and the event each publishes after it commits. The rights are the table in the docstring
of parley.services.messaging."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from parley.services.events import Event
from parley.services.messages import HIDDEN_STUB_FIELDS
from tests.api.conftest import Recorder
from tests.api.test_messages_send import (
    badge,
    delete_message,
    ids,
    make_room,
    page,
    send,
)
from tests.conftest import Server, assert_error, ok


def published(
    events: Recorder, kind: str, match: Callable[[Event], bool], timeout: float = 5.0
) -> Event:
    """The first event of ``kind`` that ``match`` accepts, waiting for it to arrive."""
    deadline = time.monotonic() + timeout
    while True:
        found = next((e for e in list(events.events) if e.kind == kind and match(e)), None)
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"no matching {kind} event: {events.events}"
        time.sleep(0.02)


def message_event(events: Recorder, message: dict[str, Any]) -> Event:
    """The ``chat message`` event that carries exactly this state of the message."""
    event = published(
        events,
        "chat message",
        lambda e: (
            e.data["_id"] == message["_id"]
            and e.data["updatedAtMS"] == message["updatedAtMS"]
            and e.data == message
        ),
    )
    assert event.rooms == [message["room"]] and event.users == []
    return event


def last_message_of(event: Event) -> str | None:
    last = event.data.get("lastMessage") if isinstance(event.data, dict) else None
    return last["_id"] if last else None


def visible(client: httpx.Client, room_id: str) -> list[str]:
    return ids(page(client, room_id, limit=1000)["data"])


@pytest.fixture
def trio(people: dict[str, httpx.Client]) -> tuple[str, dict[str, httpx.Client]]:
    """A room owned by alice with bob and carol as members; dave is outside."""
    return make_room(people["alice"], "bob", "carol"), people


def _edit(client: httpx.Client, room_id: str, message_id: str, **fields: Any) -> httpx.Response:
    return client.post(f"/rooms/{room_id}/message", json={"_id": message_id, **fields})


def _recall(client: httpx.Client, room_id: str, message_id: str) -> httpx.Response:
    return client.post(
        f"/rooms/{room_id}/message", json={"_id": message_id, "messageType": "recall"}
    )


# -- edit -----------------------------------------------------------------------------------


def test_the_sender_edits(
    admin: httpx.Client, trio: tuple[str, dict[str, httpx.Client]], events: Recorder
) -> None:
    room_id, people = trio
    alice, bob, dave = people["alice"], people["bob"], people["dave"]
    sent = send(bob, room_id, "draft", extra={"keep": 1}, mentions=["carol"])
    time.sleep(0.002)
    edited = ok(_edit(bob, room_id, sent["_id"], message="final", note="added"))
    assert edited["message"] == "final" and edited["note"] == "added"
    assert edited["extra"] == {"keep": 1} and edited["mentions"] == ["carol"]
    assert edited["createdAtMS"] == sent["createdAtMS"] and edited["seq"] == sent["seq"]
    assert edited["updatedAtMS"] > sent["updatedAtMS"] and edited["editedAt"]
    assert edited["messageType"] == "text"
    message_event(events, edited)
    assert page(alice, room_id)["data"][0] == edited
    assert page(alice, room_id)["totalCount"] == 1 and badge(alice) == 1  # no new message

    # Through the API Key acting as the sender too.
    again = ok(
        admin.post(
            f"/rooms/{room_id}/message",
            json={"_id": sent["_id"], "message": "by backend"},
            headers={"IM-CLIENT-ID": "bob"},
        )
    )
    assert again["message"] == "by backend"
    # Nobody else: not the owner, not another member, not the API Key as someone else.
    for other in (alice, people["carol"]):
        assert_error(
            _edit(other, room_id, sent["_id"], message="x"), 403, "INSUFFICIENT_PERMISSIONS"
        )
    as_alice = admin.post(
        f"/rooms/{room_id}/message",
        json={"_id": sent["_id"], "message": "x"},
        headers={"IM-CLIENT-ID": "alice"},
    )
    assert_error(as_alice, 403, "INSUFFICIENT_PERMISSIONS")
    # A stranger, a wrong room, an unknown message: not found.
    assert_error(_edit(dave, room_id, sent["_id"], message="x"), 404, "MESSAGE_NOT_FOUND")
    dave_room = make_room(dave, "bob")
    assert_error(_edit(bob, dave_room, sent["_id"], message="x"), 404, "MESSAGE_NOT_FOUND")
    assert_error(_edit(bob, room_id, "0" * 24, message="x"), 404, "MESSAGE_NOT_FOUND")
    assert_error(_edit(bob, "no-room", sent["_id"], message="x"), 404, "ROOM_NOT_FOUND")
    assert_error(_edit(bob, room_id, sent["_id"], messageType="joinRoom"), 400, "INVALID_REQUEST")
    assert page(alice, room_id)["data"][0]["message"] == "by backend"


def test_what_cannot_be_edited(trio: tuple[str, dict[str, httpx.Client]]) -> None:
    room_id, people = trio
    alice, bob = people["alice"], people["bob"]
    system = ok(
        alice.post(f"/rooms/{room_id}/members", json={"invitees": ["dave"], "systemMessage": True})
    )
    system_message = system["lastMessage"]
    assert system_message["messageType"] in ("addMember", "addMembers")
    assert_error(_edit(alice, room_id, system_message["_id"], message="x"), 400, "INVALID_REQUEST")
    recalled = send(bob, room_id, "gone soon")
    ok(_recall(bob, room_id, recalled["_id"]))
    assert_error(_edit(bob, room_id, recalled["_id"], message="back"), 400, "INVALID_REQUEST")
    # A sender who left may no longer edit; a frozen room takes no edits.
    mine = send(bob, room_id, "before leaving")
    ok(bob.post(f"/rooms/{room_id}/delete/members", json={"members": ["bob"]}))
    assert_error(_edit(bob, room_id, mine["_id"], message="x"), 404, "MESSAGE_NOT_FOUND")
    carols = send(people["carol"], room_id, "carol's")
    ok(alice.put(f"/rooms/{room_id}", json={"status": 0}))
    assert_error(_edit(people["carol"], room_id, carols["_id"], message="x"), 403, "ROOM_FROZEN")
    assert page(alice, room_id)["data"][0]["message"] == "carol's"


def test_an_edit_may_not_grow_a_message_past_the_limit(
    server: Server, trio: tuple[str, dict[str, httpx.Client]]
) -> None:
    room_id, people = trio
    bob = people["bob"]
    half = "x" * (server.settings.max_message_bytes // 2 + 100)
    sent = send(bob, room_id, half)
    response = _edit(bob, room_id, sent["_id"], extra=half)
    stored = page(bob, room_id)["data"][0]
    assert "extra" not in stored, (
        "BUG: an edit merges its fields into the stored message but checks only the size "
        "of the edit, so a message grows past max_message_bytes; "
        f"the edit answered {response.status_code}"
    )
    assert_error(response, 413, "MESSAGE_TOO_LARGE")


def test_a_reply_in_an_edit_quotes_a_message_of_the_room(
    trio: tuple[str, dict[str, httpx.Client]],
) -> None:
    room_id, people = trio
    alice, bob = people["alice"], people["bob"]
    first = send(alice, room_id, "first")
    mine = send(bob, room_id, "answer")
    edited = ok(_edit(bob, room_id, mine["_id"], reply=first["_id"]))
    assert edited["reply"]["_id"] == first["_id"] and edited["reply"]["message"] == "first"
    elsewhere = send(people["dave"], make_room(people["dave"]), "elsewhere")
    response = _edit(bob, room_id, mine["_id"], reply=elsewhere["_id"])
    assert "elsewhere" not in response.text
    assert response.status_code == 404, (
        f"BUG: a reply to no message of this room answers {response.text}; "
        "MESSAGE_NOT_FOUND is a 404 code (contract §1.3)"
    )
    assert_error(response, 404, "MESSAGE_NOT_FOUND")


# -- recall ---------------------------------------------------------------------------------


def test_recall_empties_the_message_and_keeps_it_for_everyone(
    admin: httpx.Client, trio: tuple[str, dict[str, httpx.Client]], events: Recorder
) -> None:
    room_id, people = trio
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    sent = send(
        bob,
        room_id,
        "oops",
        extra={"secret": 1},
        mentions=["carol"],
        images=[{"originalUrl": "u"}],
        clientMessageId="c-1",
    )
    ok(alice.post(f"/messages/{sent['_id']}/pin"))
    ok(carol.post(f"/messages/{sent['_id']}/reaction", json={"reaction": "like"}))
    # Only the sender: not the owner, not another member.
    for other in (alice, carol):
        assert_error(_recall(other, room_id, sent["_id"]), 403, "INSUFFICIENT_PERMISSIONS")
    assert_error(_recall(people["dave"], room_id, sent["_id"]), 404, "MESSAGE_NOT_FOUND")
    assert_error(_recall(bob, room_id, "0" * 24), 404, "MESSAGE_NOT_FOUND")

    time.sleep(0.002)
    recalled = ok(_recall(bob, room_id, sent["_id"]))
    assert recalled["messageType"] == "recall" and recalled["message"] == ""
    assert recalled["mentions"] == [] and recalled["clientMessageId"] == "c-1"
    for gone in ("extra", "images", "reactions", "reactionCount"):
        assert gone not in recalled, gone
    assert recalled["pinned"] is False
    assert recalled["_id"] == sent["_id"] and recalled["createdAtMS"] == sent["createdAtMS"]
    assert recalled["updatedAtMS"] > sent["updatedAtMS"]
    message_event(events, recalled)
    for reader in (alice, bob, carol):
        assert page(reader, room_id)["data"] == [recalled]
    assert ok(carol.get(f"/rooms/{room_id}/pined-messages"))["data"] == []
    assert "oops" not in str(ok(admin.get("/admin/messages")))
    assert_error(alice.post(f"/messages/{sent['_id']}/pin"), 400, "INVALID_REQUEST")
    # The API Key recalls any message, without naming a user.
    other = send(carol, room_id, "carol's")
    by_admin = ok(_recall(admin, room_id, other["_id"]))
    assert by_admin["messageType"] == "recall" and by_admin["sender"]["_id"] == "carol"
    system = ok(
        alice.post(f"/rooms/{room_id}/members", json={"invitees": ["dave"], "systemMessage": True})
    )
    assert_error(_recall(admin, room_id, system["lastMessage"]["_id"]), 400, "INVALID_REQUEST")


# -- delete for everyone --------------------------------------------------------------------


def test_delete_is_for_superusers_and_removes_for_everyone(
    admin: httpx.Client, trio: tuple[str, dict[str, httpx.Client]], events: Recorder
) -> None:
    room_id, people = trio
    alice, bob, carol, dave = people["alice"], people["bob"], people["carol"], people["dave"]
    ok(alice.put(f"/rooms/{room_id}/member/bob", json={"property": "role", "value": "admin"}))
    ok(alice.put(f"/rooms/{room_id}", json={"managers": ["carol"]}))
    ok(alice.post(f"/rooms/{room_id}/members", json={"invitees": ["dave"]}))
    messages = [send(dave, room_id, f"m{i}") for i in range(6)]
    # A plain member may not delete, not even their own message; a stranger neither.
    for message in messages:
        response = dave.delete(f"/rooms/{room_id}/messages/{message['_id']}")
        assert_error(response, 403, "INSUFFICIENT_PERMISSION")
    assert_error(dave.delete(f"/rooms/{room_id}/messages/_all"), 403, "INSUFFICIENT_PERMISSION")
    outsider_room = make_room(people["alice"])
    assert_error(
        bob.delete(f"/rooms/{outsider_room}/messages/{messages[0]['_id']}"),
        403,
        "INSUFFICIENT_PERMISSION",
    )
    sent_ids = [m["_id"] for m in messages]

    def dave_sent(reader: httpx.Client) -> list[str]:
        return [i for i in visible(reader, room_id) if i in sent_ids]

    assert dave_sent(dave) == sent_ids[::-1]

    # The owner, a role admin, a manager and the API Key may.
    for who, message in zip((alice, bob, carol, admin), messages, strict=False):
        result = delete_message(who, room_id, message["_id"])
        assert result["deletedCount"] == 1 and result["messageID"] == message["_id"]
        assert result["roomID"] == room_id and result["deletedAt"].endswith("Z")
        assert isinstance(result["deletedAtMS"], int)
    deleted = {m["_id"] for m in messages[:4]}
    assert delete_message(alice, room_id, messages[4]["_id"])["deletedBy"] == "alice"
    deleted.add(messages[4]["_id"])
    for reader in (alice, bob, dave, admin):
        assert dave_sent(reader) == [messages[5]["_id"]]
        assert not deleted & set(ids(ok(reader.get(f"/rooms/{room_id}/messages"))["data"]))
    assert ok(dave.get(f"/rooms/{room_id}/count"))["count"] == len(visible(dave, room_id))
    assert_error(
        dave.get(f"/rooms/{room_id}/messages/{messages[0]['_id']}"), 404, "MESSAGE_NOT_FOUND"
    )

    # Each delete tells the room (its view after the delete: the last message stays).
    def after_deletes() -> list[Event]:
        return [
            e
            for e in list(events.events)
            if e.kind == "room"
            and e.rooms == [room_id]
            and last_message_of(e) == messages[5]["_id"]
        ]

    deadline = time.monotonic() + 5
    while len(after_deletes()) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(after_deletes()) == 5 and after_deletes()[0].data["_id"] == room_id
    # The room's last message moves back when its last message goes.
    delete_message(alice, room_id, messages[5]["_id"])
    newest = ids(ok(alice.get(f"/rooms/{room_id}/messages"))["data"])[0]  # by sequence
    assert newest not in sent_ids
    assert ok(alice.get(f"/rooms/{room_id}"))["lastMessage"]["_id"] == newest
    published(events, "room", lambda e: room_id in e.rooms and last_message_of(e) == newest)

    assert_error(alice.delete(f"/rooms/{room_id}/messages/{'0' * 24}"), 404, "MESSAGE_NOT_FOUND")
    assert_error(
        alice.delete(f"/rooms/{room_id}/messages/{messages[0]['_id']}"), 404, "MESSAGE_NOT_FOUND"
    )
    theirs = send(alice, outsider_room, "another room's")
    assert_error(
        alice.delete(f"/rooms/{room_id}/messages/{theirs['_id']}"), 404, "MESSAGE_NOT_FOUND"
    )
    assert_error(alice.delete(f"/rooms/nowhere/messages/{theirs['_id']}"), 404, "ROOM_NOT_FOUND")
    assert visible(alice, outsider_room) == [theirs["_id"]]


def test_delete_all_empties_the_room_for_everyone(
    trio: tuple[str, dict[str, httpx.Client]], events: Recorder
) -> None:
    room_id, people = trio
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    for i in range(5):
        send(bob if i % 2 else carol, room_id, f"m{i}")
    other_room = make_room(alice, "bob")
    kept = send(alice, other_room, "elsewhere")
    ok(
        bob.post(
            "/messages/user-delete", json={"room": room_id, "messages": visible(bob, room_id)[:1]}
        )
    )
    assert badge(alice) == 5

    result = delete_message(alice, room_id, "_all")
    assert result["deletedCount"] == 5 and result["messageID"] == "_all"
    for reader in (alice, bob, carol):
        assert page(reader, room_id) == {"totalCount": 0, "data": [], "userDeletedIDs": []}
        assert ok(reader.get("/messages/user-delete", params={"room": room_id}))["data"] == []
    assert badge(alice) == 0 and badge(carol) == 0 and badge(bob) == 1  # the other room's
    assert ok(bob.get(f"/rooms/{room_id}"))["unread"] == 0
    assert visible(bob, other_room) == [kept["_id"]]
    assert delete_message(alice, room_id, "_all")["deletedCount"] == 0
    published(events, "room", lambda e: room_id in e.rooms and not e.data.get("lastMessage"))
    # The room goes on: new messages count from zero.
    send(carol, room_id, "fresh start")
    assert badge(alice) == 1


# -- hide for me ----------------------------------------------------------------------------


def test_user_delete_hides_only_for_the_caller(
    trio: tuple[str, dict[str, httpx.Client]], events: Recorder
) -> None:
    room_id, people = trio
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    one, two, three = (send(alice, room_id, t) for t in ("one", "two", "three"))
    other_room = make_room(alice, "bob")
    elsewhere = send(alice, other_room, "elsewhere")

    hidden = ok(
        bob.post(
            "/messages/user-delete",
            json={
                "room": room_id,
                "messages": [one["_id"], two["_id"], elsewhere["_id"], "0" * 24],
            },
        )
    )
    assert set(hidden["messages"]) == {one["_id"], two["_id"]}  # only this room's, found
    assert hidden["room"] == room_id and hidden["nModified"] == 2
    event = published(events, "userDeleteMessages", lambda e: e.data["room"] == room_id)
    assert event.users == ["bob"] and event.rooms == []  # to bob's own sockets only
    assert set(event.data["messages"]) == {one["_id"], two["_id"]}
    assert event.data["isUserDeleteAllMessagesInRoom"] is False

    mine = page(bob, room_id)
    assert set(mine["userDeletedIDs"]) == {one["_id"], two["_id"]}
    flags = {m["_id"]: m.get("isDeleted", False) for m in mine["data"]}
    assert flags == {one["_id"]: True, two["_id"]: True, three["_id"]: False}
    for other in (alice, carol):
        theirs = page(other, room_id)
        assert theirs["userDeletedIDs"] == [] and len(theirs["data"]) == 3
        assert not any(m.get("isDeleted") for m in theirs["data"])
    assert visible(bob, other_room) == [elsewhere["_id"]]
    assert page(bob, other_room)["userDeletedIDs"] == []
    listed = ok(bob.get("/messages/user-delete", params={"room": room_id}))
    assert listed["totalCount"] == 2
    assert {d["message"] for d in listed["data"]} == {one["_id"], two["_id"]}
    assert all(d["createdAt"].endswith("Z") for d in listed["data"])
    assert ok(alice.get("/messages/user-delete", params={"room": room_id}))["totalCount"] == 0

    again = ok(bob.post("/messages/user-delete", json={"room": room_id, "messages": [one["_id"]]}))
    assert again["nModified"] == 0 and again["messages"] == [one["_id"]]
    everything = ok(bob.post("/messages/user-delete/all-in-room", json={"room": room_id}))
    assert everything["messages"] == [one["_id"], two["_id"], three["_id"]]
    assert everything["nModified"] == 1 and everything["totalCount"] == 3
    assert published(
        events, "userDeleteMessages", lambda e: e.data["isUserDeleteAllMessagesInRoom"]
    ).users == ["bob"]
    assert len(page(bob, room_id)["userDeletedIDs"]) == 3
    later = send(alice, room_id, "after hiding all")
    assert later["_id"] not in page(bob, room_id)["userDeletedIDs"]
    assert len(page(carol, room_id)["data"]) == 4 and page(carol, room_id)["userDeletedIDs"] == []


def test_user_delete_input(trio: tuple[str, dict[str, httpx.Client]]) -> None:
    room_id, people = trio
    bob, dave = people["bob"], people["dave"]
    sent = send(bob, room_id, "x")
    bad: list[tuple[Any, int, str]] = [
        ({"messages": [sent["_id"]]}, 400, "MISSING_PARAMETER"),
        ({"room": room_id}, 400, "MISSING_PARAMETER"),
        ({"room": room_id, "messages": []}, 400, "MISSING_PARAMETER"),
        ({"room": room_id, "messages": sent["_id"]}, 400, "MISSING_PARAMETER"),
        ({"room": room_id, "messages": [5]}, 400, "INVALID_BODY"),
        ({"room": room_id, "messages": ["x"] * 1001}, 413, "PAYLOAD_TOO_LARGE"),
        ({"room": "nowhere", "messages": [sent["_id"]]}, 404, "ROOM_NOT_FOUND"),
        ([room_id], 400, "MISSING_PARAMETER"),
    ]
    for body, status, code in bad:
        assert_error(bob.post("/messages/user-delete", json=body), status, code)
    assert_error(
        dave.post("/messages/user-delete", json={"room": room_id, "messages": [sent["_id"]]}),
        403,
        "NOT_ROOM_MEMBER",
    )
    assert_error(
        dave.post("/messages/user-delete/all-in-room", json={"room": room_id}),
        403,
        "NOT_ROOM_MEMBER",
    )
    assert_error(bob.post("/messages/user-delete/all-in-room", json={}), 400, "MISSING_PARAMETER")
    assert_error(bob.get("/messages/user-delete"), 400, "MISSING_PARAMETER")
    assert page(bob, room_id)["userDeletedIDs"] == []


# -- hide for the room ----------------------------------------------------------------------


def test_hidden_messages_reach_only_superusers_until_shown_again(
    admin: httpx.Client, trio: tuple[str, dict[str, httpx.Client]], events: Recorder
) -> None:
    room_id, people = trio
    alice, bob, carol, dave = people["alice"], people["bob"], people["carol"], people["dave"]
    before = send(carol, room_id, "before")
    target = send(carol, room_id, "rude")
    after = send(carol, room_id, "after")
    ok(alice.post(f"/messages/{target['_id']}/pin"))

    assert_error(bob.post(f"/messages/{target['_id']}/hidden"), 403, "INSUFFICIENT_PERMISSIONS")
    assert_error(carol.post(f"/messages/{target['_id']}/hidden"), 403, "INSUFFICIENT_PERMISSIONS")
    assert_error(dave.post(f"/messages/{target['_id']}/hidden"), 404, "MESSAGE_NOT_FOUND")
    assert_error(alice.post(f"/messages/{'0' * 24}/hidden"), 404, "MESSAGE_NOT_FOUND")

    hidden = ok(alice.post(f"/messages/{target['_id']}/hidden"))
    assert hidden["isHidden"] is True and hidden["updatedAtMS"] > target["updatedAtMS"]
    # The room hears that the message is hidden, but not what it says.
    stub = {k: hidden[k] for k in HIDDEN_STUB_FIELDS if k in hidden}
    assert "message" not in stub and stub["isHidden"] is True
    message_event(events, stub)

    def reads(client: httpx.Client) -> list[str]:
        """Every read path a member has, as one text."""
        return [
            client.get(f"/rooms/{room_id}/messages/v3").text,
            client.get(f"/rooms/{room_id}/messages").text,
            client.get(f"/rooms/{room_id}/messages/{after['_id']}").text,
            client.get(f"/rooms/{room_id}/pined-messages").text,
            client.get("/messages/recent").text,
        ]

    for member in (bob, carol):  # carol sent it, and still does not see it
        assert visible(member, room_id) == [after["_id"], before["_id"]]
        assert all("rude" not in text for text in reads(member))
        assert ok(member.get(f"/rooms/{room_id}/count")) == {"count": 2}
        window = ok(member.get(f"/rooms/{room_id}/messages/{target['_id']}"))
        assert ids(window["data"]) == [before["_id"], after["_id"]]
    for superuser in (alice, admin):
        shown = page(superuser, room_id)["data"]
        assert ids(shown) == [target["_id"], after["_id"], before["_id"]]  # newest change first
        assert shown[0]["isHidden"] is True
        assert ok(superuser.get(f"/rooms/{room_id}/count")) == {"count": 3}
    ok(alice.put(f"/rooms/{room_id}/member/bob", json={"property": "role", "value": "admin"}))
    assert target["_id"] in visible(bob, room_id)  # bob is a superuser now

    shown_again = ok(bob.delete(f"/messages/{target['_id']}/hidden"))
    assert "isHidden" not in shown_again
    message_event(events, shown_again)
    assert target["_id"] in visible(carol, room_id)
    ok(alice.put(f"/rooms/{room_id}", json={"managers": ["carol"]}))
    assert ok(carol.post(f"/messages/{target['_id']}/hidden"))["isHidden"] is True
    assert ok(admin.delete(f"/messages/{target['_id']}/hidden")).get("isHidden") is None


def test_hide_and_unhide_by_sender_in_room(
    admin: httpx.Client, trio: tuple[str, dict[str, httpx.Client]]
) -> None:
    room_id, people = trio
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    spam = [send(bob, room_id, f"spam {i}") for i in range(3)]
    fine = send(carol, room_id, "fine")
    other_room = make_room(alice, "bob")
    bobs_elsewhere = send(bob, other_room, "elsewhere")

    body = {"room": room_id, "sender": "bob"}
    assert_error(
        carol.post("/messages/hide-by-sender-in-room", json=body), 403, "INSUFFICIENT_PERMISSIONS"
    )
    assert_error(
        people["dave"].post("/messages/hide-by-sender-in-room", json=body),
        403,
        "INSUFFICIENT_PERMISSIONS",
    )
    for wrong in ({"room": room_id}, {"sender": "bob"}, {}, [room_id]):
        assert_error(
            alice.post("/messages/hide-by-sender-in-room", json=wrong), 400, "MISSING_PARAMETER"
        )
    assert_error(
        alice.post("/messages/hide-by-sender-in-room", json={"room": "nowhere", "sender": "bob"}),
        404,
        "ROOM_NOT_FOUND",
    )

    result = ok(alice.post("/messages/hide-by-sender-in-room", json=body))
    assert result["count"] == 3 and result["room"] == room_id and result["sender"] == "bob"
    assert visible(carol, room_id) == [fine["_id"]]
    assert visible(bob, room_id) == [fine["_id"]]
    assert len(visible(alice, room_id)) == 4
    assert visible(bob, other_room) == [bobs_elsewhere["_id"]]
    assert ok(alice.post("/messages/hide-by-sender-in-room", json=body))["count"] == 0

    shown = ok(admin.post("/messages/unhide-by-sender-in-room", json=body))
    assert shown["count"] == 3
    assert set(visible(carol, room_id)) == {fine["_id"], *(m["_id"] for m in spam)}
    assert_error(
        bob.post("/messages/unhide-by-sender-in-room", json=body), 403, "INSUFFICIENT_PERMISSIONS"
    )


def test_hiding_by_sender_tells_the_room(
    trio: tuple[str, dict[str, httpx.Client]], events: Recorder
) -> None:
    """Each change publishes its event after commit; SDKs upsert messages by ``_id``."""
    room_id, people = trio
    alice, bob = people["alice"], people["bob"]
    spam = [send(bob, room_id, f"spam {i}")["_id"] for i in range(2)]
    ok(alice.post("/messages/hide-by-sender-in-room", json={"room": room_id, "sender": "bob"}))
    deadline = time.monotonic() + 2
    told: set[str] = set()
    while time.monotonic() < deadline and told != set(spam):
        told = {
            e.data["_id"]
            for e in list(events.events)
            if e.kind == "chat message" and room_id in e.rooms and e.data.get("isHidden")
        }
        time.sleep(0.05)
    assert told == set(spam), (
        "BUG: hide-by-sender-in-room (and unhide) change messages but publish no event, "
        "unlike POST /messages/{id}/hidden: connected clients keep showing them"
    )


# -- pin ------------------------------------------------------------------------------------


def test_one_pinned_message_per_room(
    admin: httpx.Client, trio: tuple[str, dict[str, httpx.Client]], events: Recorder
) -> None:
    room_id, people = trio
    alice, bob, carol, dave = people["alice"], people["bob"], people["carol"], people["dave"]
    first, second = send(bob, room_id, "first"), send(bob, room_id, "second")
    other_room = make_room(alice, "bob")
    other = send(alice, other_room, "other room")
    ok(alice.post(f"/messages/{other['_id']}/pin"))

    assert_error(bob.post(f"/messages/{first['_id']}/pin"), 403, "INSUFFICIENT_PERMISSIONS")
    assert_error(dave.post(f"/messages/{first['_id']}/pin"), 404, "MESSAGE_NOT_FOUND")
    assert_error(alice.post(f"/messages/{'0' * 24}/pin"), 404, "MESSAGE_NOT_FOUND")

    pinned = ok(alice.post(f"/messages/{first['_id']}/pin"))
    assert pinned["pinned"] is True and pinned["isPined"] is True
    message_event(events, pinned)
    assert ids(ok(carol.get(f"/rooms/{room_id}/pined-messages"))["data"]) == [first["_id"]]
    assert ok(alice.post(f"/messages/{first['_id']}/pin"))["pinned"] is True  # again: no change

    ok(alice.put(f"/rooms/{room_id}", json={"managers": ["carol"]}))
    moved = ok(carol.post(f"/messages/{second['_id']}/pin"))
    assert moved["pinned"] is True
    unpinned_first = published(
        events,
        "chat message",
        lambda e: e.data["_id"] == first["_id"] and e.data["pinned"] is False,
    )
    assert unpinned_first.rooms == [room_id]
    listed = ok(bob.get(f"/rooms/{room_id}/pined-messages"))
    assert ids(listed["data"]) == [second["_id"]] and listed["totalCount"] == 1
    assert ids(ok(bob.get(f"/rooms/{room_id}/messages/pined-messages"))["data"]) == [second["_id"]]
    assert ids(ok(alice.get(f"/rooms/{other_room}/pined-messages"))["data"]) == [other["_id"]]
    states = {m["_id"]: m["pinned"] for m in page(bob, room_id)["data"]}
    assert states == {first["_id"]: False, second["_id"]: True}

    assert_error(bob.delete(f"/messages/{second['_id']}/pin"), 403, "INSUFFICIENT_PERMISSIONS")
    assert ok(admin.delete(f"/messages/{second['_id']}/pin"))["pinned"] is False
    assert ok(bob.get(f"/rooms/{room_id}/pined-messages"))["data"] == []
    assert ok(alice.delete(f"/messages/{second['_id']}/pin"))["pinned"] is False


# -- reactions ------------------------------------------------------------------------------


def test_reactions_add_and_remove_idempotently(
    trio: tuple[str, dict[str, httpx.Client]], events: Recorder
) -> None:
    room_id, people = trio
    alice, bob, carol, dave = people["alice"], people["bob"], people["carol"], people["dave"]
    sent = send(alice, room_id, "react to me")
    path = f"/messages/{sent['_id']}/reaction"

    liked = ok(bob.post(path, json={"reaction": "like"}))
    assert liked["reactions"] == [{"client": "bob", "reaction": "like"}]
    assert liked["reactionCount"] == 1
    message_event(events, liked)
    assert ok(bob.post(path, json={"reaction": "like"}))["reactionCount"] == 1
    ok(bob.post(path, json={"reaction": "😂"}))
    both = ok(carol.post(path, json={"reaction": "like"}))
    assert both["reactions"] == [
        {"client": "bob", "reaction": "like"},
        {"client": "bob", "reaction": "😂"},
        {"client": "carol", "reaction": "like"},
    ]
    assert both["reactionCount"] == 3
    assert page(alice, room_id)["data"][0]["reactions"] == both["reactions"]

    removed = ok(bob.delete(path, params={"reaction": "like"}))
    assert removed["reactions"] == [
        {"client": "bob", "reaction": "😂"},
        {"client": "carol", "reaction": "like"},
    ]
    message_event(events, removed)
    assert ok(bob.delete(path, params={"reaction": "like"}))["reactionCount"] == 2
    assert ok(alice.delete(path, params={"reaction": "wow"}))["reactionCount"] == 2
    ok(bob.delete(path, params={"reaction": "😂"}))
    last = ok(carol.delete(path, params={"reaction": "like"}))
    assert "reactions" not in last and "reactionCount" not in last

    for body in ({}, {"reaction": ""}, {"reaction": 5}, {"reaction": "x" * 65}, ["like"]):
        assert_error(bob.post(path, json=body), 400, "INVALID_REQUEST")
    assert_error(bob.delete(path), 400, "INVALID_REQUEST")
    assert_error(dave.post(path, json={"reaction": "like"}), 404, "MESSAGE_NOT_FOUND")
    assert_error(dave.delete(path, params={"reaction": "like"}), 404, "MESSAGE_NOT_FOUND")
    assert_error(
        bob.post(f"/messages/{'0' * 24}/reaction", json={"reaction": "x"}), 404, "MESSAGE_NOT_FOUND"
    )
    ok(alice.put(f"/rooms/{room_id}", json={"status": 0}))
    assert_error(bob.post(path, json={"reaction": "like"}), 403, "ROOM_FROZEN")


# -- strangers ------------------------------------------------------------------------------


def test_a_non_member_changes_nothing_and_learns_nothing(
    trio: tuple[str, dict[str, httpx.Client]],
) -> None:
    room_id, people = trio
    alice, dave = people["alice"], people["dave"]
    sent = send(alice, room_id, "members only")
    message_id = sent["_id"]
    attempts = [
        dave.post(f"/messages/{message_id}/reaction", json={"reaction": "like"}),
        dave.delete(f"/messages/{message_id}/reaction", params={"reaction": "like"}),
        dave.post(f"/messages/{message_id}/pin"),
        dave.delete(f"/messages/{message_id}/pin"),
        dave.post(f"/messages/{message_id}/hidden"),
        dave.delete(f"/messages/{message_id}/hidden"),
        _edit(dave, room_id, message_id, message="x"),
        _recall(dave, room_id, message_id),
    ]
    for response in attempts:
        assert "members only" not in response.text
        assert_error(response, 404, "MESSAGE_NOT_FOUND")
    # The same answer as for a message that does not exist.
    assert_error(dave.post(f"/messages/{'0' * 24}/pin"), 404, "MESSAGE_NOT_FOUND")
    assert page(alice, room_id)["data"] == [sent]
