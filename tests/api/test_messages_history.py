"""Reading messages over HTTP (contract §3.7): history pages and their cursors, the legacy
page, windows, counts, recent messages, the admin listing — and who reads nothing."""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.api.test_messages_send import (
    ids,
    make_room,
    page,
    send,
)
from tests.conftest import Server, assert_error, ok


def seed(server: Server, senders: list[httpx.Client], room_id: str, count: int) -> list[str]:
    """``count`` messages sent through the API by 64 concurrent connections (the senders
    in turn), each sending one after another; their ids in sequence order. Plain
    ``http.client`` keeps the test's own cost per request small, so the server's group
    commit, not the client, sets the pace."""
    threads = 64
    share = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]

    def run(i: int) -> list[tuple[int, str]]:
        sender = senders[i % len(senders)]
        headers = {k: sender.headers[k] for k in ("IM-CLIENT-KEY", "IM-Authorization")}
        headers["Content-Type"] = "application/json"
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        sent = []
        try:
            for n in range(share[i]):
                body = json.dumps({"messageType": "text", "message": f"{i}:{n}"})
                connection.request("POST", f"/rooms/{room_id}/message", body, headers)
                response = connection.getresponse()
                answer = json.loads(response.read())
                assert response.status == 200, answer
                sent.append((answer["result"]["seq"], answer["result"]["_id"]))
        finally:
            connection.close()
        return sent

    with ThreadPoolExecutor(threads) as pool:
        sent = [pair for pairs in pool.map(run, range(threads)) for pair in pairs]
    return [message_id for _, message_id in sorted(sent)]


def walk(client: httpx.Client, room_id: str, direction: str, size: int) -> list[str]:
    """Every message of the room, a page at a time, as the web SDKs page: the first page
    without an anchor, then each next page anchored on the last id seen, anchor dropped."""
    anchor_name = "beforeMessage" if direction == "desc" else "afterMessage"
    seen = ids(page(client, room_id, limit=size, sortOrder=direction)["data"])
    while True:
        data = page(client, room_id, limit=size + 1, sortOrder=direction, **{anchor_name: seen[-1]})
        assert data["data"][0]["_id"] == seen[-1], "the anchor is the first item"
        more = ids(data["data"][1:])
        if not more:
            return seen
        seen += more


# -- paging ---------------------------------------------------------------------------------


def test_paging_walks_ten_thousand_messages_both_ways(
    server: Server, people: dict[str, httpx.Client]
) -> None:
    alice, bob = people["alice"], people["bob"]
    room_id = make_room(alice, "bob")
    in_order = seed(server, [alice, bob], room_id, 10_000)
    assert len(set(in_order)) == 10_000
    assert page(bob, room_id, limit=1)["totalCount"] == 10_000

    backwards = walk(bob, room_id, "desc", 500)
    assert len(backwards) == len(set(backwards)) == 10_000, "a message was repeated"
    assert backwards == in_order[::-1]
    forwards = walk(alice, room_id, "asc", 500)
    assert forwards == in_order
    # Odd page sizes meet the ends of the room the same way.
    assert walk(bob, room_id, "desc", 997) == backwards


def test_anchors_and_sort_order(people: dict[str, httpx.Client]) -> None:
    alice, bob = people["alice"], people["bob"]
    room_id = make_room(alice, "bob")
    sent = [send(alice if i % 2 else bob, room_id, f"m{i}")["_id"] for i in range(9)]
    assert ids(page(bob, room_id)["data"]) == sent[::-1]  # newest first by default
    assert ids(page(bob, room_id, sortOrder="desc")["data"]) == sent[::-1]
    assert ids(page(bob, room_id, sortOrder="asc")["data"]) == sent
    assert ids(page(bob, room_id, sortOrder="asc", limit=3)["data"]) == sent[:3]
    assert ids(page(bob, room_id, sortOrder="desc", limit=3)["data"]) == sent[:-4:-1]
    # The scan runs away from the anchor; sortOrder orders what it found.
    assert ids(page(bob, room_id, beforeMessage=sent[5], limit=3)["data"]) == sent[3:6][::-1]
    assert (
        ids(page(bob, room_id, beforeMessage=sent[5], limit=3, sortOrder="asc")["data"])
        == (sent[3:6])
    )
    assert (
        ids(page(bob, room_id, afterMessage=sent[5], limit=3, sortOrder="asc")["data"])
        == (sent[5:8])
    )
    assert (
        ids(page(bob, room_id, afterMessage=sent[5], limit=3, sortOrder="desc")["data"])
        == (sent[5:8][::-1])
    )
    assert ids(page(bob, room_id, beforeMessage=sent[0], sortOrder="desc")["data"]) == [sent[0]]
    assert ids(page(bob, room_id, afterMessage=sent[-1], sortOrder="asc")["data"]) == [sent[-1]]
    # limit 0 means the default page (20).
    more = [send(alice, room_id, f"n{i}")["_id"] for i in range(15)]
    assert ids(page(bob, room_id, limit=0)["data"]) == (sent + more)[::-1][:20]
    assert page(bob, room_id)["totalCount"] == 24


def test_after_time_on_updated_at_and_created_at(people: dict[str, httpx.Client]) -> None:
    alice, bob = people["alice"], people["bob"]
    room_id = make_room(alice, "bob")
    old = send(alice, room_id, "old")
    time.sleep(0.01)
    newer = send(alice, room_id, "newer")
    time.sleep(0.01)
    cut = newer["createdAtMS"] + 5
    time.sleep(0.01)
    edited = ok(alice.post(f"/rooms/{room_id}/message", json={"_id": old["_id"], "message": "e"}))
    assert edited["updatedAtMS"] > cut > edited["createdAtMS"]

    on_updated = page(bob, room_id, afterTime=cut, timeRangeField="updatedAt")
    assert ids(on_updated["data"]) == [old["_id"]]
    assert ids(page(bob, room_id, afterTime=cut)["data"]) == [old["_id"]]  # the default field
    assert page(bob, room_id, afterTime=cut, timeRangeField="createdAt")["data"] == []
    assert page(bob, room_id, afterTime=cut, timeRangeField="messageTime")["data"] == []
    # ISO-8601 works as epoch ms does.
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(cut / 1000)) + f".{cut % 1000:03d}Z"
    assert ids(page(bob, room_id, afterTime=iso)["data"]) == [old["_id"]]
    before_all = old["createdAtMS"] - 1
    assert ids(page(bob, room_id, afterTime=before_all, timeRangeField="createdAt")["data"]) == [
        newer["_id"],
        old["_id"],
    ]
    # Ordered by the chosen field: the edited old message is the newest by updatedAt.
    assert ids(page(bob, room_id, afterTime=before_all)["data"]) == [old["_id"], newer["_id"]]
    assert ids(page(bob, room_id, timeRangeField="createdAt")["data"]) == [
        newer["_id"],
        old["_id"],
    ]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"sortOrder": "up"}, "INVALID_QUERY"),
        ({"sortOrder": "ASC "}, "INVALID_QUERY"),
        ({"timeRangeField": "seq"}, "INVALID_QUERY"),
        ({"timeRangeField": "created_at"}, "INVALID_QUERY"),
        ({"afterTime": "yesterday"}, "INVALID_QUERY"),
        ({"afterTime": "-5"}, "INVALID_QUERY"),
        ({"limit": "abc"}, None),
        ({"limit": "-1"}, None),
        ({"limit": "1.5"}, None),
        ({"beforeMessage": "m" * 65}, None),
    ],
)
def test_bad_history_parameters(
    people: dict[str, httpx.Client], params: dict[str, str], code: str | None
) -> None:
    alice = people["alice"]
    room_id = make_room(alice, "bob")
    send(alice, room_id, "x")
    response = alice.get(f"/rooms/{room_id}/messages/v3", params=params)
    if code is None:  # a type error of the query string: the edge's 400
        assert response.status_code == 400, response.text
        assert_error(response, 400, response.json()["error"])
    else:
        assert response.json().get("error") == code, (
            f"BUG: {params} answers {response.text}; the history's other bad values "
            f"(sortOrder, timeRangeField) answer {code}"
        )
        assert_error(response, 400, code)


def test_limit_over_the_maximum_is_result_too_large(
    server: Server, people: dict[str, httpx.Client]
) -> None:
    alice = people["alice"]
    room_id = make_room(alice, "bob")
    send(alice, room_id, "x")
    most = server.settings.max_page_size
    assert len(page(alice, room_id, limit=most)["data"]) == 1
    for path in (f"/rooms/{room_id}/messages/v3", f"/rooms/{room_id}/messages", "/messages/recent"):
        assert_error(alice.get(path, params={"limit": most + 1}), 413, "RESULT_TOO_LARGE")
        assert_error(alice.get(path, params={"limit": 10**12}), 413, "RESULT_TOO_LARGE")


def test_unknown_anchor_is_message_not_found(people: dict[str, httpx.Client]) -> None:
    alice = people["alice"]
    room_id = make_room(alice, "bob")
    send(alice, room_id, "x")
    for name in ("beforeMessage", "afterMessage"):
        for anchor in ("0" * 24, "nope"):
            response = alice.get(f"/rooms/{room_id}/messages/v3", params={name: anchor})
            assert_error(response, 404, "MESSAGE_NOT_FOUND")
    legacy = alice.get(f"/rooms/{room_id}/messages", params={"beforeMessage": "0" * 24})
    assert_error(legacy, 404, "MESSAGE_NOT_FOUND")
    assert_error(alice.get(f"/rooms/{room_id}/messages/{'0' * 24}"), 404, "MESSAGE_NOT_FOUND")


def test_an_anchor_in_another_room_reads_nothing_of_it(
    server: Server, people: dict[str, httpx.Client]
) -> None:
    """The "afterMessage trick": a member of room C anchors on a message of room AB."""
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    secret_room = make_room(alice, "bob")
    secrets = [send(alice, secret_room, f"secret-{i}")["_id"] for i in range(5)]
    own_room = make_room(carol)
    send(carol, own_room, "carol's own")
    attempts = []
    for anchor in secrets:
        for name, order in (("afterMessage", "asc"), ("beforeMessage", "desc")):
            for limit in ("1", "50"):
                attempts.append(
                    carol.get(
                        f"/rooms/{own_room}/messages/v3",
                        params={name: anchor, "sortOrder": order, "limit": limit},
                    )
                )
            attempts.append(
                carol.get(
                    f"/rooms/{own_room}/messages/v3",
                    params={name: anchor, "timeRangeField": "createdAt"},
                )
            )
        attempts.append(carol.get(f"/rooms/{own_room}/messages", params={"beforeMessage": anchor}))
        attempts.append(carol.get(f"/rooms/{own_room}/messages/{anchor}"))
        attempts.append(carol.get(f"/rooms/{secret_room}/messages/{anchor}"))
    for response in attempts:
        assert "secret" not in response.text, response.text
        assert response.status_code in (403, 404), response.text
    assert_error(attempts[0], 404, "MESSAGE_NOT_FOUND")
    assert_error(attempts[-1], 403, "NOT_ROOM_MEMBER")
    # And bob reads his room's history as before.
    assert len(page(bob, secret_room)["data"]) == 5


# -- the legacy page, windows and counts ----------------------------------------------------


def test_legacy_history_page(people: dict[str, httpx.Client]) -> None:
    alice, bob = people["alice"], people["bob"]
    room_id = make_room(alice, "bob")
    sent = []
    for i in range(8):
        kind = "image" if i % 3 == 0 else "text"
        sent.append(
            ok(
                alice.post(
                    f"/rooms/{room_id}/message", json={"messageType": kind, "message": f"m{i}"}
                )
            )
        )
    sent.append(send(bob, room_id, "from bob"))
    everything = [m["_id"] for m in sent]

    def legacy(**params: Any) -> list[str]:
        return ids(ok(bob.get(f"/rooms/{room_id}/messages", params=params))["data"])

    assert legacy() == everything[::-1]
    assert legacy(limit=3) == everything[:-4:-1]
    assert legacy(beforeMessage=everything[5]) == everything[:5][::-1]  # the anchor excluded
    assert legacy(beforeMessage=everything[5], limit=2) == [everything[4], everything[3]]
    assert legacy(beforeMessage=everything[0]) == []
    images = [m["_id"] for m in sent if m["messageType"] == "image"]
    assert legacy(q='{"messageType": "image"}') == images[::-1]
    assert legacy(q='{"messageType": {"$ne": "image"}}') == [
        m for m in everything[::-1] if m not in images
    ]
    assert legacy(q='{"sender": "bob"}') == [everything[-1]]
    assert legacy(q='{"messageType": "image"}', beforeMessage=images[-1]) == images[:-1][::-1]
    assert legacy(q='{"messageType": {"$in": ["image", "video"]}}', limit=1) == [images[-1]]
    result = ok(bob.get(f"/rooms/{room_id}/messages", params={"limit": 2}))
    assert result["totalCount"] == 2 and len(result["data"]) == 2
    for bad in ("{bad", '{"nofield": 1}', '{"messageType": {"$where": "1"}}', "[1]", '"text"'):
        response = bob.get(f"/rooms/{room_id}/messages", params={"q": bad})
        assert_error(response, 400, "INVALID_QUERY")


def test_window_around_a_message(people: dict[str, httpx.Client]) -> None:
    alice, bob = people["alice"], people["bob"]
    room_id = make_room(alice, "bob")
    sent = [send(alice, room_id, f"m{i}")["_id"] for i in range(25)]

    def window(message_id: str, **params: Any) -> list[str]:
        result = ok(bob.get(f"/rooms/{room_id}/messages/{message_id}", params=params))
        assert result["totalCount"] == len(result["data"])
        return ids(result["data"])

    assert window(sent[12], before=2, after=3) == sent[10:16]  # oldest first
    assert window(sent[12]) == sent[2:23]  # 10 each side by default
    assert window(sent[1], before=5, after=1) == sent[0:3]
    assert window(sent[24], before=1, after=5) == sent[23:]
    assert_error(
        bob.get(f"/rooms/{room_id}/messages/{sent[0]}", params={"before": 1001}),
        413,
        "RESULT_TOO_LARGE",
    )
    response = bob.get(f"/rooms/{room_id}/messages/{sent[0]}", params={"after": "x"})
    assert_error(response, 400, response.json()["error"])
    zero = "BUG: before=0 / after=0 ask for no messages on that side, but 0 reads as the default 10"
    assert window(sent[1], before=5, after=0) == sent[0:2], zero
    assert window(sent[24], before=0, after=5) == [sent[24]], zero
    assert window(sent[12], before=0, after=0) == [sent[12]], zero


def test_count_of_messages_changed_after_a_time(people: dict[str, httpx.Client]) -> None:
    alice, bob = people["alice"], people["bob"]
    room_id = make_room(alice, "bob")
    first = send(alice, room_id, "one")
    time.sleep(0.01)
    second = send(bob, room_id, "two")

    def count(**params: Any) -> int:
        return int(ok(bob.get(f"/rooms/{room_id}/count", params=params))["count"])

    assert count() == 2 and count(timeInMS=0) == 2
    assert count(timeInMS=first["createdAtMS"]) == 1
    assert count(timeInMS=second["createdAtMS"]) == 0
    time.sleep(0.01)
    ok(alice.post(f"/rooms/{room_id}/message", json={"_id": first["_id"], "message": "1"}))
    assert count(timeInMS=second["createdAtMS"]) == 1  # changed after counts too
    response = bob.get(f"/rooms/{room_id}/count", params={"timeInMS": "soon"})
    assert_error(response, 400, response.json()["error"])


# -- recent and admin listings --------------------------------------------------------------


def test_recent_messages_come_only_from_the_callers_rooms(people: dict[str, httpx.Client]) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    with_bob = make_room(alice, "bob")
    with_carol = make_room(alice, "carol")
    without_alice = make_room(bob, "carol")
    mine = [send(alice, with_bob, "ab1"), send(carol, with_carol, "ac1")]
    send(bob, without_alice, "not for alice")
    mine.append(send(bob, with_bob, "ab2"))

    recent = ok(alice.get("/messages/recent"))
    assert ids(recent["data"]) == ids(mine[::-1]) and recent["count"] == 3
    assert "not for alice" not in str(recent)
    assert ids(ok(alice.get("/messages/recent", params={"limit": 1}))["data"]) == [mine[-1]["_id"]]
    bob_recent = ids(ok(bob.get("/messages/recent"))["data"])
    assert mine[1]["_id"] not in bob_recent and len(bob_recent) == 3
    assert ok(people["dave"].get("/messages/recent")) == {"count": 0, "data": []}


def test_admin_lists_the_apps_messages_by_date(
    server: Server, admin: httpx.Client, people: dict[str, httpx.Client]
) -> None:
    alice, bob = people["alice"], people["bob"]
    one = make_room(alice, "bob")
    two = make_room(bob, "carol")
    early = send(alice, one, "early")
    time.sleep(0.01)
    middle = send(bob, two, "middle")
    time.sleep(0.01)
    late = send(bob, one, "late")

    listed = ok(admin.get("/admin/messages"))
    assert ids(listed["data"]) == [late["_id"], middle["_id"], early["_id"]]
    assert listed["totalCount"] == 3
    window = ok(
        admin.get(
            "/admin/messages",
            params={"startDate": middle["createdAtMS"], "endDate": middle["createdAtMS"]},
        )
    )
    assert ids(window["data"]) == [middle["_id"]] and window["totalCount"] == 1
    since = ok(admin.get("/admin/messages", params={"startDate": middle["createdAt"]}))
    assert ids(since["data"]) == [late["_id"], middle["_id"]]
    until = ok(admin.get("/admin/messages", params={"endDate": middle["createdAt"]}))
    assert ids(until["data"]) == [middle["_id"], early["_id"]]
    limited = ok(admin.get("/admin/messages", params={"limit": 1}))
    assert ids(limited["data"]) == [late["_id"]] and limited["totalCount"] == 3
    response = admin.get("/admin/messages", params={"startDate": "last week"})
    assert_error(response, 400, response.json()["error"])
    assert_error(alice.get("/admin/messages"), 403, "INSUFFICIENT_PERMISSIONS")
    # Another app's API Key lists none of them.
    other = server.new_app("other")
    with server.client(**{"IM-API-KEY": other.api_key}) as stranger:
        assert ok(stranger.get("/admin/messages")) == {"totalCount": 0, "data": []}


# -- who reads nothing ----------------------------------------------------------------------


def test_a_non_member_reads_nothing_of_a_room(people: dict[str, httpx.Client]) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    room_id = make_room(alice, "bob")
    sent = send(alice, room_id, "members only")
    ok(alice.post(f"/messages/{sent['_id']}/pin"))
    reads = [
        f"/rooms/{room_id}/messages/v3",
        f"/rooms/{room_id}/messages",
        f"/rooms/{room_id}/messages/{sent['_id']}",
        f"/rooms/{room_id}/count",
        f"/rooms/{room_id}/pined-messages",
        f"/rooms/{room_id}/messages/pined-messages",
        f"/messages/user-delete?room={room_id}",
    ]
    for path in reads:
        response = carol.get(path)
        assert "members only" not in response.text, path
        assert_error(response, 403, "NOT_ROOM_MEMBER")
    assert ok(carol.get("/messages/recent"))["data"] == []
    assert ok(carol.get("/me/badge")) == {"badge": 0}

    # A member who leaves loses the history with the membership.
    ok(bob.post(f"/rooms/{room_id}/delete/members", json={"members": ["bob"]}))
    for path in reads:
        assert_error(bob.get(path), 403, "NOT_ROOM_MEMBER")
    assert "members only" not in bob.get("/messages/recent").text


def test_another_apps_user_never_sees_the_messages(
    server: Server, people: dict[str, httpx.Client]
) -> None:
    alice = people["alice"]
    room_id = make_room(alice, "bob")
    sent = send(alice, room_id, "app A only")
    other = server.new_app("other")
    with server.client(**{"IM-API-KEY": other.api_key}) as other_admin:
        token = ok(
            other_admin.post("/admin/clients", json={"_id": "alice", "issueAccessToken": True})
        )["token"]
        own = ok(other_admin.post("/rooms", json={"members": ["alice"], "owner": "alice"}))["_id"]
        reads = [
            f"/rooms/{room_id}/messages/v3",
            f"/rooms/{room_id}/messages",
            f"/rooms/{room_id}/messages/{sent['_id']}",
            f"/rooms/{room_id}/count",
            f"/rooms/{room_id}/pined-messages",
        ]
        for path in reads:
            response = other_admin.get(path)
            assert "app A only" not in response.text
            assert_error(response, 404, "ROOM_NOT_FOUND")
        assert ok(other_admin.get("/admin/messages"))["data"] == []
    headers = {"IM-CLIENT-KEY": other.client_key, "IM-Authorization": token}
    with server.client(**headers) as other_alice:  # the same user id, in app B
        for path in reads:
            assert_error(other_alice.get(path), 404, "ROOM_NOT_FOUND")
        for name in ("beforeMessage", "afterMessage"):
            response = other_alice.get(f"/rooms/{own}/messages/v3", params={name: sent["_id"]})
            assert_error(response, 404, "MESSAGE_NOT_FOUND")
        assert ok(other_alice.get("/messages/recent"))["data"] == []
        assert ok(other_alice.get("/me/badge")) == {"badge": 0}
        for method, path in [
            ("POST", f"/messages/{sent['_id']}/reaction"),
            ("POST", f"/messages/{sent['_id']}/pin"),
            ("POST", f"/messages/{sent['_id']}/hidden"),
        ]:
            response = other_alice.request(method, path, json={"reaction": "like"})
            assert_error(response, 404, "MESSAGE_NOT_FOUND")
    assert ids(page(alice, room_id)["data"]) == [sent["_id"]]
