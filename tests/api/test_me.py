"""The current user (contract §3.2): GET /me and POST /me, over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import AppKeys, Server, assert_error, issue_token, ok


def test_get_me_is_the_callers_own_profile(
    user: httpx.Client, admin: httpx.Client, app_keys: AppKeys
) -> None:
    issue_token(admin, "bob", nickname="Bob")  # another user, to be sure we get alice
    me = ok(user.get("/me"))
    assert me["_id"] == me["id"] == "alice"
    assert me["nickname"] == "Alice"
    assert me["appID"] == app_keys.id
    assert not {"token", "expirationDate"} & me.keys()
    profile = ok(admin.get("/admin/clients/alice"))
    assert {k: me[k] for k in ("nickname", "avatarUrl", "createdAt")} == {
        k: profile[k] for k in ("nickname", "avatarUrl", "createdAt")
    }


def test_identity_comes_from_the_token_not_im_client_id(
    user: httpx.Client, admin: httpx.Client
) -> None:
    # IM-CLIENT-ID is a hint that Flutter sends; only an API Key caller may name a user.
    issue_token(admin, "bob")
    assert ok(user.get("/me", headers={"IM-CLIENT-ID": "bob"}))["_id"] == "alice"
    updated = ok(user.post("/me", json={"nickname": "A."}, headers={"IM-CLIENT-ID": "bob"}))
    assert updated["_id"] == "alice"
    assert ok(admin.get("/admin/clients/bob"))["nickname"] is None


def test_post_me_updates_profile_and_custom_fields(user: httpx.Client, admin: httpx.Client) -> None:
    body = {
        "nickname": "Alice L.",
        "avatarUrl": "https://x/alice.png",
        "description": "hi there",
        "email": "alice@example.com",
        "prefs": {"theme": "dark", "langs": ["en", "fr"]},
    }
    updated = ok(user.post("/me", json=body))
    for result in (updated, ok(user.get("/me")), ok(admin.get("/admin/clients/alice"))):
        assert {k: result[k] for k in body} == body
        assert result["_id"] == "alice"


def test_post_me_is_a_partial_update(user: httpx.Client) -> None:
    ok(user.post("/me", json={"description": "first", "email": "a@x.io"}))
    updated = ok(user.post("/me", json={"avatarUrl": "https://x/a.png"}))
    assert updated["nickname"] == "Alice"  # set by the admin, never sent here
    assert updated["description"] == "first"
    assert updated["email"] == "a@x.io"
    assert updated["avatarUrl"] == "https://x/a.png"


def test_post_me_with_all_three_fields_as_flutter_sends_them(user: httpx.Client) -> None:
    body = {"nickname": "Al", "avatarUrl": "", "description": ""}
    updated = ok(user.post("/me", json=body))
    assert {k: updated[k] for k in body} == body


def test_post_me_cannot_change_id_app_or_tokens(
    server: Server, user: httpx.Client, admin: httpx.Client, app_keys: AppKeys
) -> None:
    other = server.new_app("other")
    before = ok(user.get("/me"))
    updated = ok(
        user.post(
            "/me",
            json={
                "_id": "mallory",
                "id": "mallory",
                "appID": other.id,
                "token": "chosen-by-alice",
                "expirationDate": "2099-01-01T00:00:00.000Z",
                "issueAccessToken": True,
                "createdAt": "2000-01-01T00:00:00.000Z",
                "nickname": "Still Alice",
            },
        )
    )
    assert updated["_id"] == updated["id"] == "alice"
    assert updated["appID"] == app_keys.id
    assert updated["createdAt"] == before["createdAt"]
    assert updated["nickname"] == "Still Alice"
    assert not {"token", "expirationDate", "issueAccessToken"} & updated.keys()
    after = ok(user.get("/me"))  # the old token still works, and nothing else changed
    assert after["_id"] == "alice" and after["appID"] == app_keys.id
    assert not {"token", "expirationDate", "issueAccessToken"} & after.keys()
    # No token was bound or issued, and no user was created under the other id.
    headers = {"IM-CLIENT-KEY": app_keys.client_key, "IM-Authorization": "chosen-by-alice"}
    with server.client(**headers) as c:
        assert_error(c.get("/me"), 401, "INVALID_TOKEN")
    assert_error(admin.get("/admin/clients/mallory"), 404, "CLIENT_NOT_FOUND")
    with server.client(**{"IM-API-KEY": other.api_key}) as other_admin:
        assert ok(other_admin.get("/admin/clients"))["totalCount"] == 0
    assert ok(admin.get("/admin/clients", params={"q": '{"_id":"alice"}'}))["totalCount"] == 1


@pytest.mark.parametrize(
    "body",
    [{"nickname": 5}, {"avatarUrl": ["x"]}, {"description": {"a": 1}}, ["nickname"], "x"],
    ids=["int-nickname", "list-avatar", "object-description", "array-body", "string-body"],
)
def test_post_me_refuses_wrong_types(user: httpx.Client, body: Any) -> None:
    response = user.post("/me", json=body)
    assert response.status_code == 400, response.text
    assert_error(response, 400, response.json()["error"])
    assert ok(user.get("/me"))["nickname"] == "Alice"


def test_post_me_with_an_empty_body_changes_nothing(user: httpx.Client) -> None:
    before = ok(user.get("/me"))
    after = ok(user.post("/me", json={}))
    assert after["nickname"] == before["nickname"] and after["_id"] == "alice"


# -- the API Key acting for a user ------------------------------------------------------


def test_api_key_get_me_needs_im_client_id(admin: httpx.Client, user_token: str) -> None:
    assert_error(admin.get("/me"), 400, "MISSING_PARAMETER")
    assert_error(admin.post("/me", json={"nickname": "x"}), 400, "MISSING_PARAMETER")
    assert_error(admin.get("/me", headers={"IM-CLIENT-ID": ""}), 400, "MISSING_PARAMETER")


def test_api_key_get_me_returns_the_named_user(admin: httpx.Client, user_token: str) -> None:
    issue_token(admin, "bob", nickname="Bob")
    assert ok(admin.get("/me", headers={"IM-CLIENT-ID": "alice"}))["nickname"] == "Alice"
    assert ok(admin.get("/me", headers={"IM-CLIENT-ID": "bob"}))["nickname"] == "Bob"


def test_api_key_post_me_updates_the_named_user(admin: httpx.Client, user_token: str) -> None:
    updated = ok(admin.post("/me", json={"nickname": "Alicia"}, headers={"IM-CLIENT-ID": "alice"}))
    assert updated["_id"] == "alice" and updated["nickname"] == "Alicia"
    assert ok(admin.get("/admin/clients/alice"))["nickname"] == "Alicia"


def test_api_key_me_for_an_unknown_user(admin: httpx.Client) -> None:
    assert_error(admin.get("/me", headers={"IM-CLIENT-ID": "nobody"}), 404, "CLIENT_NOT_FOUND")
    response = admin.post("/me", json={"nickname": "x"}, headers={"IM-CLIENT-ID": "nobody"})
    assert_error(response, 404, "CLIENT_NOT_FOUND")
    # POST /me edits a profile; it does not create one.
    assert_error(admin.get("/admin/clients/nobody"), 404, "CLIENT_NOT_FOUND")
