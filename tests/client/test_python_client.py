"""parley.client against the real server: the calls work, and every refusal arrives as
one exception type carrying the contract's error code."""

from __future__ import annotations

import pytest

from parley.client import AdminClient, Client, ParleyAPIError
from tests.conftest import AppKeys, Server


def test_backend_creates_user_and_frontend_acts_as_it(server: Server, app_keys: AppKeys) -> None:
    with AdminClient(server.url, app_keys.api_key) as admin:
        created = admin.create_user("erin", nickname="Erin", issue_token=True, team="blue")
        assert created["_id"] == "erin" and created["team"] == "blue"
        assert admin.create_users([{"_id": "frank"}, {"_id": "gina", "nickname": "Gina"}]) == 2
        listed = admin.list_users({"_id": {"$in": ["erin", "gina"]}})
        assert [u["_id"] for u in listed["data"]] == ["erin", "gina"]
        assert admin.get_user("gina")["nickname"] == "Gina"
        assert admin.me("gina")["_id"] == "gina"
    with Client(server.url, app_keys.client_key, created["token"]) as user:
        assert user.me()["nickname"] == "Erin"
        assert user.update_me(nickname="Erin B.")["nickname"] == "Erin B."


def test_bound_token_and_revocation(server: Server, app_keys: AppKeys) -> None:
    with AdminClient(server.url, app_keys.api_key) as admin:
        admin.create_user("hank")
        admin.bind_token("hank", "hank-secret-token", "2099-01-01T00:00:00Z")
        with Client(server.url, app_keys.client_key, "hank-secret-token") as user:
            assert user.me()["_id"] == "hank"
            assert admin.revoke_tokens("hank") == 1
            with pytest.raises(ParleyAPIError) as refused:
                user.me()
    assert (refused.value.status, refused.value.error) == (401, "INVALID_TOKEN")


def test_errors_carry_the_code(server: Server, app_keys: AppKeys) -> None:
    with AdminClient(server.url, "prly_not-a-key") as stranger, pytest.raises(ParleyAPIError) as e:
        stranger.list_users()
    assert e.value.error == "INVALID_API_KEY"
    with AdminClient(server.url, app_keys.api_key) as admin, pytest.raises(ParleyAPIError) as e:
        admin.get_user("nobody")
    assert (e.value.status, e.value.error) == (404, "CLIENT_NOT_FOUND")
    with (
        AdminClient("http://127.0.0.1:9", app_keys.api_key) as down,
        pytest.raises(ParleyAPIError) as e,
    ):
        down.list_users()
    assert e.value.error == "CONNECTION_ERROR"


def test_room_calls(server: Server, app_keys: AppKeys) -> None:
    with AdminClient(server.url, app_keys.api_key) as admin:
        tokens = {u: admin.create_user(u, issue_token=True)["token"] for u in ("ivy", "jon")}
        admin.upsert_group("crew", "Crew", ["jon"])
        assert admin.groups()["totalCount"] == 1
        lobby = admin.create_admin_room("lobby", members=["ivy", "crew"], owner="ivy")
        assert lobby["owner"] == "ivy"
    with (
        Client(server.url, app_keys.client_key, tokens["ivy"]) as ivy,
        Client(server.url, app_keys.client_key, tokens["jon"]) as jon,
    ):
        room = ivy.create_room(name="Plan", invitees=["jon"], invitationRequired=True)
        assert jon.invitations()["totalCount"] == 1
        assert [m["_id"] for m in jon.join_room(room["_id"])["members"]] == ["ivy", "jon"]
        assert ivy.rooms(sort="-createdTime")["data"][0]["_id"] == room["_id"]
        ivy.set_member_property(room["_id"], "jon", "role", "admin")
        assert ivy.update_room(room["_id"], name="Plan B")["name"] == "Plan B"
        assert jon.set_room_pref(room["_id"], tags=["x"])["tags"] == ["x"]
        assert jon.rooms(pref={"tags": "x"})["totalCount"] == 1
        jon.set_pref("theme", {"dark": True})
        assert jon.prefs() == {"theme": {"dark": True}}
        last = ivy.room(room["_id"])["lastMessage"]["_id"]
        assert jon.mark_read(room["_id"], last)["badge"] == 0
        jon.remove_members(room["_id"], ["jon"])
        with pytest.raises(ParleyAPIError) as gone:
            jon.room(room["_id"])
        assert gone.value.error == "NOT_ROOM_MEMBER"
        ivy.delete_room(room["_id"])
        assert "lobby" in [r["_id"] for r in jon.rooms()["data"]]  # through the crew group
    with AdminClient(server.url, app_keys.api_key, acting_as="ivy") as acting:
        assert acting.room("lobby")["isSuperuser"] is True
