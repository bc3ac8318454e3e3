"""Users and tokens for the customer's backend (contract §3.1), over real HTTP."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from parley.services import crypto
from parley.services.clock import iso, now_ms
from parley.storage.tables import UserTokenRow
from tests.conftest import AppKeys, Server, assert_error, issue_token, ok

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
WEEK_S = 7 * 86_400
TOKEN_KEYS = {"token", "expirationDate", "expirationDateMS", "issueAccessToken"}

# What a read adds to a user: presence, which writes do not report.
PRESENCE = ("isSocketConnected", "lastActiveTime", "lastActiveTimeMS")


def without_presence(user: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in user.items() if k not in PRESENCE}


def assert_bad_request(response: httpx.Response) -> None:
    """A 400 in the contract's error shape, whichever 400 code names the problem."""
    assert response.status_code == 400, response.text
    assert_error(response, 400, response.json()["error"])


def jwt_payload(token: str) -> dict[str, Any]:
    """Decode the payload by hand, as the web SDKs do."""
    header, payload, _signature = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"typ": "JWT", "alg": "HS256"}
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


@contextmanager
def as_user(server: Server, keys: AppKeys, token: str) -> Iterator[httpx.Client]:
    headers = {"IM-CLIENT-KEY": keys.client_key, "IM-Authorization": token}
    with server.client(**headers) as client:
        yield client


def me_status(server: Server, keys: AppKeys, token: str) -> int:
    with as_user(server, keys, token) as c:
        return c.get("/me").status_code


def user_ids(result: dict[str, Any]) -> list[str]:
    return [u["_id"] for u in result["data"]]


def add_token_row(server: Server, keys: AppKeys, user_id: str, token: str) -> None:
    """A second live token for one user, as later features (per-device logins) create them;
    the API itself replaces a user's tokens on every issue or bind."""

    async def insert(svc: Any) -> None:
        async with svc.db.write() as s:
            s.add(
                UserTokenRow(
                    app_id=keys.id,
                    user_id=user_id,
                    token_hash=crypto.digest(token),
                    issued=False,
                    expires_at=now_ms() + 3_600_000,
                    created_at=now_ms(),
                )
            )

    server.call(insert)


# -- POST /admin/clients: the Client object ------------------------------------------------


def test_upsert_creates_a_client_in_the_contract_shape(
    admin: httpx.Client, app_keys: AppKeys
) -> None:
    before = now_ms()
    client = ok(
        admin.post(
            "/admin/clients",
            json={
                "_id": "u1",
                "nickname": "Una",
                "avatarUrl": "https://x/a.png",
                "description": "d",
            },
        )
    )
    assert client["_id"] == client["id"] == "u1"
    assert client["appID"] == app_keys.id
    assert client["nickname"] == "Una"
    assert client["avatarUrl"] == "https://x/a.png"
    assert client["description"] == "d"
    assert client["lastLoginTimeMS"] == 0  # never logged in
    assert ISO_MS.match(client["createdAt"]) and ISO_MS.match(client["updatedAt"])
    assert before <= client["createdAtMS"] <= now_ms()
    assert client["createdAt"] == iso(client["createdAtMS"])
    # Token fields appear only when a token was issued or bound.
    assert not TOKEN_KEYS & client.keys()


def test_get_one_client_matches_what_upsert_returned(admin: httpx.Client) -> None:
    created = ok(admin.post("/admin/clients", json={"_id": "u2", "nickname": "Two"}))
    got = ok(admin.get("/admin/clients/u2"))
    assert {k: got[k] for k in PRESENCE} == {
        "isSocketConnected": False,
        "lastActiveTime": None,
        "lastActiveTimeMS": 0,
    }
    assert without_presence(got) == created


def test_get_unknown_client(admin: httpx.Client) -> None:
    assert_error(admin.get("/admin/clients/nobody"), 404, "CLIENT_NOT_FOUND")


@pytest.mark.parametrize("user_id", ["user@example.com", "a b", "名字", "1485248560558"])
def test_client_ids_are_opaque_strings(admin: httpx.Client, user_id: str) -> None:
    ok(admin.post("/admin/clients", json={"_id": user_id, "nickname": "n"}))
    assert ok(admin.get(f"/admin/clients/{user_id}"))["_id"] == user_id


def test_custom_fields_are_stored_and_returned_verbatim(admin: httpx.Client) -> None:
    custom = {
        "email": "c@example.com",
        "tags": ["vip", "beta"],
        "meta": {"level": 3, "ok": True, "none": None, "nested": {"a": [1, 2.5]}},
        "score": 1.5,
        "age": 42,
        "isRobot": True,
    }
    created = ok(admin.post("/admin/clients", json={"_id": "c1", **custom}))
    fetched = ok(admin.get("/admin/clients/c1"))
    listed = ok(admin.get("/admin/clients", params={"q": '{"_id":"c1"}'}))["data"][0]
    for result in (created, fetched, listed):
        assert {k: result[k] for k in custom} == custom


def test_upsert_is_a_partial_update(admin: httpx.Client) -> None:
    first = ok(
        admin.post(
            "/admin/clients",
            json={"_id": "p1", "nickname": "Pat", "description": "first", "email": "p@x.io"},
        )
    )
    second = ok(admin.post("/admin/clients", json={"_id": "p1", "avatarUrl": "https://x/p.png"}))
    assert second["nickname"] == "Pat"
    assert second["description"] == "first"
    assert second["email"] == "p@x.io"
    assert second["avatarUrl"] == "https://x/p.png"
    assert second["createdAtMS"] == first["createdAtMS"]
    assert second["updatedAtMS"] >= first["updatedAtMS"]
    # A later custom field joins the earlier ones instead of replacing them.
    third = ok(admin.post("/admin/clients", json={"_id": "p1", "phone": "123"}))
    assert third["email"] == "p@x.io" and third["phone"] == "123"
    assert without_presence(ok(admin.get("/admin/clients/p1"))) == third


def test_reserved_keys_are_not_stored_as_custom_fields(
    admin: httpx.Client, app_keys: AppKeys
) -> None:
    created = ok(
        admin.post(
            "/admin/clients",
            json={
                "_id": "r1",
                "id": "someone-else",
                "appID": "another-app",
                "createdAt": "1970-01-01T00:00:00.000Z",
                "lastLoginTimeMS": 123,
            },
        )
    )
    fetched = ok(admin.get("/admin/clients/r1"))
    for result in (created, fetched):
        assert result["id"] == "r1"
        assert result["appID"] == app_keys.id
        assert result["createdAt"] != "1970-01-01T00:00:00.000Z"
        assert result["lastLoginTimeMS"] == 0


def test_a_nickname_as_long_as_the_api_accepts_is_stored(admin: httpx.Client) -> None:
    # Nicknames hold 255 characters on every database; one more is a clear 400.
    long_name = "n" * 255
    ok(admin.post("/admin/clients", json={"_id": "long", "nickname": long_name}))
    assert ok(admin.get("/admin/clients/long"))["nickname"] == long_name
    too_long = admin.post("/admin/clients", json={"_id": "long", "nickname": "n" * 256})
    assert_error(too_long, 400, "INVALID_REQUEST")
    assert ok(admin.get("/admin/clients/long"))["nickname"] == long_name


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"nickname": "no id"},
        {"_id": None},
        {"_id": ""},
        {"_id": 123},
        {"_id": ["a"]},
        {"_id": "x" * 256},
        {"_id": "t", "nickname": 5},
        {"_id": "t", "avatarUrl": {"url": "x"}},
        {"_id": "t", "description": ["d"]},
        {"_id": "t", "issueAccessToken": "maybe"},
        {"_id": "t", "issueAccessToken": [True]},
        {"_id": "t", "token": ""},
        {"_id": "t", "token": 42},
        {"_id": "t", "token": "abc", "issueAccessToken": True},
        {"_id": "t", "token": "abc", "expirationDate": "not a date"},
        {"_id": "t", "token": "abc", "expirationDate": "2001-01-01T00:00:00Z"},
        {"_id": "t", "token": "abc", "expirationDate": True},
    ],
    ids=lambda body: json.dumps(body)[:60],
)
def test_upsert_refuses_a_bad_body(admin: httpx.Client, body: dict[str, Any]) -> None:
    assert_bad_request(admin.post("/admin/clients", json=body))
    assert_error(admin.get("/admin/clients/t"), 404, "CLIENT_NOT_FOUND")  # nothing half-made


# -- issued tokens ----------------------------------------------------------------------


def test_issued_token_is_a_jwt_carrying_the_user_id_for_seven_days(
    server: Server, admin: httpx.Client, app_keys: AppKeys
) -> None:
    before = now_ms()
    result = ok(
        admin.post(
            "/admin/clients",
            json={
                "_id": "jo",
                "nickname": "Jo",
                "avatarUrl": "https://x/jo.png",
                "issueAccessToken": True,
            },
        )
    )
    payload = jwt_payload(result["token"])
    assert payload["id"] == "jo"
    assert payload["nickname"] == "Jo" and payload["avatarUrl"] == "https://x/jo.png"
    assert payload["exp"] - payload["iat"] == WEEK_S
    assert before // 1000 - 1 <= payload["iat"] <= now_ms() // 1000 + 1
    assert result["expirationDateMS"] // 1000 == payload["exp"]
    assert result["expirationDate"] == iso(result["expirationDateMS"])
    assert result["_id"] == "jo" and result["nickname"] == "Jo"
    # The profile itself never shows the token afterwards.
    assert not TOKEN_KEYS & ok(admin.get("/admin/clients/jo")).keys()
    with as_user(server, app_keys, result["token"]) as c:
        assert ok(c.get("/me"))["_id"] == "jo"


def test_reissuing_invalidates_the_previous_token(
    server: Server, admin: httpx.Client, app_keys: AppKeys
) -> None:
    first = issue_token(admin, "ray")
    assert me_status(server, app_keys, first) == 200  # now verified and cached
    second = issue_token(admin, "ray")
    assert second != first
    assert me_status(server, app_keys, second) == 200
    with as_user(server, app_keys, first) as c:
        assert_error(c.get("/me"), 401, "INVALID_TOKEN")


# -- assigned tokens: POST /admin/clients with token -----------------------------------------


def test_assigned_token_with_expiration_works(
    server: Server, admin: httpx.Client, app_keys: AppKeys
) -> None:
    expires = now_ms() + 3_600_000
    result = ok(
        admin.post(
            "/admin/clients",
            json={"_id": "amy", "token": "amy-token-1", "expirationDate": iso(expires)},
        )
    )
    assert result["token"] == "amy-token-1"
    assert result["expirationDate"] == iso(expires)
    assert result["expirationDateMS"] == expires
    with as_user(server, app_keys, "amy-token-1") as c:
        assert ok(c.get("/me"))["_id"] == "amy"


def test_assigned_token_expires(server: Server, admin: httpx.Client, app_keys: AppKeys) -> None:
    expires = now_ms() + 1500
    ok(
        admin.post(
            "/admin/clients", json={"_id": "eve", "token": "eve-1", "expirationDate": expires}
        )
    )
    with as_user(server, app_keys, "eve-1") as c:
        assert c.get("/me").status_code == 200
        time.sleep(max(0.0, (expires - now_ms()) / 1000) + 0.1)
        assert_error(c.get("/me"), 401, "INVALID_TOKEN")


def test_assigning_another_users_token_conflicts_and_changes_nothing(
    server: Server, admin: httpx.Client, app_keys: AppKeys
) -> None:
    ok(admin.post("/admin/clients", json={"_id": "bob", "token": "shared"}))
    mine = issue_token(admin, "kim", nickname="Kim")
    response = admin.post(
        "/admin/clients", json={"_id": "kim", "nickname": "Changed", "token": "shared"}
    )
    assert_error(response, 409, "TOKEN_CONFLICT")
    # The refused request is undone as a whole: profile and tokens are as before.
    assert ok(admin.get("/admin/clients/kim"))["nickname"] == "Kim"
    assert me_status(server, app_keys, mine) == 200
    with as_user(server, app_keys, "shared") as c:
        assert ok(c.get("/me"))["_id"] == "bob"


# -- PUT /admin/clients/{id}/token ----------------------------------------------------------


def test_bind_token_replaces_old_tokens_at_once(
    server: Server, admin: httpx.Client, app_keys: AppKeys
) -> None:
    old = issue_token(admin, "liz")
    assert me_status(server, app_keys, old) == 200
    expires = now_ms() + 3_600_000
    result = ok(
        admin.put(
            "/admin/clients/liz/token", json={"token": "liz-new", "expirationDate": iso(expires)}
        )
    )
    assert result["token"] == "liz-new"
    assert result["client"] == "liz" and result["_id"] == "liz"
    assert result["expirationDate"] == iso(expires)
    assert result["expirationDateMS"] == expires
    with as_user(server, app_keys, old) as c:
        assert_error(c.get("/me"), 401, "INVALID_TOKEN")
    with as_user(server, app_keys, "liz-new") as c:
        assert ok(c.get("/me"))["_id"] == "liz"


def test_bound_token_expires(server: Server, admin: httpx.Client, app_keys: AppKeys) -> None:
    ok(admin.post("/admin/clients", json={"_id": "max"}))
    expires = now_ms() + 1500
    ok(admin.put("/admin/clients/max/token", json={"token": "max-1", "expirationDate": expires}))
    with as_user(server, app_keys, "max-1") as c:
        assert c.get("/me").status_code == 200
        time.sleep(max(0.0, (expires - now_ms()) / 1000) + 0.1)
        assert_error(c.get("/me"), 401, "INVALID_TOKEN")


def test_bind_token_to_unknown_client(admin: httpx.Client) -> None:
    body = {"token": "t", "expirationDate": iso(now_ms() + 60_000)}
    assert_error(admin.put("/admin/clients/ghost/token", json=body), 404, "CLIENT_NOT_FOUND")


def test_bind_another_users_token_conflicts(
    server: Server, admin: httpx.Client, app_keys: AppKeys
) -> None:
    ok(admin.post("/admin/clients", json={"_id": "bob", "token": "bobs"}))
    mine = issue_token(admin, "ann")
    body = {"token": "bobs", "expirationDate": iso(now_ms() + 60_000)}
    assert_error(admin.put("/admin/clients/ann/token", json=body), 409, "TOKEN_CONFLICT")
    assert me_status(server, app_keys, mine) == 200  # her old token was not dropped
    with as_user(server, app_keys, "bobs") as c:
        assert ok(c.get("/me"))["_id"] == "bob"


def test_rebinding_ones_own_token_is_no_conflict(admin: httpx.Client) -> None:
    ok(admin.post("/admin/clients", json={"_id": "sam"}))
    body = {"token": "sams", "expirationDate": iso(now_ms() + 60_000)}
    ok(admin.put("/admin/clients/sam/token", json=body))
    ok(admin.put("/admin/clients/sam/token", json=body))


@pytest.mark.parametrize(
    "body",
    [
        {"token": "t", "expirationDate": "2001-01-01T00:00:00.000Z"},
        {"token": "t", "expirationDate": 1_000},
        {"token": "t", "expirationDate": "next tuesday"},
        {"token": "t", "expirationDate": "2030-13-45"},
        {"token": "t", "expirationDate": None},
        {"token": "t", "expirationDate": [2030]},
        {"token": "t"},
        {"expirationDate": "2099-01-01T00:00:00Z"},
        {"token": "", "expirationDate": "2099-01-01T00:00:00Z"},
        {"token": 5, "expirationDate": "2099-01-01T00:00:00Z"},
    ],
    ids=lambda body: json.dumps(body),
)
def test_bind_token_refuses_a_bad_body(
    server: Server, admin: httpx.Client, app_keys: AppKeys, body: dict[str, Any]
) -> None:
    old = issue_token(admin, "tia")
    assert_bad_request(admin.put("/admin/clients/tia/token", json=body))
    assert me_status(server, app_keys, old) == 200


# -- DELETE /admin/clients/{id}/token --------------------------------------------------------


def test_revoke_one_token(server: Server, admin: httpx.Client, app_keys: AppKeys) -> None:
    token = issue_token(admin, "ola")
    add_token_row(server, app_keys, "ola", "ola-phone")
    assert me_status(server, app_keys, token) == 200
    result = ok(admin.request("DELETE", "/admin/clients/ola/token", json={"token": token}))
    assert result["success"] is True
    assert result["revokedTokens"] == 1
    [record] = result["data"]
    assert record["client"] == "ola" and "token" not in record  # the secret is not echoed
    with as_user(server, app_keys, token) as c:
        assert_error(c.get("/me"), 401, "INVALID_TOKEN")
    assert me_status(server, app_keys, "ola-phone") == 200  # the other token lives on


def test_revoke_all_tokens(server: Server, admin: httpx.Client, app_keys: AppKeys) -> None:
    token = issue_token(admin, "pia")
    add_token_row(server, app_keys, "pia", "pia-phone")
    assert me_status(server, app_keys, token) == 200
    assert me_status(server, app_keys, "pia-phone") == 200
    result = ok(admin.request("DELETE", "/admin/clients/pia/token"))
    assert result["success"] is True
    assert result["revokedTokens"] == 2
    assert len(result["data"]) == 2
    for t in (token, "pia-phone"):
        with as_user(server, app_keys, t) as c:
            assert_error(c.get("/me"), 401, "INVALID_TOKEN")
    # Nothing left: revoking all again revokes none and still succeeds.
    assert ok(admin.request("DELETE", "/admin/clients/pia/token"))["revokedTokens"] == 0


def test_revoke_tokens_of_unknown_client(admin: httpx.Client) -> None:
    assert_error(admin.request("DELETE", "/admin/clients/ghost/token"), 404, "CLIENT_NOT_FOUND")
    response = admin.request("DELETE", "/admin/clients/ghost/token", json={"token": "x"})
    assert_error(response, 404, "CLIENT_NOT_FOUND")


def test_revoke_a_token_the_client_does_not_have(
    server: Server, admin: httpx.Client, app_keys: AppKeys
) -> None:
    mine = issue_token(admin, "uma")
    bobs = issue_token(admin, "bob")
    for token in ("never-issued", bobs):
        response = admin.request("DELETE", "/admin/clients/uma/token", json={"token": token})
        assert_error(response, 404, "TOKEN_NOT_FOUND")
    assert me_status(server, app_keys, mine) == 200
    assert me_status(server, app_keys, bobs) == 200


def test_revoke_with_a_malformed_token_body(admin: httpx.Client) -> None:
    issue_token(admin, "val")
    for body in ({"token": ""}, {"token": 5}, ["x"]):
        assert_bad_request(admin.request("DELETE", "/admin/clients/val/token", json=body))


# -- GET /admin/clients: paging -------------------------------------------------------------


@pytest.fixture
def fifty_five(admin: httpx.Client) -> list[str]:
    ids = [f"u{i:03}" for i in range(55)]
    result = ok(admin.post("/admin/clients/list", json={"data": [{"_id": i} for i in ids]}))
    assert result == {"count": 55}
    return ids


def test_list_pages_by_default_fifty(admin: httpx.Client, fifty_five: list[str]) -> None:
    result = ok(admin.get("/admin/clients"))
    assert result["totalCount"] == 55
    assert user_ids(result) == fifty_five[:50]  # in _id order, stable across pages
    for client in result["data"]:
        assert not TOKEN_KEYS & client.keys()


def test_list_limit_and_skip(admin: httpx.Client, fifty_five: list[str]) -> None:
    result = ok(admin.get("/admin/clients", params={"limit": 10, "skip": 50}))
    assert result["totalCount"] == 55
    assert user_ids(result) == fifty_five[50:]
    assert user_ids(ok(admin.get("/admin/clients", params={"limit": 3, "skip": 2}))) == [
        "u002",
        "u003",
        "u004",
    ]
    assert len(ok(admin.get("/admin/clients", params={"limit": 100}))["data"]) == 55
    assert ok(admin.get("/admin/clients", params={"skip": 55}))["data"] == []


def test_list_limit_over_one_hundred(admin: httpx.Client) -> None:
    assert_error(admin.get("/admin/clients", params={"limit": 101}), 413, "RESULT_TOO_LARGE")


@pytest.mark.parametrize("params", [{"limit": -1}, {"skip": -1}, {"limit": "ten"}])
def test_list_bad_paging(admin: httpx.Client, params: dict[str, Any]) -> None:
    assert_bad_request(admin.get("/admin/clients", params=params))


# -- GET /admin/clients: the q filter -------------------------------------------------------


@pytest.fixture
def people(admin: httpx.Client) -> None:
    data = [
        {"_id": "alice", "nickname": "Alice"},
        {"_id": "bob", "nickname": "Bob"},
        {"_id": "carol", "nickname": "carol"},
        {"_id": "dave"},  # no nickname at all
    ]
    assert ok(admin.post("/admin/clients/list", json={"data": data})) == {"count": 4}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ({}, ["alice", "bob", "carol", "dave"]),
        ({"_id": "bob"}, ["bob"]),
        ({"_id": "nobody"}, []),
        ({"nickname": "Alice"}, ["alice"]),
        ({"nickname": "alice"}, []),  # equality is exact
        ({"_id": {"$in": ["alice", "carol", "zed"]}}, ["alice", "carol"]),
        ({"_id": {"$in": []}}, []),
        ({"_id": {"$nin": ["alice", "bob"]}}, ["carol", "dave"]),
        ({"nickname": {"$ne": "Bob"}}, ["alice", "carol", "dave"]),  # Mongo: missing ≠ "Bob"
        ({"nickname": {"$regex": "^[ac]"}}, ["carol"]),
        ({"nickname": {"$regex": "^[ac]", "$options": "i"}}, ["alice", "carol"]),
        ({"nickname": {"$regex": "O"}}, []),
        ({"nickname": {"$regex": "O", "$options": "i"}}, ["bob", "carol"]),
        ({"$or": [{"_id": "alice"}, {"nickname": "Bob"}]}, ["alice", "bob"]),
        ({"$or": [{"_id": "alice"}], "nickname": "Bob"}, []),  # fields combine with AND
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else None,
)
def test_list_q_filter(
    admin: httpx.Client, people: None, q: dict[str, Any], expected: list[str]
) -> None:
    result = ok(admin.get("/admin/clients", params={"q": json.dumps(q)}))
    assert user_ids(result) == expected
    assert result["totalCount"] == len(expected)


def test_list_q_filter_with_paging(admin: httpx.Client, people: None) -> None:
    q = json.dumps({"_id": {"$ne": "bob"}})
    result = ok(admin.get("/admin/clients", params={"q": q, "limit": 1, "skip": 1}))
    assert result["totalCount"] == 3  # the count is of the filtered set, not the page
    assert user_ids(result) == ["carol"]


@pytest.mark.parametrize(
    "q",
    [
        "{bad json",
        '{"email": "a@b.c"}',
        '{"$where": "1"}',
        '{"nickname": {"$where": "1"}}',
        '{"nickname": {"$foo": "x"}}',
        '{"nickname": {}}',
        '{"nickname": {"$regex": "(a+)+$"}}',
        '{"nickname": {"$regex": "(x|xx)*y"}}',
        '{"nickname": {"$regex": "[unclosed"}}',
        '{"nickname": {"$regex": "a", "$options": "g"}}',
        '{"_id": {"$in": "alice"}}',
        '{"_id": {"a": 1}}',
        '{"$or": []}',
        '{"$or": {"_id": "a"}}',
        "[]",
        '[{"_id": "alice"}]',
        "null",
        "0",
        "1",
        "true",
        "false",
        '"alice"',
    ],
)
def test_list_q_filter_refuses_a_bad_query(admin: httpx.Client, people: None, q: str) -> None:
    assert_error(admin.get("/admin/clients", params={"q": q}), 400, "INVALID_QUERY")


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ({"_id": 5}, []),
        ({"_id": 1.5}, []),
        ({"_id": True}, []),
        ({"_id": 10**30}, []),
        ({"nickname": {"$in": [1, "Bob"]}}, ["bob"]),
        ({"nickname": {"$nin": [0]}}, None),
        ({"nickname": {"$gt": 3}}, None),  # Mongo and SQL order mixed types differently
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else None,
)
def test_list_q_with_a_non_string_value_for_a_string_field(
    admin: httpx.Client, people: None, q: dict[str, Any], expected: list[str] | None
) -> None:
    # No user has such an id; the query either matches nothing or is refused, never a 5xx.
    response = admin.get("/admin/clients", params={"q": json.dumps(q)})
    if response.status_code != 200:
        assert_error(response, 400, "INVALID_QUERY")
    elif expected is not None:
        assert user_ids(response.json()["result"]) == expected


# -- POST /admin/clients/list ----------------------------------------------------------------


def test_batch_upserts_each_client(admin: httpx.Client, app_keys: AppKeys) -> None:
    ok(admin.post("/admin/clients", json={"_id": "b1", "nickname": "Old", "email": "b1@x.io"}))
    data = [{"_id": "b1", "avatarUrl": "https://x/b1.png"}, {"_id": "b2", "nickname": "Bee"}]
    assert ok(admin.post("/admin/clients/list", json={"data": data})) == {"count": 2}
    b1 = ok(admin.get("/admin/clients/b1"))
    assert b1["nickname"] == "Old" and b1["email"] == "b1@x.io"  # partial, as the single upsert
    assert b1["avatarUrl"] == "https://x/b1.png"
    b2 = ok(admin.get("/admin/clients/b2"))
    assert b2["nickname"] == "Bee" and b2["appID"] == app_keys.id


def test_batch_naming_one_client_twice(admin: httpx.Client) -> None:
    data = [{"_id": "twice", "nickname": "First"}, {"_id": "twice", "nickname": "Second"}]
    assert ok(admin.post("/admin/clients/list", json={"data": data}))["count"] == 2
    assert ok(admin.get("/admin/clients/twice"))["nickname"] == "Second"


def test_batch_of_a_thousand_is_accepted(admin: httpx.Client) -> None:
    data = [{"_id": f"k{i:04}"} for i in range(1000)]
    assert ok(admin.post("/admin/clients/list", json={"data": data})) == {"count": 1000}
    assert ok(admin.get("/admin/clients", params={"limit": 1}))["totalCount"] == 1000


def test_batch_over_a_thousand_is_too_large(admin: httpx.Client) -> None:
    data = [{"_id": f"k{i:04}"} for i in range(1001)]
    response = admin.post("/admin/clients/list", json={"data": data})
    assert response.status_code == 413, response.text
    assert_error(response, 413, response.json()["error"])
    assert ok(admin.get("/admin/clients"))["totalCount"] == 0


@pytest.mark.parametrize(
    "item",
    [
        {"_id": "x", "token": "t"},
        {"_id": "x", "issueAccessToken": True},
        {"_id": "x", "token": "t", "expirationDate": "2099-01-01T00:00:00Z"},
    ],
    ids=["token", "issueAccessToken", "token+expiry"],
)
def test_batch_refuses_token_fields(admin: httpx.Client, item: dict[str, Any]) -> None:
    assert_bad_request(admin.post("/admin/clients/list", json={"data": [{"_id": "first"}, item]}))
    # Refused as a whole: not even the valid first item was stored.
    assert_error(admin.get("/admin/clients/first"), 404, "CLIENT_NOT_FOUND")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"data": "x"},
        {"data": {"_id": "x"}},
        {"data": [{"nickname": "no id"}]},
        {"data": [{"_id": ""}]},
        {"data": [{"_id": 7}]},
        {"data": [{"_id": "x", "nickname": 5}]},
        {"data": ["x"]},
        [{"_id": "x"}],
    ],
    ids=lambda body: json.dumps(body),
)
def test_batch_refuses_a_bad_body(admin: httpx.Client, body: Any) -> None:
    assert_bad_request(admin.post("/admin/clients/list", json=body))
    assert ok(admin.get("/admin/clients"))["totalCount"] == 0
