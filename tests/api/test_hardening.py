"""Inputs and races that once reached a 500, a stall, or a wrong answer."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from parley.broker.redis import _without_password
from parley.services.auth import Access, Credentials
from tests.conftest import AppKeys, Server, assert_error, issue_token, ok


def test_a_backtracking_regex_does_not_stall_the_server(
    server: Server, admin: httpx.Client
) -> None:
    ok(admin.post("/admin/clients", json={"_id": "long-bio", "description": "a" * 4000}))
    hostile = {"description": {"$regex": "a*a*a*a*a*a*a*a*a*a*a*a*b"}}
    started = time.monotonic()
    result = ok(admin.get("/admin/clients", params={"q": json.dumps(hostile)}))
    assert result["totalCount"] == 0
    assert time.monotonic() - started < 5, "the regex ran in a backtracking engine"
    with server.client() as probe:
        assert probe.get("/health").status_code == 200


def test_concurrent_creation_of_one_user_never_fails_with_500(admin: httpx.Client) -> None:
    def create(_: int) -> int:
        return admin.post("/admin/clients", json={"_id": "racer", "nickname": "R"}).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = set(pool.map(create, range(40)))
    assert statuses <= {200, 409}, statuses
    assert ok(admin.get("/admin/clients/racer"))["nickname"] == "R"


def test_tokens_must_be_sendable_in_a_header(admin: httpx.Client) -> None:
    ok(admin.post("/admin/clients", json={"_id": "erin"}))
    for token in ("tökén-123", " spaced", "tab\there"):
        response = admin.put(
            "/admin/clients/erin/token",
            json={"token": token, "expirationDate": "2099-01-01T00:00:00Z"},
        )
        assert_error(response, 400, "INVALID_REQUEST")
    assert_error(
        admin.put("/admin/clients/erin/token", json={"expirationDate": "2099-01-01"}),
        400,
        "MISSING_PARAMETER",
    )


def test_issued_token_honours_a_given_expiration(admin: httpx.Client) -> None:
    result = ok(
        admin.post(
            "/admin/clients",
            json={"_id": "fay", "issueAccessToken": True, "expirationDate": "2099-01-01T00:00:00Z"},
        )
    )
    assert result["expirationDate"] == "2099-01-01T00:00:00.000Z"
    alone = admin.post("/admin/clients", json={"_id": "fay", "expirationDate": "2099-01-01"})
    assert_error(alone, 400, "INVALID_REQUEST")


def test_users_cannot_set_server_kept_fields_on_themselves(user: httpx.Client) -> None:
    me = ok(
        user.post(
            "/me",
            json={"isRobot": True, "mute": "x", "notificationEnabled": "no", "nickname": "Al"},
        )
    )
    assert (me["isRobot"], me["mute"], me["notificationEnabled"]) == (False, [], True)
    assert me["nickname"] == "Al"


def test_a_trailing_slash_does_not_reach_another_user(admin: httpx.Client) -> None:
    ok(admin.post("/admin/clients", json={"_id": "abc"}))
    assert admin.get("/admin/clients/abc/").status_code == 200
    assert_error(admin.get("/admin/clients/abc%2F"), 404, "NOT_FOUND")  # no such route
    assert_error(admin.post("/admin/clients", json={"_id": "a/b"}), 400, "INVALID_USER_ID")


def test_junk_headers_do_not_grow_the_principal_cache(
    server: Server, app_keys: AppKeys, user_token: str
) -> None:
    auth = server.services.auth

    async def login(acting_user: str) -> None:
        creds = Credentials(
            client_key=app_keys.client_key,
            token=user_token,
            host="127.0.0.1",
            acting_user=acting_user,
        )
        await auth.authenticate(creds, Access.USER)

    async def run_many(_services: object) -> int:
        for n in range(200):
            await login(f"junk-{n}" * 50)
        return sum(1 for key in auth._principals._data if key[1] == user_token)

    assert server.call(run_many) == 1


def test_revoking_one_users_tokens_keeps_other_users_cached(
    server: Server, app_keys: AppKeys, admin: httpx.Client
) -> None:
    tokens = {name: issue_token(admin, name) for name in ("gus", "hal")}
    for token in tokens.values():
        headers = {"IM-CLIENT-KEY": app_keys.client_key, "IM-Authorization": token}
        with server.client(**headers) as c:
            assert c.get("/me").status_code == 200
    cached = server.services.auth._principals._data
    assert any(key[1] == tokens["hal"] for key in cached)
    ok(admin.request("DELETE", "/admin/clients/gus/token"))
    assert not any(key[1] == tokens["gus"] for key in cached)
    assert any(key[1] == tokens["hal"] for key in cached)


def test_redis_passwords_stay_out_of_logs() -> None:
    assert _without_password("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert "s3cret" not in _without_password("redis://user:s3cret@cache/1")
    assert _without_password("redis://cache:6379/0") == "redis://cache:6379/0"
