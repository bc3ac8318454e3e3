"""Tenant isolation: one application's keys never see or touch another's users."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from parley.services.clock import iso, now_ms
from tests.conftest import AppKeys, Server, assert_error, issue_token, ok


def me(server: Server, keys: AppKeys, token: str) -> httpx.Response:
    headers = {"IM-CLIENT-KEY": keys.client_key, "IM-Authorization": token}
    with server.client(**headers) as c:
        return c.get("/me")


@pytest.fixture
def app_b(server: Server) -> AppKeys:
    return server.new_app("b")


@pytest.fixture
def admin_b(server: Server, app_b: AppKeys) -> Iterator[httpx.Client]:
    with server.client(**{"IM-API-KEY": app_b.api_key}) as client:
        yield client


@pytest.fixture
def bens_token(admin_b: httpx.Client) -> str:
    """App B's user "ben", with a token and a custom field."""
    return issue_token(admin_b, "ben", nickname="Ben of B", email="ben@b.example")


def test_list_shows_only_the_apps_own_users(
    admin: httpx.Client, admin_b: httpx.Client, bens_token: str
) -> None:
    issue_token(admin, "amy")
    listed = ok(admin.get("/admin/clients"))
    assert [u["_id"] for u in listed["data"]] == ["amy"]
    assert listed["totalCount"] == 1
    # Not even a filter that names B's user reaches it.
    for q in ({"_id": "ben"}, {"_id": {"$in": ["ben"]}}, {"nickname": {"$regex": "B"}}):
        assert ok(admin.get("/admin/clients", params={"q": json.dumps(q)}))["totalCount"] == 0
    assert [u["_id"] for u in ok(admin_b.get("/admin/clients"))["data"]] == ["ben"]


def test_get_another_apps_user_is_not_found(admin: httpx.Client, bens_token: str) -> None:
    assert_error(admin.get("/admin/clients/ben"), 404, "CLIENT_NOT_FOUND")


def test_upserting_the_same_id_creates_the_apps_own_user(
    admin: httpx.Client, admin_b: httpx.Client, app_keys: AppKeys, app_b: AppKeys, bens_token: str
) -> None:
    before = ok(admin_b.get("/admin/clients/ben"))
    mine = ok(admin.post("/admin/clients", json={"_id": "ben", "nickname": "Ben of A"}))
    assert mine["appID"] == app_keys.id
    assert mine["nickname"] == "Ben of A"
    assert "email" not in mine  # B's custom fields do not leak into A's user
    assert mine["createdAtMS"] >= before["createdAtMS"]
    after = ok(admin_b.get("/admin/clients/ben"))
    assert after == before
    assert after["appID"] == app_b.id
    # The batch route is scoped the same way.
    data = [{"_id": "ben", "nickname": "Batch A"}]
    assert ok(admin.post("/admin/clients/list", json={"data": data})) == {"count": 1}
    assert ok(admin_b.get("/admin/clients/ben")) == before


def test_revoking_the_same_id_in_another_app_leaves_its_token(
    server: Server, admin: httpx.Client, app_b: AppKeys, bens_token: str
) -> None:
    assert me(server, app_b, bens_token).status_code == 200  # verified and cached
    # A has no "ben" yet: B's user is not A's to touch.
    assert_error(admin.request("DELETE", "/admin/clients/ben/token"), 404, "CLIENT_NOT_FOUND")
    issue_token(admin, "ben")
    assert ok(admin.request("DELETE", "/admin/clients/ben/token"))["revokedTokens"] == 1
    response = admin.request("DELETE", "/admin/clients/ben/token", json={"token": bens_token})
    assert_error(response, 404, "TOKEN_NOT_FOUND")
    assert ok(me(server, app_b, bens_token))["_id"] == "ben"


def test_binding_a_token_in_another_app_leaves_its_user_alone(
    server: Server, admin: httpx.Client, app_keys: AppKeys, app_b: AppKeys, bens_token: str
) -> None:
    body = {"token": "shared-secret", "expirationDate": iso(now_ms() + 60_000)}
    assert_error(admin.put("/admin/clients/ben/token", json=body), 404, "CLIENT_NOT_FOUND")
    # A token string is unique per app: both apps may hold the same one, each for its own
    # user, and neither learns that the other has it.
    with server.client(**{"IM-API-KEY": app_b.api_key}) as admin_b:
        ok(admin_b.put("/admin/clients/ben/token", json=body))
    ok(admin.post("/admin/clients", json={"_id": "amy"}))
    ok(admin.put("/admin/clients/amy/token", json=body))
    assert ok(me(server, app_keys, "shared-secret"))["_id"] == "amy"
    b_user = ok(me(server, app_b, "shared-secret"))
    assert b_user["_id"] == "ben" and b_user["appID"] == app_b.id


def test_client_key_with_another_apps_token(
    server: Server, app_keys: AppKeys, admin: httpx.Client, bens_token: str
) -> None:
    assert_error(me(server, app_keys, bens_token), 401, "INVALID_TOKEN")
    # Not even when app A has a user of the same id.
    issue_token(admin, "ben")
    assert_error(me(server, app_keys, bens_token), 401, "INVALID_TOKEN")


def test_api_key_cannot_act_as_another_apps_user(admin: httpx.Client, bens_token: str) -> None:
    assert_error(admin.get("/me", headers={"IM-CLIENT-ID": "ben"}), 404, "CLIENT_NOT_FOUND")
    response = admin.post("/me", json={"nickname": "x"}, headers={"IM-CLIENT-ID": "ben"})
    assert_error(response, 404, "CLIENT_NOT_FOUND")


def test_same_user_id_in_two_apps_are_distinct_users(
    server: Server,
    admin: httpx.Client,
    admin_b: httpx.Client,
    app_keys: AppKeys,
    app_b: AppKeys,
) -> None:
    token_a = issue_token(admin, "sam", nickname="Sam A")
    token_b = issue_token(admin_b, "sam", nickname="Sam B")
    a = ok(me(server, app_keys, token_a))
    b = ok(me(server, app_b, token_b))
    assert (a["_id"], a["nickname"], a["appID"]) == ("sam", "Sam A", app_keys.id)
    assert (b["_id"], b["nickname"], b["appID"]) == ("sam", "Sam B", app_b.id)
    # Each token belongs to its app alone.
    assert_error(me(server, app_keys, token_b), 401, "INVALID_TOKEN")
    assert_error(me(server, app_b, token_a), 401, "INVALID_TOKEN")
    # A user's own edit stays in its app.
    headers = {"IM-CLIENT-KEY": app_keys.client_key, "IM-Authorization": token_a}
    with server.client(**headers) as c:
        ok(c.post("/me", json={"nickname": "Sam A2", "city": "Oslo"}))
    b_after = ok(admin_b.get("/admin/clients/sam"))
    assert b_after["nickname"] == "Sam B" and "city" not in b_after
    # Reissuing in one app does not end the other app's session.
    issue_token(admin, "sam")
    assert ok(me(server, app_b, token_b))["_id"] == "sam"
    assert_error(me(server, app_keys, token_a), 401, "INVALID_TOKEN")


def test_api_key_of_one_app_lists_nothing_of_a_fresh_app(
    server: Server, admin: httpx.Client
) -> None:
    issue_token(admin, "amy")
    fresh = server.new_app("fresh")
    with server.client(**{"IM-API-KEY": fresh.api_key}) as c:
        assert ok(c.get("/admin/clients")) == {"totalCount": 0, "data": []}
