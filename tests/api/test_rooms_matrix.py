"""Who may do what to a room: every room and member endpoint by every kind of caller, each
cell on a room of its own, checked against the rights table in parley.services.rooms.

A refused request leaves the room exactly as it was; a user of another application gets
the very answer a room id that does not exist gets, so it cannot even learn the id is taken.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.conftest import AppKeys, Server, assert_error, issue_token, ok

# The callers. "admin" is the app's API Key; where an operation needs an acting user it
# names "acting", a user who is not in the room. "stranger" is a user of another app with
# that app's Client Key; "stranger_admin" is that app's API Key.
ACTORS = (
    "admin",
    "owner",
    "manager",
    "role_admin",
    "member",
    "outsider",
    "stranger",
    "stranger_admin",
)
USER_OF = {"admin": "acting", "stranger_admin": "stranger", "spoofer": "member"}
# "spoofer" is the plain member sending IM-CLIENT-ID: owner. Only the API Key may name its
# user; a Client Key caller is whoever its token says, so the spoofer has a member's rights.
SPOOFER = "spoofer"
# Every room of the matrix starts with these members: the owner (its creator), a manager
# named with PUT managers, a member granted role admin, a plain member, and a plain member
# that the kick cells remove.
ROOM_MEMBERS = ("owner", "manager", "role_admin", "member", "target")
# Users of the app that are never in a fresh room.
OTHER_USERS = ("outsider", "acting", "newcomer")

# Expected answers:
#   ok     2xx, and the operation did what it says (see check_effect)
#   in/out 2xx, and the list holds / does not hold the room
#   403    403 INSUFFICIENT_PERMISSIONS
#   NM     403 NOT_ROOM_MEMBER
#   409    409 ROOM_EXISTS
#   hid    the same answer, byte for byte but the id, as for a room that does not exist
#   -      not applicable (the API Key is no member that could leave or own a property)
# fmt: off
RIGHTS: dict[str, tuple[str, ...]] = {
    # operation                admin  owner  mgr    r.admin member outsider strngr s.admin
    "get_room":               ("ok",  "ok",  "ok",  "ok",  "ok",  "NM",  "hid", "hid"),
    "exists":                 ("ok",  "ok",  "ok",  "ok",  "ok",  "ok",  "hid", "hid"),
    # The API Key without IM-CLIENT-ID lists the app's rooms; /rooms/ids needs an acting
    # user, and "acting" is not in the room.
    "list_rooms":             ("in",  "in",  "in",  "in",  "in",  "out", "out", "out"),
    "room_ids":               ("out", "in",  "in",  "in",  "in",  "out", "out", "out"),
    "rename":                 ("ok",  "ok",  "ok",  "ok",  "403", "NM",  "hid", "hid"),
    "freeze":                 ("ok",  "ok",  "ok",  "ok",  "403", "NM",  "hid", "hid"),
    "reopen":                 ("ok",  "ok",  "ok",  "ok",  "403", "NM",  "hid", "hid"),
    "hand_over":              ("ok",  "ok",  "403", "403", "403", "NM",  "hid", "hid"),
    "name_managers":          ("ok",  "ok",  "403", "ok",  "403", "NM",  "hid", "hid"),
    "delete":                 ("ok",  "ok",  "403", "403", "403", "NM",  "hid", "hid"),
    # An open group room takes anyone of the app; a closed one (opening 0) only through
    # the API Key. Joining a room one is in already is a no-op.
    "join":                   ("ok",  "ok",  "ok",  "ok",  "ok",  "ok",  "hid", "hid"),
    "join_closed":            ("ok",  "ok",  "ok",  "ok",  "ok",  "403", "hid", "hid"),
    "add_members":            ("ok",  "ok",  "ok",  "ok",  "ok",  "NM",  "hid", "hid"),
    "add_member_legacy":      ("ok",  "ok",  "ok",  "ok",  "ok",  "NM",  "hid", "hid"),
    "kick":                   ("ok",  "ok",  "ok",  "ok",  "403", "NM",  "hid", "hid"),
    # Removing the owner: only the API Key; for the owner itself it is leaving.
    "kick_owner":             ("ok",  "ok",  "403", "403", "403", "NM",  "hid", "hid"),
    "leave":                  ("-",   "ok",  "ok",  "ok",  "ok",  "NM",  "hid", "hid"),
    "grant_role":             ("ok",  "ok",  "403", "ok",  "403", "NM",  "hid", "hid"),
    "own_property":           ("-",   "ok",  "ok",  "ok",  "ok",  "NM",  "hid", "hid"),
    "others_property":        ("ok",  "ok",  "ok",  "ok",  "403", "NM",  "hid", "hid"),
    # Read state belongs to a member: the API Key acting as a non-member has none.
    "last_read":              ("NM",  "ok",  "ok",  "ok",  "ok",  "NM",  "hid", "hid"),
    # POST /rooms takes the API Key only; another app's key creates in its own app, where
    # the id of this app's room is free.
    "create":                 ("ok",  "403", "403", "403", "403", "403", "403", "ok"),
    "create_taken_id":        ("409", "403", "403", "403", "403", "403", "403", "ok"),
    "create_and_join":        ("ok",  "ok",  "ok",  "ok",  "ok",  "ok",  "ok",  "ok"),
    "create_and_join_taken":  ("409", "409", "409", "409", "409", "409", "ok",  "ok"),
}
# fmt: on


@dataclass(frozen=True)
class Op:
    method: str
    path: str  # "{room}" and "{me}" are filled in per cell
    body: Any = None  # strings "{room}", "{me}", "{message}" are filled in per cell
    acting: bool = False  # the API Key names its user in IM-CLIENT-ID
    closed: bool = False  # the room is created with opening 0


OPS: dict[str, Op] = {
    "get_room": Op("GET", "/rooms/{room}"),
    "exists": Op("GET", "/rooms/{room}/exists"),
    "list_rooms": Op("GET", "/rooms"),
    "room_ids": Op("GET", "/rooms/ids", acting=True),
    "rename": Op("PUT", "/rooms/{room}", {"name": "renamed"}),
    "freeze": Op("PUT", "/rooms/{room}", {"status": 0}),
    "reopen": Op("PUT", "/rooms/{room}", {"opening": 1}, closed=True),
    "hand_over": Op("PUT", "/rooms/{room}", {"owner": "member"}),
    "name_managers": Op("PUT", "/rooms/{room}", {"managers": ["member"]}),
    "delete": Op("DELETE", "/rooms/{room}"),
    "join": Op("POST", "/rooms/{room}/join", {"systemMessage": False}, acting=True),
    "join_closed": Op(
        "POST", "/rooms/{room}/join", {"systemMessage": False}, acting=True, closed=True
    ),
    "add_members": Op("POST", "/rooms/{room}/members", {"invitees": ["newcomer"]}),
    "add_member_legacy": Op("POST", "/rooms/{room}/members/newcomer"),
    "kick": Op("POST", "/rooms/{room}/delete/members", {"members": ["target"]}),
    "kick_owner": Op("POST", "/rooms/{room}/delete/members", {"members": ["owner"]}),
    "leave": Op("POST", "/rooms/{room}/delete/members", {"members": ["{me}"]}),
    "grant_role": Op("PUT", "/rooms/{room}/member/member", {"property": "role", "value": "admin"}),
    "own_property": Op("PUT", "/rooms/{room}/member/{me}", {"property": "score", "value": 7}),
    "others_property": Op("PUT", "/rooms/{room}/member/target", {"property": "score", "value": 7}),
    "last_read": Op("PUT", "/rooms/{room}/lastRead", {"message": "{message}"}, acting=True),
    "create": Op("POST", "/rooms", {"name": "made with the API Key"}),
    "create_taken_id": Op("POST", "/rooms", {"_id": "{room}"}),
    "create_and_join": Op("POST", "/rooms/createAndJoin", {}, acting=True),
    "create_and_join_taken": Op("POST", "/rooms/createAndJoin", {"_id": "{room}"}, acting=True),
}
assert set(OPS) == set(RIGHTS) and all(len(row) == len(ACTORS) for row in RIGHTS.values())


# -- the world: two apps and their users, made once for the whole matrix --------------------


@dataclass
class World:
    app: AppKeys
    other: AppKeys
    clients: dict[str, httpx.Client] = field(default_factory=dict)

    def client(self, actor: str, *, acting: bool) -> httpx.Client:
        if actor in ("admin", "stranger_admin") and acting:
            return self.clients[actor + "+acting"]
        return self.clients[actor]

    def view(self, room_id: str) -> dict[str, Any] | None:
        """The room as the API Key sees it; None once it is gone."""
        response = self.clients["admin"].get(f"/rooms/{room_id}")
        if response.status_code == 404:
            assert_error(response, 404, "ROOM_NOT_FOUND")
            return None
        return dict(ok(response))


@pytest.fixture(scope="module")
def world(server: Server) -> Iterator[World]:
    app, other = server.new_app("matrix"), server.new_app("matrix-other")
    world = World(app, other)
    try:
        for keys, users in ((app, ROOM_MEMBERS + OTHER_USERS), (other, ("stranger",))):
            admin_headers = {"IM-API-KEY": keys.api_key}
            with server.client(**admin_headers) as admin:
                tokens = {u: issue_token(admin, u, nickname=u.title()) for u in users}
            for user, token in tokens.items():
                if user in ("target", "acting", "newcomer"):
                    continue  # never a caller
                headers = {"IM-CLIENT-KEY": keys.client_key, "IM-Authorization": token}
                world.clients[user] = server.client(**headers)
                if user == "member":
                    world.clients[SPOOFER] = server.client(**headers, **{"IM-CLIENT-ID": "owner"})
            name = "admin" if keys is app else "stranger_admin"
            acting = "acting" if keys is app else "stranger"
            world.clients[name] = server.client(**admin_headers)
            world.clients[name + "+acting"] = server.client(
                **admin_headers, **{"IM-CLIENT-ID": acting}
            )
        yield world
    finally:
        for client in world.clients.values():
            client.close()


def make_room(world: World, *, closed: bool) -> dict[str, Any]:
    """A fresh room: the owner created it with four members, named "manager" a manager
    and granted "role_admin" the admin role (whose system message is the last message)."""
    owner = world.clients["owner"]
    invitees = [m for m in ROOM_MEMBERS if m != "owner"]
    room = ok(
        owner.post(
            "/rooms/createAndJoin",
            json={"name": "matrix", "invitee": invitees, "roomTags": ["matrix"]},
        )
    )
    room_id = room["_id"]
    change: dict[str, Any] = {"managers": ["manager"]}
    if closed:
        change["opening"] = 0
    ok(owner.put(f"/rooms/{room_id}", json=change))
    room = ok(
        owner.put(
            f"/rooms/{room_id}/member/role_admin", json={"property": "role", "value": "admin"}
        )
    )
    assert room["managers"] == ["manager"] and room["lastMessage"]["messageType"] == "assignAdmin"
    return dict(room)


def snapshot(world: World, room_id: str) -> dict[str, Any]:
    """Everything a refused request must not change, as the owner sees it."""
    room = ok(world.clients["owner"].get(f"/rooms/{room_id}"))
    kept = ["name", "owner", "managers", "status", "opening", "roomTags", "description"]
    kept += ["memberProperties", "updatedAtMS"]
    return {
        **{key: room[key] for key in kept},
        "members": [m["_id"] for m in room["members"]],
        "lastMessage": room["lastMessage"]["_id"],
    }


# -- one cell -------------------------------------------------------------------------------


def fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, text in values.items():
            value = value.replace("{" + name + "}", text)
        return value
    if isinstance(value, list):
        return [fill(v, values) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, values) for k, v in value.items()}
    return value


def send(client: httpx.Client, op: Op, values: dict[str, str]) -> httpx.Response:
    body = fill(op.body, values)
    return client.request(op.method, fill(op.path, values), json=body)


def without_ids(response: httpx.Response, *ids: str) -> tuple[int, str, Any]:
    text = response.text
    for room_id in ids:
        text = text.replace(room_id, "<room>")
    return response.status_code, response.headers.get("content-type", ""), json.loads(text)


@dataclass
class Cell:
    world: World
    op_name: str
    actor: str
    room: dict[str, Any]
    result: Any

    @property
    def room_id(self) -> str:
        return str(self.room["_id"])

    @property
    def me(self) -> str:
        return USER_OF.get(self.actor, self.actor)

    def view(self) -> dict[str, Any] | None:
        return self.world.view(self.room_id)

    def own_app(self) -> str:
        return self.world.other.id if self.actor.startswith("stranger") else self.world.app.id


def listed(cell: Cell) -> list[str]:
    data = cell.result["data"]
    return [r["_id"] if isinstance(r, dict) else r for r in data]


SUPERUSERS = ("admin", "owner", "manager", "role_admin")
API_KEYS = ("admin", "stranger_admin")


def check_effect(cell: Cell) -> None:
    """What an allowed operation must have done, checked on the room afterwards."""
    name, result, me = cell.op_name, cell.result, cell.me
    if name == "get_room":
        assert result["_id"] == cell.room_id
        assert result["isSuperuser"] == (cell.actor in SUPERUSERS)
    elif name == "exists":
        assert result == {"exists": True}
    elif name == "delete":
        assert result == {"n": 1, "ok": 1}
        assert cell.view() is None
    elif name == "last_read":
        assert result == {"client": me, "lastRead": cell.room["lastMessage"]["_id"], "badge": 0}
    elif name.startswith("create"):
        assert result["appID"] == cell.own_app()
        if name.endswith("taken") or name.endswith("taken_id"):
            assert result["_id"] == cell.room_id  # the same id, in the other app
        if name.startswith("create_and_join"):
            assert me in [m["_id"] for m in result["members"]]
            if cell.actor not in API_KEYS:  # the API Key's rooms: see test_rooms_input.py
                assert result["owner"] == me
    else:
        view = cell.view()
        assert view is not None, "the room is gone"
        members = [m["_id"] for m in view["members"]]
        props = {p["client"]: p for p in view["memberProperties"]}
        changed = {
            "rename": lambda: view["name"] == "renamed",
            "freeze": lambda: view["status"] == 0,
            "reopen": lambda: view["opening"] == 1,
            "hand_over": lambda: view["owner"] == "member",
            "name_managers": lambda: view["managers"] == ["member"],
            "join": lambda: me in members,
            "join_closed": lambda: me in members,
            "add_members": lambda: "newcomer" in members,
            "add_member_legacy": lambda: "newcomer" in members,
            "kick": lambda: "target" not in members,
            "kick_owner": lambda: "owner" not in members and view["owner"] is None,
            "leave": lambda: me not in members,
            "grant_role": lambda: props["member"]["role"] == "admin",
            "own_property": lambda: props[me].get("score") == 7,
            "others_property": lambda: props["target"].get("score") == 7,
        }[name]
        assert changed(), view


def expected_for(op_name: str, actor: str) -> str:
    return RIGHTS[op_name][ACTORS.index("member" if actor == SPOOFER else actor)]


CELLS = [
    pytest.param(op, actor, id=f"{op}-{actor}")
    for op in RIGHTS
    for actor in (*ACTORS, SPOOFER)
    if expected_for(op, actor) != "-"
]


@pytest.mark.parametrize(("op_name", "actor"), CELLS)
def test_rights(world: World, op_name: str, actor: str) -> None:
    op = OPS[op_name]
    expected = expected_for(op_name, actor)
    room = make_room(world, closed=op.closed)
    room_id = room["_id"]
    values = {
        "room": room_id,
        "me": USER_OF.get(actor, actor),
        "message": room["lastMessage"]["_id"],
    }
    client = world.client(actor, acting=op.acting)
    before = snapshot(world, room_id)

    response = send(client, op, values)

    if expected == "hid":
        # The same request about a room id nobody has: the answers must not differ.
        missing = secrets.token_hex(12)
        twin = send(client, op, {**values, "room": missing})
        assert without_ids(response, room_id) == without_ids(twin, missing)
        if op_name == "exists":
            assert ok(response) == {"exists": False}
        else:
            assert_error(response, 404, "ROOM_NOT_FOUND")
    elif expected == "403":
        assert_error(response, 403, "INSUFFICIENT_PERMISSIONS")
    elif expected == "NM":
        assert_error(response, 403, "NOT_ROOM_MEMBER")
    elif expected == "409":
        assert_error(response, 409, "ROOM_EXISTS")
    else:
        cell = Cell(world, op_name, actor, room, ok(response))
        if expected in ("in", "out"):
            assert (room_id in listed(cell)) == (expected == "in"), listed(cell)
        else:
            check_effect(cell)

    if expected in ("hid", "403", "NM", "409") or actor.startswith("stranger"):
        assert snapshot(world, room_id) == before
