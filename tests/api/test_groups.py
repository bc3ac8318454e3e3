"""User groups: a group id among a room's members gives every group member access."""

from __future__ import annotations

import httpx

from tests.conftest import AppKeys, Server, assert_error, issue_token, ok


def test_group_members_reach_the_groups_rooms(
    server: Server, app_keys: AppKeys, admin: httpx.Client
) -> None:
    tokens = {
        name: issue_token(admin, name, nickname=name.title()) for name in ("ann", "ben", "cat")
    }
    group = ok(
        admin.post(
            "/admin/groups",
            json={"_id": "support", "nickname": "Support", "members": ["ben", "cat"]},
        )
    )
    assert group["members"] == ["ben", "cat"] and group["clientType"] == "group"
    listed = ok(admin.get("/admin/groups"))
    assert [g["_id"] for g in listed["data"]] == ["support"]

    room = ok(
        admin.post(
            "/rooms", json={"_id": "helpdesk", "members": ["ann", "support"], "owner": "ann"}
        )
    )
    shown = {m["_id"]: m for m in room["members"]}
    assert shown["support"]["clientType"] == "group"
    assert [m["_id"] for m in shown["support"]["members"]] == ["ben", "cat"]
    assert shown["ann"]["clientType"] == "user"

    def client(name: str) -> httpx.Client:
        return server.client(
            **{"IM-CLIENT-KEY": app_keys.client_key, "IM-Authorization": tokens[name]}
        )

    with client("ben") as ben:
        assert ok(ben.get("/rooms/helpdesk"))["_id"] == "helpdesk"
        assert [r["_id"] for r in ok(ben.get("/rooms"))["data"]] == ["helpdesk"]
    ok(
        admin.post(
            "/admin/groups", json={"_id": "support", "nickname": "Support", "members": ["ben"]}
        )
    )  # cat leaves the group
    with client("cat") as cat:
        assert_error(cat.get("/rooms/helpdesk"), 403, "NOT_ROOM_MEMBER")
        assert ok(cat.get("/rooms"))["totalCount"] == 0


def test_group_input_errors(admin: httpx.Client, user: httpx.Client) -> None:
    assert_error(admin.post("/admin/groups", json={"_id": "g1"}), 400, "MISSING_PARAMETER")
    assert_error(
        admin.post("/admin/groups", json={"nickname": "G", "members": ["ghost"]}),
        404,
        "CLIENT_NOT_FOUND",
    )
    assert_error(
        admin.post("/admin/groups", json={"_id": "alice", "nickname": "A"}), 409, "USER_EXISTS"
    )
    assert_error(
        user.post("/admin/groups", json={"nickname": "G"}), 403, "INSUFFICIENT_PERMISSIONS"
    )
    assert_error(admin.get("/admin/groups", params={"limit": 101}), 413, "RESULT_TOO_LARGE")
