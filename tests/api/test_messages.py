"""Messages over HTTP: the main flows of a chat app — send, read history, edit, recall,
delete, hide, pin, react — and the events each publishes."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.api.conftest import Recorder
from tests.conftest import assert_error, ok


def _room(owner: httpx.Client, *invitees: str) -> str:
    room = ok(owner.post("/rooms/createAndJoin", json={"name": "Chat", "invitee": list(invitees)}))
    return str(room["_id"])


def _send(client: httpx.Client, room_id: str, text: str, **fields: Any) -> dict[str, Any]:
    body = {"messageType": "text", "message": text, **fields}
    return dict(ok(client.post(f"/rooms/{room_id}/message", json=body)))


def test_send_read_and_events(people: dict[str, httpx.Client], events: Recorder) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    room_id = _room(alice, "bob")
    sent = _send(alice, room_id, "hello", extra={"any": ["thing"]}, custom=1)
    assert sent["sender"]["_id"] == "alice" and sent["message"] == "hello"
    assert sent["extra"] == {"any": ["thing"]} and sent["custom"] == 1
    assert sent["room"] == room_id and sent["id"] == sent["_id"] and sent["mentions"] == []
    assert sent["createdAtMS"] == sent["updatedAtMS"] == sent["messageTimeMS"]
    event = events.wait_for("chat message", room_id)
    assert event.data["_id"] == sent["_id"]

    page = ok(bob.get(f"/rooms/{room_id}/messages/v3"))
    assert page["data"][0]["_id"] == sent["_id"] and page["userDeletedIDs"] == []
    assert ok(bob.get("/me/badge")) == {"badge": 1}
    assert ok(alice.get("/me/badge")) == {"badge": 0}

    assert_error(carol.get(f"/rooms/{room_id}/messages/v3"), 403, "NOT_ROOM_MEMBER")
    assert_error(
        carol.post(f"/rooms/{room_id}/message", json={"message": "hi"}), 403, "NOT_ROOM_MEMBER"
    )
    assert_error(alice.post("/rooms/nope/message", json={"message": "x"}), 404, "ROOM_NOT_FOUND")


def test_client_message_id_makes_a_retry_return_the_stored_message(
    people: dict[str, httpx.Client],
) -> None:
    alice, bob = people["alice"], people["bob"]
    room_id = _room(alice, "bob")
    first = _send(alice, room_id, "once", clientMessageId="c-1")
    again = _send(alice, room_id, "once", clientMessageId="c-1")
    assert again["_id"] == first["_id"]
    assert ok(bob.get(f"/rooms/{room_id}/messages/v3"))["data"][0]["_id"] == first["_id"]
    assert ok(bob.get("/me/badge")) == {"badge": 1}
    assert_error(
        bob.post(f"/rooms/{room_id}/message", json={"message": "mine", "clientMessageId": "c-1"}),
        409,
        "CLIENT_MESSAGE_ID_TAKEN",
    )


def test_edit_recall_and_their_rules(people: dict[str, httpx.Client], events: Recorder) -> None:
    alice, bob = people["alice"], people["bob"]
    room_id = _room(alice, "bob")
    sent = _send(alice, room_id, "draft", mentions=["bob"])
    edited = ok(
        alice.post(f"/rooms/{room_id}/message", json={"_id": sent["_id"], "message": "final"})
    )
    assert edited["message"] == "final" and edited["editedAt"] and edited["mentions"] == ["bob"]
    assert edited["updatedAtMS"] > sent["updatedAtMS"]
    assert_error(
        bob.post(f"/rooms/{room_id}/message", json={"_id": sent["_id"], "message": "x"}),
        403,
        "INSUFFICIENT_PERMISSIONS",
    )
    assert_error(
        bob.post(f"/rooms/{room_id}/message", json={"_id": sent["_id"], "messageType": "recall"}),
        403,
        "INSUFFICIENT_PERMISSIONS",
    )
    recalled = ok(
        alice.post(f"/rooms/{room_id}/message", json={"_id": sent["_id"], "messageType": "recall"})
    )
    assert recalled["messageType"] == "recall" and recalled["message"] == ""
    assert "extra" not in recalled
    page = ok(bob.get(f"/rooms/{room_id}/messages/v3"))
    assert page["data"][0]["messageType"] == "recall"
    assert_error(
        alice.post(f"/rooms/{room_id}/message", json={"_id": "0" * 24, "message": "x"}),
        404,
        "MESSAGE_NOT_FOUND",
    )


def test_delete_hide_pin_react(people: dict[str, httpx.Client], events: Recorder) -> None:
    alice, bob = people["alice"], people["bob"]
    room_id = _room(alice, "bob")
    one, two, three = (_send(bob, room_id, t) for t in ("one", "two", "three"))

    assert_error(
        bob.delete(f"/rooms/{room_id}/messages/{one['_id']}"), 403, "INSUFFICIENT_PERMISSION"
    )
    response = alice.delete(f"/rooms/{room_id}/messages/{one['_id']}")
    assert response.json()["RM"] == "Message deleted successfully"
    deleted = response.json()["result"]
    assert deleted["deletedCount"] == 1 and deleted["messageID"] == one["_id"]
    ids = [m["_id"] for m in ok(bob.get(f"/rooms/{room_id}/messages/v3"))["data"]]
    assert one["_id"] not in ids

    hidden = ok(bob.post("/messages/user-delete", json={"room": room_id, "messages": [two["_id"]]}))
    assert hidden["messages"] == [two["_id"]]
    assert events.wait_for("userDeleteMessages", user="bob").data["messages"] == [two["_id"]]
    page = ok(bob.get(f"/rooms/{room_id}/messages/v3"))
    assert page["userDeletedIDs"] == [two["_id"]]
    assert next(m for m in page["data"] if m["_id"] == two["_id"])["isDeleted"] is True
    assert ok(alice.get(f"/rooms/{room_id}/messages/v3"))["userDeletedIDs"] == []
    listed = ok(bob.get("/messages/user-delete", params={"room": room_id}))
    assert [d["message"] for d in listed["data"]] == [two["_id"]]

    assert_error(bob.post(f"/messages/{three['_id']}/pin"), 403, "INSUFFICIENT_PERMISSIONS")
    assert ok(alice.post(f"/messages/{three['_id']}/pin"))["pinned"] is True
    assert ok(alice.post(f"/messages/{two['_id']}/pin"))["pinned"] is True
    pinned = ok(bob.get(f"/rooms/{room_id}/pined-messages"))
    assert [m["_id"] for m in pinned["data"]] == [two["_id"]]
    assert ok(alice.delete(f"/messages/{two['_id']}/pin"))["pinned"] is False

    reacted = ok(bob.post(f"/messages/{three['_id']}/reaction", json={"reaction": "like"}))
    assert reacted["reactions"] == [{"client": "bob", "reaction": "like"}]
    again = ok(bob.post(f"/messages/{three['_id']}/reaction", json={"reaction": "like"}))
    assert again["reactionCount"] == 1
    removed = ok(bob.delete(f"/messages/{three['_id']}/reaction", params={"reaction": "like"}))
    assert "reactions" not in removed

    assert ok(alice.post(f"/messages/{three['_id']}/hidden"))["isHidden"] is True
    bob_ids = [m["_id"] for m in ok(bob.get(f"/rooms/{room_id}/messages/v3"))["data"]]
    assert three["_id"] not in bob_ids
    alice_ids = [m["_id"] for m in ok(alice.get(f"/rooms/{room_id}/messages/v3"))["data"]]
    assert three["_id"] in alice_ids

    everything = alice.delete(f"/rooms/{room_id}/messages/_all").json()["result"]
    assert everything["deletedCount"] >= 2
    assert ok(bob.get(f"/rooms/{room_id}/messages/v3"))["data"] == []
    assert ok(bob.get("/me/badge")) == {"badge": 0}


def test_history_paging_with_anchors(people: dict[str, httpx.Client]) -> None:
    alice, bob = people["alice"], people["bob"]
    room_id = _room(alice, "bob")
    sent = [_send(alice, room_id, f"m{i}")["_id"] for i in range(7)]
    newest = ok(bob.get(f"/rooms/{room_id}/messages/v3", params={"limit": 3}))
    assert [m["_id"] for m in newest["data"]] == sent[:-4:-1]
    older = ok(
        bob.get(
            f"/rooms/{room_id}/messages/v3",
            params={"limit": 3, "beforeMessage": sent[4], "sortOrder": "desc"},
        )
    )
    assert [m["_id"] for m in older["data"]] == [sent[4], sent[3], sent[2]]
    newer = ok(
        bob.get(
            f"/rooms/{room_id}/messages/v3",
            params={"limit": 3, "afterMessage": sent[2], "sortOrder": "asc"},
        )
    )
    assert [m["_id"] for m in newer["data"]] == [sent[2], sent[3], sent[4]]
    window = ok(bob.get(f"/rooms/{room_id}/messages/{sent[3]}", params={"before": 1, "after": 2}))
    assert [m["_id"] for m in window["data"]] == sent[2:6]
    assert ok(bob.get(f"/rooms/{room_id}/count", params={"timeInMS": 0}))["count"] >= 7
    assert_error(
        bob.get(f"/rooms/{room_id}/messages/v3", params={"limit": 100_000}),
        413,
        "RESULT_TOO_LARGE",
    )


def test_search_finds_only_what_the_caller_may_see(people: dict[str, httpx.Client]) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    shared = _room(alice, "bob")
    private = _room(carol)
    found = _send(alice, shared, "Hello, wonderful world")
    _send(carol, private, "hello from a room bob is not in")
    _send(bob, shared, "nothing to see")
    file_message = _send(
        bob, shared, "report.pdf", messageType="file", extra={"fileName": "quarterly-report.pdf"}
    )

    result = ok(bob.post("/search", json={"keyword": "hel wor", "type": ["messages"]}))
    assert [(r["room"]["_id"], r["messages"]) for r in result["messages"]] == [
        (shared, [found["_id"]])
    ]
    assert result["messages"][0]["room"]["members"]
    assert ok(carol.post("/search", json={"keyword": "wonderful"})) == {"messages": []}
    files = ok(bob.post("/search", json={"keyword": "quarterly", "type": ["files", "messages"]}))
    assert files["files"][0]["messages"] == [file_message["_id"]]

    ok(alice.put(f"/rooms/{shared}", json={"name": "Project Falcon"}))
    rooms = ok(
        bob.post(
            "/search",
            json={"keyword": "falc", "type": ["roomName", "roomMember", "roomTags"]},
        )
    )
    assert [r["_id"] for r in rooms["roomName"]] == [shared]
    assert rooms["roomMember"] == [] and rooms["roomTags"] == []
    by_member = ok(bob.post("/search", json={"keyword": "ALI", "type": ["roomMember"]}))
    assert [r["_id"] for r in by_member["roomMember"]] == [shared]
    assert_error(
        bob.post("/search", json={"keyword": "x", "type": ["bogus"]}), 400, "INVALID_SEARCH_TYPE"
    )
    assert_error(bob.post("/search", json={"type": ["messages"]}), 400, "MISSING_PARAMETER")
    assert_error(
        bob.post("/search", json={"keyword": "hello", "room": private}), 403, "NOT_ROOM_MEMBER"
    )
    for not_a_whole_number in (False, True, 2.5):
        response = bob.post("/search", json={"keyword": "hello", "limit": not_a_whole_number})
        assert_error(response, 400, "INVALID_REQUEST")
    assert ok(bob.post("/search", json={"keyword": "hello", "limit": 5}))
    # Values of the wrong type are refused, not taken for the defaults.
    for wrong in ({"roomTags": {}}, {"roomTags": 0}, {"type": {}}, {"type": 0}):
        response = bob.post("/search", json={"keyword": "hello", **wrong})
        assert response.status_code == 400, response.text
    # A room that is not a room id is refused, not taken for "every room".
    for not_a_room in ({}, [], 0, False):
        response = bob.post("/search", json={"keyword": "hello", "room": not_a_room})
        assert_error(response, 400, "INVALID_REQUEST")


def test_batch_sends_to_rooms_and_receivers(
    people: dict[str, httpx.Client], admin: httpx.Client
) -> None:
    alice, bob = people["alice"], people["bob"]
    group = _room(alice, "bob")
    queued = ok(
        admin.post(
            "/messages/batch",
            json={
                "sender": "alice",
                "messageType": "text",
                "message": "Hi $name$, your code is $code$",
                "extra": {"code": "$code$"},
                "paras": [
                    {"room": group, "$name$": "team", "$code$": 1},
                    {"receiver": "carol", "$name$": "Carol", "$code$": "C-7"},
                ],
            },
        )
    )
    assert queued["count"] == 2
    deadline = time.monotonic() + 10
    while True:
        sent = ok(admin.get("/messages/batch", params={"batchID": queued["batchID"]}))
        if sent["count"] == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert sorted(m["message"] for m in sent["data"]) == [
        "Hi Carol, your code is C-7",
        "Hi team, your code is 1",
    ]
    assert sorted(m["extra"]["code"] for m in sent["data"]) == ["1", "C-7"]
    assert all(
        m["batchID"] == queued["batchID"] and m["sender"]["_id"] == "alice" for m in sent["data"]
    )
    assert (
        ok(bob.get(f"/rooms/{group}/messages/v3"))["data"][0]["message"]
        == "Hi team, your code is 1"
    )
    assert_error(
        bob.get("/messages/batch", params={"batchID": queued["batchID"]}), 404, "BATCH_NOT_FOUND"
    )
    assert_error(
        admin.post("/messages/batch", json={"message": "x", "messageType": "text", "paras": [{}]}),
        400,
        "MISSING_PARAMETER",
    )
