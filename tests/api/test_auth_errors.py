"""The contract's auth error table, one row at a time, over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import AppKeys, Server, assert_error, issue_token


def test_no_client_key_on_a_user_route(server: Server, user_token: str) -> None:
    with server.client(**{"IM-Authorization": user_token}) as c:
        assert_error(c.get("/me"), 401, "MISSING_CLIENT_KEY")


@pytest.mark.parametrize(
    "bad_key",
    ["garbage", "a.b.c", "", "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.e30.", "x" * 5000],
    ids=["garbage", "three-dots", "blank", "empty-payload", "oversized"],
)
def test_malformed_client_key(server: Server, user_token: str, bad_key: str) -> None:
    with server.client(**{"IM-CLIENT-KEY": bad_key, "IM-Authorization": user_token}) as c:
        response = c.get("/me")
    if bad_key == "":
        assert_error(response, 401, "MISSING_CLIENT_KEY")  # an empty header is no header
    else:
        assert_error(response, 403, "INVALID_CLIENT_KEY")


def test_revoked_client_key(server: Server, app_keys: AppKeys, user: httpx.Client) -> None:
    assert user.get("/me").status_code == 200
    server.call(lambda s: s.keys.revoke_client_key(app_keys.id))
    assert_error(user.get("/me"), 403, "INVALID_CLIENT_KEY")


def test_client_key_of_a_deleted_app(server: Server, app_keys: AppKeys, user: httpx.Client) -> None:
    server.call(lambda s: s.apps.delete(app_keys.id))
    assert_error(user.get("/me"), 403, "INVALID_CLIENT_KEY")


def test_client_key_on_another_apps_host(
    server: Server, user_token: str, app_keys: AppKeys
) -> None:
    server.new_app("other", domains=["chat.other.example"])
    headers = {
        "IM-CLIENT-KEY": app_keys.client_key,
        "IM-Authorization": user_token,
        "Host": "chat.other.example",
    }
    with server.client(**headers) as c:
        assert_error(c.get("/me"), 403, "CLIENT_KEY_MISMATCH")


def test_client_key_on_its_own_host(server: Server) -> None:
    keys = server.new_app("hosted", domains=["chat.mine.example"])
    with server.client(**{"IM-API-KEY": keys.api_key}) as admin:
        token = issue_token(admin, "bob")
    headers = {
        "IM-CLIENT-KEY": keys.client_key,
        "IM-Authorization": token,
        "Host": "chat.mine.example:443",
    }
    with server.client(**headers) as c:
        assert c.get("/me").json()["result"]["_id"] == "bob"


def test_origin_not_allowed(server: Server) -> None:
    keys = server.new_app("web", origins=["https://app.example.com"])
    with server.client(**{"IM-API-KEY": keys.api_key}) as admin:
        token = issue_token(admin, "carol")
    base = {"IM-CLIENT-KEY": keys.client_key, "IM-Authorization": token}
    with server.client(**base, Origin="https://evil.example.com") as c:
        assert_error(c.get("/me"), 403, "CLIENT_KEY_MISMATCH")
    with server.client(**base, Origin="https://app.example.com") as c:
        assert c.get("/me").status_code == 200
    with server.client(**base) as c:  # not a browser: no Origin to check
        assert c.get("/me").status_code == 200


def test_no_api_key_on_an_admin_route(server: Server) -> None:
    with server.client() as c:
        assert_error(c.get("/admin/clients"), 401, "MISSING_API_KEY")


@pytest.mark.parametrize(
    "bad_key",
    ["nonsense", "prly_" + "A" * 49, "prly_" + "0" * 43 + "000000"],
    ids=["not-a-key", "bad-checksum", "well-formed-unknown"],
)
def test_unknown_api_key(server: Server, bad_key: str) -> None:
    with server.client(**{"IM-API-KEY": bad_key}) as c:
        assert_error(c.get("/admin/clients"), 401, "INVALID_API_KEY")


def test_well_formed_but_unknown_api_key(server: Server) -> None:
    from parley.services.crypto import new_api_key

    with server.client(**{"IM-API-KEY": new_api_key()}) as c:
        assert_error(c.get("/admin/clients"), 401, "INVALID_API_KEY")


def test_revoked_api_key(server: Server, app_keys: AppKeys, admin: httpx.Client) -> None:
    assert admin.get("/admin/clients").status_code == 200
    server.call(lambda s: s.keys.revoke_api_keys(app_keys.id))
    assert_error(admin.get("/admin/clients"), 401, "INVALID_API_KEY")


def test_bad_api_key_is_refused_even_on_a_user_route(
    server: Server, user_token: str, app_keys: AppKeys
) -> None:
    headers = {
        "IM-API-KEY": "nonsense",
        "IM-CLIENT-KEY": app_keys.client_key,
        "IM-Authorization": user_token,
    }
    with server.client(**headers) as c:
        assert_error(c.get("/me"), 401, "INVALID_API_KEY")


@pytest.mark.parametrize("token", [None, "", "not-a-token", "Bearer", "Bearer x", "x" * 5000])
def test_bad_user_token(server: Server, app_keys: AppKeys, token: str | None) -> None:
    headers = {"IM-CLIENT-KEY": app_keys.client_key}
    if token is not None:
        headers["IM-Authorization"] = token
    with server.client(**headers) as c:
        assert_error(c.get("/me"), 401, "INVALID_TOKEN")


def test_expired_assigned_token(server: Server, app_keys: AppKeys, admin: httpx.Client) -> None:
    import time

    from parley.services.clock import iso, now_ms

    expires = now_ms() + 1500
    response = admin.post(
        "/admin/clients",
        json={"_id": "dave", "token": "dave-token-1", "expirationDate": iso(expires)},
    )
    assert response.status_code == 200, response.text
    headers = {"IM-CLIENT-KEY": app_keys.client_key, "IM-Authorization": "dave-token-1"}
    with server.client(**headers) as c:
        assert c.get("/me").status_code == 200
        time.sleep(max(0.0, (expires - now_ms()) / 1000) + 0.1)
        assert_error(c.get("/me"), 401, "INVALID_TOKEN")


def test_revoked_token(user: httpx.Client, admin: httpx.Client) -> None:
    assert user.get("/me").status_code == 200
    assert admin.request("DELETE", "/admin/clients/alice/token").status_code == 200
    assert_error(user.get("/me"), 401, "INVALID_TOKEN")


def test_bearer_prefix_and_legacy_header_names(
    server: Server, app_keys: AppKeys, user_token: str
) -> None:
    headers = {"CLIENT_KEY": app_keys.client_key, "Authorization": f"Bearer {user_token}"}
    with server.client(**headers) as c:
        assert c.get("/me").json()["result"]["_id"] == "alice"
    with server.client(**{"API_KEY": app_keys.api_key}) as c:
        assert c.get("/admin/clients").status_code == 200


def test_client_key_on_an_admin_route(user: httpx.Client) -> None:
    assert_error(user.get("/admin/clients"), 403, "INSUFFICIENT_PERMISSIONS")
    assert_error(
        user.post("/admin/clients", json={"_id": "mallory"}), 403, "INSUFFICIENT_PERMISSIONS"
    )


def test_rate_limit_row(server: Server, app_keys: AppKeys, admin: httpx.Client) -> None:
    server.call(lambda s: s.apps.update(app_keys.id, rate_limit_per_minute=3))
    statuses = [admin.get("/admin/clients").status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    body = assert_error(admin.get("/admin/clients"), 429, "RATE_LIMIT_EXCEEDED")
    assert 1 <= body["retryAfter"] <= 60


def test_auth_is_checked_before_the_body(server: Server) -> None:
    with server.client() as c:
        response = c.post("/admin/clients", content=b"{not json")
    assert_error(response, 401, "MISSING_API_KEY")


def test_revoke_ends_a_rotation_grace_at_once(
    server: Server, app_keys: AppKeys, user_token: str
) -> None:
    """A key rotated out with a grace period leaked: revoking must stop it now."""
    new_key = server.call(lambda s: s.keys.rotate_client_key(app_keys.id, 3600))
    old = {"IM-CLIENT-KEY": app_keys.client_key, "IM-Authorization": user_token}
    new = {"IM-CLIENT-KEY": new_key, "IM-Authorization": user_token}
    with server.client(**old) as old_client, server.client(**new) as new_client:
        assert old_client.get("/me").status_code == 200  # in its grace
        server.call(lambda s: s.keys.revoke_client_key(app_keys.id, rotated_only=True))
        assert_error(old_client.get("/me"), 403, "INVALID_CLIENT_KEY")
        assert new_client.get("/me").status_code == 200  # the live key is untouched
        server.call(lambda s: s.keys.rotate_client_key(app_keys.id, 3600))
        server.call(lambda s: s.keys.revoke_client_key(app_keys.id))
        assert_error(new_client.get("/me"), 403, "INVALID_CLIENT_KEY")  # grace ended too
