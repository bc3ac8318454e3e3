"""Unread counts over HTTP (contract §3.8): the caller's total, by room tags (AND), per tag,
per tag before a time, and for several users' tokens — always the number of messages after
the member's last read that the member did not send."""

from __future__ import annotations

import random
import time
from typing import Any

import httpx
import pytest

from tests.api.test_messages_send import badge, delete_message, make_room, send
from tests.conftest import AppKeys, Server, assert_error, issue_token, ok


def unread(client: httpx.Client, room_id: str) -> int:
    return int(ok(client.get(f"/rooms/{room_id}"))["unread"])


def by_tags(client: httpx.Client, **body: Any) -> dict[str, Any]:
    return dict(ok(client.post("/badges/byRoomTags", json=body)))


def my_badge(client: httpx.Client, *tags: str) -> int:
    return int(ok(client.get("/me/badge", params=[("roomTags", t) for t in tags]))["badge"])


@pytest.fixture
def tagged(people: dict[str, httpx.Client]) -> dict[str, str]:
    """Four rooms of alice's with bob, holding 1, 2, 4 and 8 messages unread by bob."""
    alice = people["alice"]
    tags = {"work": ["work"], "both": ["work", "urgent"], "urgent": ["urgent"], "none": []}
    rooms = {}
    for n, (name, room_tags) in enumerate(tags.items()):
        rooms[name] = make_room(alice, "bob", roomTags=room_tags)
        for i in range(2**n):
            send(alice, rooms[name], f"{name} {i}")
    return rooms


# -- the caller's total ---------------------------------------------------------------------


def test_my_badge_counts_what_others_sent_after_my_last_read(
    admin: httpx.Client, people: dict[str, httpx.Client]
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    room_id = make_room(alice, "bob", "carol")
    assert badge(bob) == 0
    sent = [send(alice, room_id, "a1"), send(carol, room_id, "c1"), send(bob, room_id, "b1")]
    assert (badge(alice), badge(bob), badge(carol)) == (2, 2, 2)
    assert unread(bob, room_id) == 2
    read = ok(bob.put(f"/rooms/{room_id}/lastRead", json={"message": sent[0]["_id"]}))
    assert read["badge"] == 1 and badge(bob) == 1 and unread(bob, room_id) == 1
    ok(bob.put(f"/rooms/{room_id}/lastRead", json={"message": sent[2]["_id"]}))
    assert badge(bob) == 0 and badge(alice) == 2  # one's read leaves the others' alone
    # The API Key reads a user's badge when it names the user.
    assert ok(admin.get("/me/badge", headers={"IM-CLIENT-ID": "alice"})) == {"badge": 2}
    assert_error(admin.get("/me/badge"), 400, "MISSING_PARAMETER")
    # An admin send (silent or not, skipping the sender's total or not) is unread all the same.
    for flags in ({"push": False}, {"skipTotalBadge": True}):
        body = {"room": room_id, "sender": "carol", "message": "x", "messageType": "text"}
        ok(admin.post("/messages", json={**body, **flags}))
    assert badge(bob) == 2 and badge(carol) == 2
    # Someone outside the room counts nothing of it.
    assert badge(people["dave"]) == 0


def test_my_badge_with_room_tags_is_the_and_of_the_tags(
    people: dict[str, httpx.Client], tagged: dict[str, str]
) -> None:
    bob = people["bob"]
    assert my_badge(bob) == 15
    assert my_badge(bob, "work") == 1 + 2
    assert my_badge(bob, "urgent") == 2 + 4
    assert my_badge(bob, "work", "urgent") == 2
    assert my_badge(bob, "urgent", "work", "work") == 2
    assert my_badge(bob, "nope") == 0 and my_badge(bob, "work", "nope") == 0
    assert my_badge(people["alice"], "work") == 0
    response = bob.get("/me/badge", params=[("roomTags", "x" * 101)])
    assert_error(response, 400, "INVALID_TAGS")


# -- per tag --------------------------------------------------------------------------------


def test_badges_by_room_tags(people: dict[str, httpx.Client], tagged: dict[str, str]) -> None:
    bob = people["bob"]
    assert by_tags(bob, tags=["work", "urgent"]) == {
        "totalBadge": 1 + 2 + 4,  # rooms having any of the tags, each counted once
        "data": {"work": 3, "urgent": 6},
    }
    assert by_tags(bob, tags=["urgent"]) == {"totalBadge": 6, "data": {"urgent": 6}}
    assert by_tags(bob, tags=["nope"]) == {"totalBadge": 0, "data": {"nope": 0}}
    assert by_tags(bob, tags=[]) == {"totalBadge": 15, "data": {}}
    assert by_tags(bob) == {"totalBadge": 15, "data": {}}
    assert ok(bob.post("/badges/byRoomTags")) == {"totalBadge": 15, "data": {}}  # no body
    assert by_tags(bob, tags="work") == {"totalBadge": 3, "data": {"work": 3}}
    assert by_tags(people["alice"], tags=["work"]) == {"totalBadge": 0, "data": {"work": 0}}
    ok(bob.put(f"/rooms/{tagged['both']}/lastRead", json={"message": _last(bob, tagged["both"])}))
    assert by_tags(bob, tags=["work", "urgent"]) == {
        "totalBadge": 1 + 4,
        "data": {"work": 1, "urgent": 4},
    }
    for bad in ({"tags": 5}, {"tags": [1]}, {"tags": [""]}, {"tags": ["t"] * 101}):
        assert_error(bob.post("/badges/byRoomTags", json=bad), 400, "INVALID_TAGS")
    assert_error(bob.post("/badges/byRoomTags", json=["work"]), 400, "INVALID_BODY")


def test_badges_by_room_tags_with_the_api_key_alone_counts_every_member(
    admin: httpx.Client, people: dict[str, httpx.Client], tagged: dict[str, str]
) -> None:
    # The public Postman collection calls this with the API Key and no IM-CLIENT-ID.
    send(people["bob"], tagged["urgent"], "one for alice")  # alice: 1 unread, bob's stay
    assert by_tags(admin, tags=["work", "urgent"]) == {
        "totalBadge": 1 + 2 + (4 + 1),
        "data": {"work": 1 + 2, "urgent": 2 + (4 + 1)},
    }
    assert by_tags(admin, tags=["nope"]) == {"totalBadge": 0, "data": {"nope": 0}}
    assert by_tags(admin) == {"totalBadge": 1 + 2 + 5 + 8, "data": {}}
    # Naming a user still gives that user's counts.
    named = admin.post(
        "/badges/byRoomTags", json={"tags": ["urgent"]}, headers={"IM-CLIENT-ID": "bob"}
    )
    assert ok(named) == {"totalBadge": 6, "data": {"urgent": 6}}
    assert_error(admin.post("/badges/byRoomTags", json={"tags": 5}), 400, "INVALID_TAGS")


def _last(client: httpx.Client, room_id: str) -> str:
    return str(ok(client.get(f"/rooms/{room_id}"))["lastMessage"]["_id"])


def test_badges_by_room_tags_and_time(people: dict[str, httpx.Client]) -> None:
    alice, bob = people["alice"], people["bob"]
    work = make_room(alice, "bob", roomTags=["work"])
    other = make_room(alice, "bob", roomTags=["other"])
    early = [send(alice, work, "w1"), send(alice, work, "w2"), send(alice, other, "o1")]
    time.sleep(0.01)
    cut = early[-1]["createdAtMS"] + 5
    time.sleep(0.01)
    send(alice, work, "w3")
    send(alice, other, "o2")
    send(bob, work, "bob's own")

    def before(value: Any, tags: list[str]) -> dict[str, Any]:
        body = {"tags": tags, "beforeTime": value}
        return dict(ok(bob.post("/badges/byRoomTagsAndTime", json=body)))

    assert before(cut, ["work"]) == {"totalBadge": 2, "data": {"work": 2}}
    assert before(cut, ["work", "other"]) == {"totalBadge": 3, "data": {"work": 2, "other": 1}}
    assert before(cut, []) == {"totalBadge": 3, "data": {}}
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(cut / 1000)) + f".{cut % 1000:03d}Z"
    assert before(iso, ["work"]) == {"totalBadge": 2, "data": {"work": 2}}
    assert before(early[0]["createdAtMS"], ["work"]) == {"totalBadge": 0, "data": {"work": 0}}
    assert before(int(time.time() * 1000) + 60_000, ["work"])["data"] == {"work": 3}
    ok(bob.put(f"/rooms/{work}/lastRead", json={"message": early[0]["_id"]}))
    assert before(cut, ["work"]) == {"totalBadge": 1, "data": {"work": 1}}

    for body in ({"tags": ["work"]}, {}, {"beforeTime": None}):
        assert_error(bob.post("/badges/byRoomTagsAndTime", json=body), 400, "MISSING_PARAMETER")
    response = bob.post("/badges/byRoomTagsAndTime", json={"beforeTime": "teatime"})
    assert_error(response, 400, response.json()["error"])
    assert_error(
        bob.post("/badges/byRoomTagsAndTime", json={"beforeTime": cut, "tags": 1}),
        400,
        "INVALID_TAGS",
    )


# -- for several users' tokens --------------------------------------------------------------


def test_badges_of_several_tokens_with_the_client_key_alone(
    server: Server, app_keys: AppKeys, admin: httpx.Client, people: dict[str, httpx.Client]
) -> None:
    alice, bob = people["alice"], people["bob"]
    room_id = make_room(alice, "bob", "carol")
    send(alice, room_id, "one")
    send(alice, room_id, "two")
    send(bob, room_id, "three")
    tokens = {name: c.headers["IM-Authorization"] for name, c in people.items()}
    revoked = issue_token(admin, "erin")
    ok(admin.request("DELETE", "/admin/clients/erin/token", json={}))
    other = server.new_app("other")
    with server.client(**{"IM-API-KEY": other.api_key}) as other_admin:
        foreign = issue_token(other_admin, "bob")

    with server.client(**{"IM-CLIENT-KEY": app_keys.client_key}) as key_only:
        result = ok(
            key_only.post(
                "/badges",
                json={
                    "tokens": [
                        tokens["bob"],
                        "not-a-token",
                        tokens["carol"],
                        foreign,  # another app's bob: not this app's
                        revoked,
                        tokens["bob"],
                        tokens["dave"],
                    ]
                },
                headers={"IM-Device-ID": "device-1"},
            )
        )
        assert result == {
            "data": [
                {"client": "bob", "badge": 2},
                {"client": "carol", "badge": 3},
                {"client": "dave", "badge": 0},
            ],
            "totalBadge": 5,
        }
        assert ok(key_only.post("/badges", json={"tokens": []})) == {"data": [], "totalBadge": 0}
        for bad in ({}, {"tokens": "x"}, {"tokens": [5]}):
            assert_error(key_only.post("/badges", json=bad), 400, "MISSING_PARAMETER")
        too_many = {"tokens": [f"t{i}" for i in range(101)]}
        assert_error(key_only.post("/badges", json=too_many), 413, "PAYLOAD_TOO_LARGE")
    with server.client() as nothing:
        assert_error(nothing.post("/badges", json={"tokens": []}), 401, "MISSING_CLIENT_KEY")


# -- counts follow reads, deletes and recalls -----------------------------------------------


def test_badges_equal_unread_messages_through_reads_and_deletes(
    admin: httpx.Client, people: dict[str, httpx.Client]
) -> None:
    """A random walk of sends, reads, recalls and deletes; after every step each member's
    count is recomputed from what the room holds."""
    rng = random.Random(20_261_129)
    names = ["alice", "bob", "carol"]
    room_id = make_room(people["alice"], "bob", "carol")
    messages: dict[str, tuple[int, str]] = {}  # id -> (seq, sender), what the room holds
    read_seq = dict.fromkeys(names, 0)
    last_seq = 0
    done: set[str] = set()

    def expected(name: str) -> int:
        return sum(
            1 for seq, sender in messages.values() if seq > read_seq[name] and sender != name
        )

    for step in range(80):
        roll = rng.random()
        if roll < 0.5 or not messages:
            sender = rng.choice([*names, "dave"])  # dave: an admin send by a non-member
            if sender == "dave":
                body = {"room": room_id, "sender": "dave", "message": "m", "messageType": "text"}
                sent = ok(admin.post("/messages", json=body))
            else:
                sent = send(people[sender], room_id, f"step {step}")
            messages[sent["_id"]] = (sent["seq"], sender)
            last_seq = sent["seq"]
            what = f"{sender} sent"
            done.add("send")
        elif roll < 0.75:
            reader = rng.choice(names)
            message_id = rng.choice(sorted(messages))
            result = ok(
                people[reader].put(f"/rooms/{room_id}/lastRead", json={"message": message_id})
            )
            read_seq[reader] = messages[message_id][0]
            assert result["badge"] == expected(reader)
            what = f"{reader} read up to {messages[message_id][0]}"
            done.add("read")
        elif roll < 0.85:
            message_id = rng.choice(sorted(messages))
            seq, sender = messages[message_id]
            who = admin if sender == "dave" else people[sender]
            ok(
                who.post(
                    f"/rooms/{room_id}/message", json={"_id": message_id, "messageType": "recall"}
                )
            )
            what = f"{sender} recalled {seq}"
            done.add("recall")
        elif roll < 0.98:
            message_id = rng.choice(sorted(messages))
            delete_message(rng.choice([people["alice"], admin]), room_id, message_id)
            what = f"deleted {messages.pop(message_id)[0]}"
            done.add("delete")
        else:
            delete_message(people["alice"], room_id, "_all")
            messages.clear()
            read_seq = dict.fromkeys(names, last_seq)
            what = "deleted all"
            done.add("delete all")
        for name in names:
            want = expected(name)
            assert badge(people[name]) == want, f"step {step} ({what}): {name}'s badge"
            assert unread(people[name], room_id) == want, f"step {step} ({what}): {name}'s unread"
    assert done == {"send", "read", "recall", "delete", "delete all"}
    assert any(expected(name) for name in names), "the walk should end with something unread"


def test_leaving_a_room_takes_its_count_away(people: dict[str, httpx.Client]) -> None:
    alice, bob = people["alice"], people["bob"]
    room_id = make_room(alice, "bob")
    kept = make_room(alice, "bob")
    send(alice, room_id, "one")
    send(alice, kept, "two")
    assert badge(bob) == 2
    ok(alice.post(f"/rooms/{room_id}/delete/members", json={"members": ["bob"]}))
    assert badge(bob) == 1
    send(alice, room_id, "after bob left")
    assert badge(bob) == 1
    ok(alice.post(f"/rooms/{room_id}/members", json={"invitees": ["bob"]}))
    assert badge(bob) == 1  # rejoining counts from the joining on
    send(alice, room_id, "after bob came back")
    assert badge(bob) == 2
