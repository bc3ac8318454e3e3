"""Rooms against sloppy and hostile input: server-owned fields in bodies are ignored or
refused, list parameters are checked, sizes are capped, and nothing refused changes a room.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from parley.storage.db import run_migrations
from tests.conftest import AppKeys, Server, assert_error, issue_token, make_settings, ok


class People:
    """Users of one app, each made (with a token) on first use and kept for the module."""

    def __init__(self, server: Server, keys: AppKeys) -> None:
        self.server = server
        self.keys = keys
        self.admin = server.client(**{"IM-API-KEY": keys.api_key})
        self._clients: dict[str, httpx.Client] = {}

    def __getitem__(self, name: str) -> httpx.Client:
        if name not in self._clients:
            token = issue_token(self.admin, name, nickname=name.title())
            self._clients[name] = self.server.client(
                **{"IM-CLIENT-KEY": self.keys.client_key, "IM-Authorization": token}
            )
        return self._clients[name]

    def make(self, *names: str) -> None:
        for name in names:
            self[name]

    def acting_admin(self, name: str) -> httpx.Client:
        """The API Key acting as ``name`` (IM-CLIENT-ID)."""
        self.make(name)
        return self.server.client(**{"IM-API-KEY": self.keys.api_key, "IM-CLIENT-ID": name})

    def close(self) -> None:
        for client in [self.admin, *self._clients.values()]:
            client.close()


@pytest.fixture(scope="module")
def people(server: Server) -> Iterator[People]:
    crowd = People(server, server.new_app("rooms-input"))
    yield crowd
    crowd.close()


@pytest.fixture(scope="module")
def others(server: Server) -> Iterator[People]:
    """Another application, with a user "zed"."""
    crowd = People(server, server.new_app("rooms-input-other"))
    crowd.make("zed")
    yield crowd
    crowd.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def users(people: People, *roles: str) -> list[str]:
    """Fresh user ids for one test (so its lists hold only its own rooms)."""
    names = [unique(role) for role in roles]
    people.make(*names)
    return names


def state(client: httpx.Client, room_id: str) -> dict[str, Any]:
    """What a refused request must leave alone."""
    room = ok(client.get(f"/rooms/{room_id}"))
    kept = ["name", "owner", "managers", "status", "opening", "roomType", "memberProperties"]
    return {
        **{key: room[key] for key in [*kept, "createdTimeMS", "updatedAtMS", "appID"]},
        "members": [m["_id"] for m in room["members"]],
        "lastMessage": (room.get("lastMessage") or {}).get("_id"),
    }


def ids_of(listing: dict[str, Any]) -> list[str]:
    return [r["_id"] for r in listing["data"]]


# A room body may echo back everything the server said about a room; none of it is the
# caller's to set.
SERVER_OWNED: dict[str, Any] = {
    "createdTime": "2000-01-01T00:00:00.000Z",
    "createdTimeMS": 946_684_800_000,
    "updatedAt": "2000-01-01T00:00:00.000Z",
    "updatedAtMS": 946_684_800_000,
    "lastMessage": {"_id": "5f0000000000000000000000", "message": "forged"},
    "unread": 99,
    "isMentioned": True,
    "isSuperuser": True,
    "encrypted": True,
    "serviceStatus": 7,
    "muted": True,
    "pref": {"sticky": True},
    "__v": 3,
}


# -- mass assignment ------------------------------------------------------------------------


def test_create_and_join_ignores_server_owned_fields(people: People, others: People) -> None:
    alice, bob, carol = users(people, "alice", "bob", "carol")
    started = int(time.time() * 1000)
    body = {
        **SERVER_OWNED,
        "name": "mine",
        "invitee": [bob],
        "appID": others.keys.id,
        "memberProperties": [{"client": bob, "role": "admin", "badge": 9, "lastRead": "x"}],
        "managers": [bob],
        "members": [carol],  # createAndJoin takes invitee; members is not a back door
    }
    room = ok(people[alice].post("/rooms/createAndJoin", json=body))
    assert room["appID"] == people.keys.id
    assert room["createdTimeMS"] >= started and room["updatedAtMS"] >= started
    assert [m["_id"] for m in room["members"]] == [alice, bob]
    assert room["memberProperties"] == [
        {"client": alice, "badge": 0, "role": "member"},
        {"client": bob, "badge": 0, "role": "member"},
    ]
    assert room["managers"] == [] and room["owner"] == alice
    assert "lastMessage" not in room and room["unread"] == 0 and room["isMentioned"] is False
    assert room["encrypted"] is False and room["serviceStatus"] == 0 and room["muted"] is False
    # bob got nothing from the forged fields: no rights, no unread.
    seen_by_bob = ok(people[bob].get(f"/rooms/{room['_id']}"))
    assert seen_by_bob["isSuperuser"] is False and seen_by_bob["unread"] == 0
    # The room lives in the caller's app, not the one named in appID.
    assert_error(others.admin.get(f"/rooms/{room['_id']}"), 404, "ROOM_NOT_FOUND")


def test_post_rooms_ignores_server_owned_fields(people: People, others: People) -> None:
    alice, bob = users(people, "alice", "bob")
    body = {
        **SERVER_OWNED,
        "members": [alice, bob],
        "owner": alice,
        "appID": others.keys.id,
        "memberProperties": [{"client": bob, "role": "admin"}],
        "managers": [bob],
        "status": 0,
        "opening": 0,
    }
    room = ok(people.admin.post("/rooms", json=body))
    assert room["appID"] == people.keys.id and room["owner"] == alice
    assert room["createdTimeMS"] > SERVER_OWNED["createdTimeMS"]
    assert {p["role"] for p in room["memberProperties"]} == {"member"}
    assert room["managers"] == [] and "lastMessage" not in room
    # A new room is active and open whatever the body says (§3.4 lists neither field).
    assert room["status"] == 1 and room["opening"] == 1
    assert_error(others.admin.get(f"/rooms/{room['_id']}"), 404, "ROOM_NOT_FOUND")


def test_the_id_mirror_does_not_name_the_room(people: People) -> None:
    # Every room carries "id" = "_id"; a body that echoes a different "id" names nothing.
    alice = users(people, "alice")[0]
    wanted, echoed = unique("wanted"), unique("echoed")
    room = ok(people[alice].post("/rooms/createAndJoin", json={"_id": wanted, "id": echoed}))
    assert room["_id"] == room["id"] == wanted
    assert_error(people[alice].get(f"/rooms/{echoed}"), 404, "ROOM_NOT_FOUND")


def test_status_in_create_and_join_is_accepted(people: People) -> None:
    # The creator becomes the owner, a superuser, so sending status is no trespass; a new
    # room starts active all the same.
    alice = users(people, "alice")[0]
    room = ok(people[alice].post("/rooms/createAndJoin", json={"status": 0}))
    assert room["status"] == 1 and room["owner"] == alice


@pytest.mark.parametrize(
    "change",
    [
        {"status": 0},
        {"opening": 0},
        {"appID": "x", "memberProperties": [], "createdTimeMS": 1},
        {"name": "mine", "isSuperuser": True},
    ],
    ids=["status", "opening", "only-server-fields", "claiming-superuser"],
)
def test_a_plain_member_may_not_put_anything(people: People, change: dict[str, Any]) -> None:
    alice, bob = users(people, "alice", "bob")
    room_id = ok(people[alice].post("/rooms/createAndJoin", json={"invitee": [bob]}))["_id"]
    before = state(people[alice], room_id)
    response = people[bob].put(f"/rooms/{room_id}", json=change)
    assert_error(response, 403, "INSUFFICIENT_PERMISSIONS")
    assert state(people[alice], room_id) == before


def test_put_by_the_owner_ignores_server_owned_fields(people: People, others: People) -> None:
    alice, bob, carol = users(people, "alice", "bob", "carol")
    room = ok(people[alice].post("/rooms/createAndJoin", json={"invitee": [bob]}))
    room_id, elsewhere = room["_id"], unique("elsewhere")
    body = {
        **SERVER_OWNED,
        "name": "renamed",
        "_id": elsewhere,
        "id": elsewhere,
        "appID": others.keys.id,
        "roomType": "direct",
        "members": [carol],
        "memberProperties": [{"client": bob, "role": "admin", "badge": 5}],
        "isSuperuser": False,
    }
    after = ok(people[alice].put(f"/rooms/{room_id}", json=body))
    assert after["_id"] == room_id and after["appID"] == people.keys.id
    assert after["name"] == "renamed" and after["roomType"] == "group"
    assert after["createdTimeMS"] == room["createdTimeMS"]
    assert [m["_id"] for m in after["members"]] == [alice, bob]
    assert after["memberProperties"] == room["memberProperties"]
    assert after["encrypted"] is False and "lastMessage" not in after
    assert after["isSuperuser"] is True and after["unread"] == 0
    assert_error(people[alice].get(f"/rooms/{elsewhere}"), 404, "ROOM_NOT_FOUND")
    assert_error(others.admin.get(f"/rooms/{room_id}"), 404, "ROOM_NOT_FOUND")


def test_owner_in_create_and_join_is_ignored(people: People) -> None:
    bob, carol = users(people, "bob", "carol")
    room = ok(people[bob].post("/rooms/createAndJoin", json={"owner": carol, "invitee": [carol]}))
    assert room["owner"] == bob and room["isSuperuser"] is True
    assert ok(people[carol].get(f"/rooms/{room['_id']}"))["isSuperuser"] is False
    assert_error(people[carol].delete(f"/rooms/{room['_id']}"), 403, "INSUFFICIENT_PERMISSIONS")


def test_api_key_acting_as_a_user_makes_that_user_the_owner(people: People) -> None:
    # createAndJoin through the API Key with IM-CLIENT-ID is the user creating the room:
    # the same room as if the user had called, owner included.
    alice, bob = users(people, "alice", "bob")
    with people.acting_admin(alice) as acting:
        room = ok(acting.post("/rooms/createAndJoin", json={"invitee": [bob]}))
    assert [m["_id"] for m in room["members"]] == [alice, bob]
    assert room["owner"] == alice


def test_adding_members_cannot_grant_anything(people: People) -> None:
    alice, bob, carol = users(people, "alice", "bob", "carol")
    room_id = ok(people[alice].post("/rooms/createAndJoin", json={"invitee": [bob]}))["_id"]
    body = {
        "invitees": [carol],
        "role": "admin",
        "isManager": True,
        "managers": [carol],
        "memberProperties": [{"client": carol, "role": "admin"}],
    }
    room = ok(people[bob].post(f"/rooms/{room_id}/members", json=body))
    assert room["managers"] == []
    assert {p["client"]: p["role"] for p in room["memberProperties"]}[carol] == "member"
    seen_by_carol = ok(people[carol].get(f"/rooms/{room_id}"))
    assert seen_by_carol["isSuperuser"] is False


def test_an_existing_id_is_a_conflict(people: People) -> None:
    alice, bob, carol, dave = users(people, "alice", "bob", "carol", "dave")
    room_id = unique("taken")
    ok(people[alice].post("/rooms/createAndJoin", json={"_id": room_id, "invitee": [bob]}))
    before = state(people[alice], room_id)
    again = {"_id": room_id, "name": "hijacked", "invitee": [dave]}
    assert_error(people[carol].post("/rooms/createAndJoin", json=again), 409, "ROOM_EXISTS")
    assert_error(
        people.admin.post("/rooms", json={"_id": room_id, "members": [carol], "owner": carol}),
        409,
        "ROOM_EXISTS",
    )
    assert state(people[alice], room_id) == before


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("badge", 0),
        ("lastRead", "5f0000000000000000000000"),
        ("client", "someone"),
        ("isManager", True),
        ("role", "owner"),
        ("role", None),
    ],
)
def test_server_kept_member_properties_are_refused(people: People, prop: str, value: Any) -> None:
    alice, bob = users(people, "alice", "bob")
    room_id = ok(people[alice].post("/rooms/createAndJoin", json={"invitee": [bob]}))["_id"]
    before = state(people[alice], room_id)
    body = {"property": prop, "value": value}
    assert_error(
        people[alice].put(f"/rooms/{room_id}/member/{bob}", json=body), 400, "INVALID_REQUEST"
    )
    assert state(people[alice], room_id) == before


# -- GET /rooms parameters ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/rooms", "/rooms/ids"])
def test_limit_above_the_max_page_is_result_too_large(people: People, path: str) -> None:
    alice = users(people, "alice")[0]
    assert people.server.settings.max_page_size == 1000
    assert_error(people[alice].get(path, params={"limit": 1001}), 413, "RESULT_TOO_LARGE")
    ok(people[alice].get(path, params={"limit": 1000}))
    if path == "/rooms":  # the API Key's listing of the whole app has the same cap
        assert_error(people.admin.get(path, params={"limit": 1001}), 413, "RESULT_TOO_LARGE")


@pytest.mark.parametrize("path", ["/rooms", "/rooms/ids"])
@pytest.mark.parametrize("param", ["skip", "limit"])
@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "1e3", "99999999999"])
def test_skip_and_limit_must_be_small_whole_numbers(
    people: People, path: str, param: str, value: str
) -> None:
    alice = users(people, "alice")[0]
    response = people[alice].get(path, params={param: value})
    if param == "limit" and value == "99999999999":
        assert_error(response, 413, "RESULT_TOO_LARGE")
    else:
        assert_error(response, 400, "INVALID_REQUEST")


@pytest.mark.parametrize("sort", ["-foo", "foo", "-lastMessage foo", "name", "-_id"])
def test_unknown_sort_field(people: People, sort: str) -> None:
    alice = users(people, "alice")[0]
    assert_error(people[alice].get("/rooms", params={"sort": sort}), 400, "INVALID_REQUEST")


def iso_ms(ms: int, tz: timezone = UTC) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec="milliseconds")


def next_ms() -> None:
    """Let the clock move on, so that two changes get distinct millisecond times."""
    time.sleep(0.005)


def test_updated_after_as_iso_and_as_epoch_ms(people: People) -> None:
    fay, gil = users(people, "fay", "gil")
    first = ok(people[fay].post("/rooms/createAndJoin", json={}))
    next_ms()
    second = ok(people[fay].post("/rooms/createAndJoin", json={}))
    assert second["createdTimeMS"] > first["createdTimeMS"]

    def listed(after: Any, client: httpx.Client | None = None) -> list[str]:
        params = {"updatedAfter": after, "sort": "createdTime", "q": f'{{"members": "{fay}"}}'}
        result = ok((client or people[fay]).get("/rooms", params=params))
        assert result["totalCount"] == len(result["data"])
        return ids_of(result)

    t1 = first["createdTimeMS"]
    assert listed(t1 - 1) == [first["_id"], second["_id"]]
    assert listed(t1) == [second["_id"]]  # strictly after
    assert listed(first["createdTime"]) == [second["_id"]]  # the wire's own ISO form
    assert listed(iso_ms(t1, timezone(timedelta(hours=8)))) == [second["_id"]]
    assert listed(second["createdTimeMS"]) == []

    # A new message makes the older room newer than the second one's creation.
    next_ms()
    bumped = ok(
        people[fay].post(
            f"/rooms/{first['_id']}/members", json={"invitees": [gil], "systemMessage": True}
        )
    )
    t2 = second["createdTimeMS"]
    assert bumped["lastMessage"]["createdAtMS"] > t2
    assert listed(t2) == [first["_id"]]
    assert listed(iso_ms(t2)) == [first["_id"]]
    assert listed(t2, people.admin) == [first["_id"]]  # the API Key's app-wide listing


@pytest.mark.parametrize(
    "after", ["yesterday", "2024-13-01T00:00:00Z", "-5", "1e12", "12:00", "0x10", "9" * 30]
)
def test_garbage_updated_after(people: People, after: str) -> None:
    alice = users(people, "alice")[0]
    response = people[alice].get("/rooms", params={"updatedAfter": after})
    assert_error(response, 400, "INVALID_REQUEST")
    assert_error(people.admin.get("/rooms", params={"updatedAfter": after}), 400, "INVALID_REQUEST")


@pytest.mark.parametrize(
    "q",
    [
        '{"name": "x"}',
        '{"members": "a", "owner": "b"}',
        '{"members": {"$nin": ["a"]}}',
        '{"members": {"$in": []}}',
        '{"members": {"$in": [1]}}',
        '{"members": {"$in": ["a"], "$all": ["b"]}}',
        '{"members": 5}',
        '{"roomTags": {"$regex": ".*"}}',
    ],
)
def test_unsupported_query(people: People, q: str) -> None:
    alice = users(people, "alice")[0]
    assert_error(people[alice].get("/rooms", params={"q": q}), 400, "INVALID_QUERY")


@pytest.mark.parametrize("q", ["{", "{'members': 'a'}", "nope", '{"members": "a"', "\x00"])
def test_malformed_query_json(people: People, q: str) -> None:
    alice = users(people, "alice")[0]
    assert_error(people[alice].get("/rooms", params={"q": q}), 400, "INVALID_QUERY")


@pytest.mark.parametrize("q", ["[1]", "1", '"members"', "[]", "0", "false"])
def test_query_must_be_an_object(people: People, q: str) -> None:
    alice = users(people, "alice")[0]
    assert_error(people[alice].get("/rooms", params={"q": q}), 400, "INVALID_QUERY")


def test_query_members_in_and_all(people: People) -> None:
    gus, hal, ivy = users(people, "gus", "hal", "ivy")
    names = {}
    for label, invitees in (("A", [hal]), ("B", [ivy]), ("C", [hal, ivy])):
        room = ok(people[gus].post("/rooms/createAndJoin", json={"invitee": invitees}))
        names[room["_id"]] = label

    def matching(q: str, client: httpx.Client | None = None) -> set[str]:
        result = ok((client or people[gus]).get("/rooms", params={"q": q}))
        assert result["totalCount"] == len(result["data"])
        return {names.get(r, r) for r in ids_of(result)}

    assert matching(f'{{"members": {{"$in": ["{hal}"]}}}}') == {"A", "C"}
    assert matching(f'{{"members": {{"$in": ["{hal}", "{ivy}"]}}}}') == {"A", "B", "C"}
    assert matching(f'{{"members": {{"$all": ["{hal}", "{ivy}"]}}}}') == {"C"}
    assert matching(f'{{"members": {{"$all": ["{hal}", "nobody"]}}}}') == set()
    assert matching(f'{{"members": "{ivy}"}}') == {"B", "C"}
    # The API Key's listing of the whole app filters the same way.
    q = f'{{"members": {{"$all": ["{gus}", "{hal}"]}}}}'
    assert matching(q, people.admin) == {"A", "C"}


def make_rooms(people: People, owner: str, guest: str, count: int) -> list[str]:
    """``count`` rooms of ``owner`` and ``guest``, created in this order, no messages."""
    made = []
    for _ in range(count):
        made.append(
            ok(people[owner].post("/rooms/createAndJoin", json={"invitee": [guest]}))["_id"]
        )
        next_ms()
    return made


def bump(people: People, actor: str, room_id: str) -> None:
    """A system message in the room, sent by ``actor``: newer activity, unread for others."""
    newcomer = users(people, "newcomer")[0]
    body = {"invitees": [newcomer], "systemMessage": True}
    ok(people[actor].post(f"/rooms/{room_id}/members", json=body))
    next_ms()


def test_sort_unread_first(people: People) -> None:
    jo, kim = users(people, "jo", "kim")
    r1, r2, r3 = make_rooms(people, jo, kim, 3)
    bump(people, kim, r1)  # unread for jo
    bump(people, jo, r2)  # read: jo wrote it
    bump(people, jo, r3)
    # Activity: r3 > r2 > r1; only r1 is unread for jo.
    assert ids_of(ok(people[jo].get("/rooms"))) == [r3, r2, r1]
    assert ids_of(ok(people[jo].get("/rooms", params={"sortUnreadFirst": "1"}))) == [r1, r3, r2]
    assert ids_of(ok(people[jo].get("/rooms", params={"sortUnreadFirst": "0"}))) == [r3, r2, r1]
    # For kim, r2 and r3 are unread.
    listed = ok(people[kim].get("/rooms", params={"sortUnreadFirst": "true"}))
    assert ids_of(listed) == [r3, r2, r1]
    assert [r["unread"] for r in listed["data"]] == [1, 1, 0]


def test_sort_by_created_time_and_by_last_message(people: People) -> None:
    lee, max_ = users(people, "lee", "max")
    r1, r2, r3 = make_rooms(people, lee, max_, 3)
    bump(people, lee, r2)
    # created: r1 < r2 < r3; activity: r2 (a message) > r3 > r1.
    expected = {
        None: [r2, r3, r1],  # default: -lastMessage
        "-lastMessage": [r2, r3, r1],
        "lastMessage": [r1, r3, r2],
        "-createdTime": [r3, r2, r1],
        "createdTime": [r1, r2, r3],
    }
    q = f'{{"members": "{lee}"}}'
    for sort, order in expected.items():
        params = {"sort": sort} if sort else {}
        assert ids_of(ok(people[lee].get("/rooms", params=params))) == order, sort
        # The API Key lists the whole app from another index: same order.
        assert ids_of(ok(people.admin.get("/rooms", params={**params, "q": q}))) == order, sort


# -- sizes ------------------------------------------------------------------------------------


def test_body_over_one_mebibyte(people: People) -> None:
    alice = users(people, "alice")[0]
    room_id = ok(people[alice].post("/rooms/createAndJoin", json={}))["_id"]
    before = state(people[alice], room_id)
    huge = "x" * (people.server.settings.max_body_bytes + 1)
    response = people[alice].put(f"/rooms/{room_id}", json={"name": huge})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    response = people[alice].post("/rooms/createAndJoin", json={"name": huge})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert state(people[alice], room_id) == before
    assert ok(people[alice].get("/rooms"))["totalCount"] == 1


@pytest.fixture(scope="module")
def capped(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[People]:
    """A second node with small caps: 3 members a room, 2 added by one request. On
    PostgreSQL it shares the session's database (already migrated by ``server``)."""
    tmp: Path = tmp_path_factory.mktemp("capped")
    settings = make_settings(tmp, max_room_members=3, max_invitees=2)
    if settings.is_sqlite:
        run_migrations(settings.effective_database_url)
    node = Server(settings).start()
    crowd = People(node, node.new_app("capped"))
    try:
        yield crowd
    finally:
        crowd.close()
        node.stop()


def test_adding_beyond_the_member_cap(capped: People) -> None:
    alice, bob, carol, dave = users(capped, "alice", "bob", "carol", "dave")
    room_id = ok(capped[alice].post("/rooms/createAndJoin", json={"invitee": [bob]}))["_id"]
    ok(capped[alice].post(f"/rooms/{room_id}/members", json={"invitees": [carol]}))
    before = state(capped[alice], room_id)
    assert before["members"] == [alice, bob, carol]

    refused = [
        capped[alice].post(f"/rooms/{room_id}/members", json={"invitees": [dave]}),
        capped[alice].post(f"/rooms/{room_id}/members/{dave}"),
        capped[dave].post(f"/rooms/{room_id}/join"),
    ]
    with capped.acting_admin(dave) as acting:
        refused.append(acting.post(f"/rooms/{room_id}/join"))
    refused.append(capped.admin.post(f"/rooms/{room_id}/members", json={"invitees": [dave]}))
    for response in refused:
        assert_error(response, 413, "TOO_MANY_MEMBERS")
    assert state(capped[alice], room_id) == before

    # Members already in count once: adding them again is not growth.
    ok(capped[alice].post(f"/rooms/{room_id}/members", json={"invitees": [bob, carol]}))
    # Room again after someone leaves.
    ok(capped[carol].post(f"/rooms/{room_id}/delete/members", json={"members": [carol]}))
    ok(capped[dave].post(f"/rooms/{room_id}/join"))
    assert state(capped[alice], room_id)["members"] == [alice, bob, dave]


def test_more_invitees_than_one_request_may_add(capped: People) -> None:
    alice, bob, carol, dave = users(capped, "alice", "bob", "carol", "dave")
    room_id = ok(capped[alice].post("/rooms/createAndJoin", json={}))["_id"]
    three = [bob, carol, dave]
    response = capped[alice].post(f"/rooms/{room_id}/members", json={"invitees": three})
    assert_error(response, 413, "TOO_MANY_MEMBERS")
    response = capped[alice].post("/rooms/createAndJoin", json={"invitee": three})
    assert_error(response, 413, "TOO_MANY_MEMBERS")
    assert_error(capped.admin.post("/rooms", json={"members": three}), 413, "TOO_MANY_MEMBERS")
    assert state(capped[alice], room_id)["members"] == [alice]
    assert ok(capped[bob].get("/rooms"))["totalCount"] == 0
    # Exactly the per-request limit is fine.
    room = ok(capped[alice].post(f"/rooms/{room_id}/members", json={"invitees": [bob, carol]}))
    assert [m["_id"] for m in room["members"]] == [alice, bob, carol]
    ok(capped.admin.post("/rooms", json={"members": [bob, carol]}))


def race(clients: list[httpx.Client], path: str, body: dict[str, Any]) -> list[int]:
    """POST ``body`` to ``path`` from every client at once; their status codes."""
    gate = threading.Barrier(len(clients), timeout=10)
    answers: list[int] = []

    def one(client: httpx.Client) -> None:
        gate.wait()
        answers.append(client.post(path, json=body).status_code)

    threads = [threading.Thread(target=one, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    return sorted(answers)


def test_concurrent_joins_do_not_overrun_the_cap(capped: People) -> None:
    # Two users join a room with one free place at the same moment: one of them must be
    # refused. Counting and inserting in one transaction, without a lock on the room,
    # lets both through on a database that runs the two transactions side by side.
    owner, guest = users(capped, "owner", "guest")
    rounds = 8
    racers = users(capped, *[f"racer{i}" for i in range(2 * rounds)])
    overfull = []
    for i in range(rounds):
        room_id = ok(capped[owner].post("/rooms/createAndJoin", json={"invitee": [guest]}))["_id"]
        pair = [capped[r] for r in racers[2 * i : 2 * i + 2]]
        answers = race(pair, f"/rooms/{room_id}/join", {"systemMessage": False})
        assert answers in ([200, 413], [200, 200]), answers
        members = state(capped[owner], room_id)["members"]
        if len(members) > 3:
            overfull.append(members)
    assert overfull == [], f"rooms over the cap of 3: {overfull}"


def test_concurrent_system_messages_all_land(people: People) -> None:
    # Joins with a system message each append a message with the room's next sequence
    # number: side by side they must not both take the same number.
    owner = users(people, "owner")[0]
    joiners = users(people, *[f"joiner{i}" for i in range(4)])
    for _ in range(3):
        room_id = ok(people[owner].post("/rooms/createAndJoin", json={}))["_id"]
        answers = race([people[j] for j in joiners], f"/rooms/{room_id}/join", {})
        assert answers == [200] * len(joiners), answers
        members = state(people[owner], room_id)["members"]
        assert sorted(members) == sorted([owner, *joiners])
        assert ok(people[owner].get(f"/rooms/{room_id}"))["unread"] == len(joiners)


# -- malformed rooms ---------------------------------------------------------------------------


@pytest.mark.parametrize("room_type", ["space", "DIRECT", "", 5, ["group"]])
def test_invalid_room_type(people: People, room_type: Any) -> None:
    alice = users(people, "alice")[0]
    response = people[alice].post("/rooms/createAndJoin", json={"roomType": room_type})
    if room_type == "":  # empty means the default, a group
        assert ok(response)["roomType"] == "group"
    else:
        assert_error(response, 400, "INVALID_REQUEST")


def test_a_direct_room_has_exactly_two_members(people: People) -> None:
    alice, bob, carol = users(people, "alice", "bob", "carol")
    three = {"roomType": "direct", "invitee": [bob, carol]}
    assert_error(people[alice].post("/rooms/createAndJoin", json=three), 400, "INVALID_REQUEST")
    alone = {"roomType": "direct", "invitee": [alice]}
    assert_error(people[alice].post("/rooms/createAndJoin", json=alone), 400, "INVALID_REQUEST")
    by_key = {"roomType": "direct", "members": [alice, bob, carol]}
    assert_error(people.admin.post("/rooms", json=by_key), 400, "INVALID_REQUEST")
    assert ok(people[bob].get("/rooms"))["totalCount"] == 0
    # A direct room keeps its pair: nobody is added, nobody joins.
    room = ok(
        people[alice].post("/rooms/createAndJoin", json={"roomType": "direct", "invitee": bob})
    )
    response = people[alice].post(f"/rooms/{room['_id']}/members", json={"invitees": [carol]})
    assert_error(response, 400, "INVALID_REQUEST")
    assert_error(people[carol].post(f"/rooms/{room['_id']}/join"), 403, "INSUFFICIENT_PERMISSIONS")
    assert [m["_id"] for m in ok(people[alice].get(f"/rooms/{room['_id']}"))["members"]] == [
        alice,
        bob,
    ]


@pytest.mark.parametrize("room_id", ["a\x00b", "x" * 256, "", "tab\there", "line\nbreak"], ids=repr)
def test_bad_room_id_in_a_body(people: People, room_id: str) -> None:
    alice = users(people, "alice")[0]
    response = people[alice].post("/rooms/createAndJoin", json={"_id": room_id})
    assert_error(response, 400, "INVALID_REQUEST")
    assert ok(people[alice].get("/rooms"))["totalCount"] == 0


@pytest.mark.parametrize("room_id", ["a\x00b", "x" * 256, "tab\there"], ids=repr)
@pytest.mark.parametrize("suffix", ["", "/exists"])
def test_bad_room_id_in_a_path(people: People, room_id: str, suffix: str) -> None:
    alice = users(people, "alice")[0]
    response = people[alice].get(f"/rooms/{quote(room_id, safe='')}{suffix}")
    assert_error(response, 400, "INVALID_REQUEST")


def test_room_id_of_255_printable_characters(people: People) -> None:
    alice = users(people, "alice")[0]
    room_id = "é" + "x" * 254
    ok(people[alice].post("/rooms/createAndJoin", json={"_id": room_id}))
    assert ok(people[alice].get(f"/rooms/{quote(room_id, safe='')}"))["_id"] == room_id


def test_unknown_invitee(people: People, others: People) -> None:
    alice, bob = users(people, "alice", "bob")
    room_id = ok(people[alice].post("/rooms/createAndJoin", json={"invitee": [bob]}))["_id"]
    before = state(people[alice], room_id)
    # "zed" exists, but in another app: as unknown here as "ghost".
    for stranger in ("ghost", "zed"):
        for response in (
            people[alice].post(f"/rooms/{room_id}/members", json={"invitees": [stranger]}),
            people[alice].post(f"/rooms/{room_id}/members", json={"invitees": [bob, stranger]}),
            people[alice].post(f"/rooms/{room_id}/members/{stranger}"),
            people[alice].post("/rooms/createAndJoin", json={"invitee": [stranger]}),
            people[alice].put(
                f"/rooms/{room_id}/member/{stranger}", json={"property": "x", "value": 1}
            ),
        ):
            assert_error(response, 404, "CLIENT_NOT_FOUND")
    assert state(people[alice], room_id) == before
    assert ok(people[alice].get("/rooms"))["totalCount"] == 1


@pytest.mark.parametrize("acting", ["ghost", "zed"], ids=["unknown", "of-another-app"])
def test_api_key_acting_as_a_user_that_is_not_here(
    people: People, others: People, acting: str
) -> None:
    # IM-CLIENT-ID names the user the API Key acts as; a name that is no user of the app
    # must not become a member (memberships have no foreign key to users to stop it).
    alice, bob = users(people, "alice", "bob")
    room_id = ok(people[alice].post("/rooms/createAndJoin", json={"invitee": [bob]}))["_id"]
    before = state(people[alice], room_id)
    headers = {"IM-API-KEY": people.keys.api_key, "IM-CLIENT-ID": acting}
    with people.server.client(**headers) as phantom:
        assert_error(phantom.post(f"/rooms/{room_id}/join"), 404, "CLIENT_NOT_FOUND")
        response = phantom.post("/rooms/createAndJoin", json={"invitee": [bob]})
        assert_error(response, 404, "CLIENT_NOT_FOUND")
    assert state(people[alice], room_id) == before


def test_api_key_without_an_acting_user_where_one_is_needed(people: People) -> None:
    alice, bob = users(people, "alice", "bob")
    room = ok(
        people[alice].post("/rooms/createAndJoin", json={"invitee": [bob], "systemMessage": True})
    )
    room_id = room["_id"]
    before = state(people[alice], room_id)
    for response in (
        people.admin.post(f"/rooms/{room_id}/join"),
        people.admin.get("/rooms/ids"),
        people.admin.put(
            f"/rooms/{room_id}/lastRead", json={"message": room["lastMessage"]["_id"]}
        ),
    ):
        assert_error(response, 400, "MISSING_PARAMETER")
    assert state(people[alice], room_id) == before


def test_a_frozen_room_is_still_readable_and_listed(people: People) -> None:
    alice, bob = users(people, "alice", "bob")
    room_id = ok(people[alice].post("/rooms/createAndJoin", json={"invitee": [bob]}))["_id"]
    assert ok(people[alice].put(f"/rooms/{room_id}", json={"status": 0}))["status"] == 0
    assert ok(people[bob].get(f"/rooms/{room_id}"))["status"] == 0
    assert ok(people[bob].get(f"/rooms/{room_id}/exists")) == {"exists": True}
    assert ids_of(ok(people[bob].get("/rooms"))) == [room_id]
    assert ok(people[bob].get("/rooms/ids"))["data"] == [room_id]
    listed = ok(people.admin.get("/rooms", params={"q": f'{{"members": "{bob}"}}'}))
    assert ids_of(listed) == [room_id]
    # And it thaws.
    assert ok(people[alice].put(f"/rooms/{room_id}", json={"status": 1}))["status"] == 1
