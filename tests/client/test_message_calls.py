"""parley.client's message, history, badge, search and batch calls against the real server."""

from __future__ import annotations

import time

import pytest

from parley.client import AdminClient, Client, ParleyAPIError
from tests.conftest import AppKeys, Server


def test_message_calls(server: Server, app_keys: AppKeys) -> None:
    with AdminClient(server.url, app_keys.api_key) as admin:
        tokens = {u: admin.create_user(u, issue_token=True)["token"] for u in ("kim", "lee")}
        room = admin.create_admin_room(members=["kim", "lee"], owner="kim", roomTags=["ops"])
        room_id = room["_id"]
        posted = admin.send_as(room_id, "lee", "from the backend")
        assert posted["sender"]["_id"] == "lee"
    with (
        Client(server.url, app_keys.client_key, tokens["kim"]) as kim,
        Client(server.url, app_keys.client_key, tokens["lee"]) as lee,
    ):
        sent = kim.send(room_id, "hello there", client_message_id="k-1")
        assert kim.send(room_id, "hello there", client_message_id="k-1")["_id"] == sent["_id"]
        assert lee.badge() == 1 and lee.badge(["ops"]) == 1 and lee.badge(["other"]) == 0
        assert lee.badges_by_tags(["ops"]) == {"totalBadge": 1, "data": {"ops": 1}}
        assert lee.badges_by_tags(["ops"], before="2000-01-01T00:00:00Z")["totalBadge"] == 0
        assert kim.edit(room_id, sent["_id"], message="hello")["message"] == "hello"
        assert kim.react(sent["_id"], "like")["reactionCount"] == 1
        assert kim.pin(sent["_id"])["pinned"] is True
        assert [m["_id"] for m in lee.pinned(room_id)["data"]] == [sent["_id"]]
        page = lee.history(room_id, limit=2)
        assert [m["_id"] for m in page["data"]] == [sent["_id"], posted["_id"]]
        around = lee.messages_around(room_id, sent["_id"], before=1, after=0)
        assert [m["_id"] for m in around["data"]] == [posted["_id"], sent["_id"]]
        assert lee.count_since(room_id, 0) >= 2
        assert lee.recent_messages()["data"][0]["_id"] == sent["_id"]
        assert lee.search("hel")["messages"][0]["messages"] == [sent["_id"]]
        assert lee.hide_for_me(room_id, [posted["_id"]])["messages"] == [posted["_id"]]
        assert [d["message"] for d in lee.hidden_for_me(room_id)["data"]] == [posted["_id"]]
        assert kim.recall(room_id, sent["_id"])["messageType"] == "recall"
        with pytest.raises(ParleyAPIError) as refused:
            lee.delete_message(room_id, sent["_id"])
        assert (refused.value.status, refused.value.error) == (403, "INSUFFICIENT_PERMISSION")
        assert kim.delete_message(room_id)["deletedCount"] >= 2


def test_batch_and_admin_reads(server: Server, app_keys: AppKeys) -> None:
    with AdminClient(server.url, app_keys.api_key) as admin:
        for user in ("mia", "ned"):
            admin.create_user(user)
        queued = admin.send_batch("mia", "Hi $who$", [{"receiver": "ned", "$who$": "Ned"}])
        deadline = time.monotonic() + 10
        while admin.batch(queued["batchID"])["count"] < 1:
            assert time.monotonic() < deadline, "the batch never sent"
            time.sleep(0.05)
        listed = admin.all_messages(limit=10)
        assert any(m["message"] == "Hi Ned" for m in listed["data"])
