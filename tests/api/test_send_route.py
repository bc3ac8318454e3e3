"""``POST /rooms/{id}/message`` is served by a route of its own (DirectRoute): no FastAPI
dependency solving, its body read straight from the ASGI channel, its errors handled by
the app's exception middleware. Whatever it skips, a caller must see what every other
route gives: authorization before the body, the body limit, the contract's errors."""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from tests.conftest import AppKeys, Server, assert_error, ok


def _room(client: httpx.Client) -> str:
    return str(ok(client.post("/rooms/createAndJoin", json={"name": "Route"}))["_id"])


def _history(client: httpx.Client, room_id: str) -> list[str]:
    data = ok(client.get(f"/rooms/{room_id}/messages/v3"))["data"]
    return [m["message"] for m in data]


def test_a_body_in_many_chunks_is_read_whole(people: dict[str, httpx.Client]) -> None:
    alice = people["alice"]
    room_id = _room(alice)
    text = "é" * 20_000

    def chunks() -> Iterator[bytes]:  # no length up front: sent chunked, split in UTF-8
        raw = b'{"messageType": "text", "message": "' + text.encode() + b'"}'
        for start in range(0, len(raw), 999):
            yield raw[start : start + 999]

    sent = ok(alice.post(f"/rooms/{room_id}/message", content=chunks()))
    assert sent["message"] == text
    assert _history(alice, room_id) == [text]


def test_a_chunked_body_over_the_limit_is_refused(
    server: Server, people: dict[str, httpx.Client]
) -> None:
    alice = people["alice"]
    room_id = _room(alice)
    limit = server.settings.max_body_bytes

    def chunks() -> Iterator[bytes]:
        yield b'{"message": "'
        for _ in range(limit // 65536 + 1):
            yield b"x" * 65536
        yield b'"}'

    response = alice.post(f"/rooms/{room_id}/message", content=chunks())
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert _history(alice, room_id) == []


def test_errors_keep_the_contract_shape(people: dict[str, httpx.Client]) -> None:
    alice, carol = people["alice"], people["carol"]
    room_id = _room(alice)
    assert_error(alice.post(f"/rooms/{room_id}/message", content=b"{not json"), 400, "INVALID_BODY")
    assert_error(alice.post(f"/rooms/{room_id}/message", json=["a", "list"]), 400, "INVALID_BODY")
    assert_error(
        carol.post(f"/rooms/{room_id}/message", json={"message": "hi"}), 403, "NOT_ROOM_MEMBER"
    )
    assert_error(
        alice.post("/rooms/no-such-room/message", json={"message": "x"}), 404, "ROOM_NOT_FOUND"
    )
    assert _history(alice, room_id) == []


def test_the_caller_is_authorized_before_the_body_is_read(
    server: Server, app_keys: AppKeys, people: dict[str, httpx.Client]
) -> None:
    room_id = _room(people["alice"])
    with server.client(**{"IM-CLIENT-KEY": app_keys.client_key}) as anonymous:
        # Not JSON at all: an anonymous caller learns only that it is not authorized.
        response = anonymous.post(f"/rooms/{room_id}/message", content=b"{not json")
        assert response.status_code == 401, response.text
        assert response.json()["RC"] == 401
    with server.client(
        **{"IM-CLIENT-KEY": app_keys.client_key, "IM-Authorization": "not-a-token"}
    ) as stranger:
        assert stranger.post(f"/rooms/{room_id}/message", json={"m": 1}).status_code == 401
