"""``POST /rooms/{id}/message`` is served beside FastAPI, by a lane of its own
(parley.api.send_lane): no middleware stack, no dependency solving, its body read straight
from the ASGI channel. Whatever it skips, a caller must see what every other route gives:
authorization before the body, the body limit, the contract's errors, the CORS headers,
IMKIT clients' request quirks."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from parley.services.errors import ParleyError, RateLimitExceeded, ServiceUnavailable
from tests.conftest import AppKeys, LogCapture, Server, assert_error, ok

# Headers a response's meaning does not depend on.
VOLATILE = {"date", "content-length", "connection", "server"}


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


@pytest.mark.parametrize("origin", [None, "https://chat.example.com"])
def test_cors_headers_are_those_of_every_other_route(
    people: dict[str, httpx.Client], origin: str | None
) -> None:
    """The send lane against routes FastAPI serves: the same headers (CORS and Vary
    included), for a success and for an error."""
    alice = people["alice"]
    room_id = _room(alice)
    headers = {"Origin": origin} if origin else {}
    lane = alice.post(f"/rooms/{room_id}/message", json={"message": "hi"}, headers=headers)
    stack = alice.post("/rooms/createAndJoin", json={"name": "Other"}, headers=headers)
    assert lane.status_code == stack.status_code == 200
    assert _meaningful(lane.headers) == _meaningful(stack.headers)
    if origin:
        assert lane.headers["access-control-allow-origin"] == "*"
        assert "x-imkit-md5" in lane.headers["access-control-expose-headers"]
    lane_error = alice.post("/rooms/no-such-room/message", json={"m": 1}, headers=headers)
    stack_error = alice.get("/rooms/no-such-room", headers=headers)
    assert lane_error.status_code == stack_error.status_code == 404
    assert _meaningful(lane_error.headers) == _meaningful(stack_error.headers)


def _meaningful(headers: httpx.Headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in VOLATILE}


def test_imkit_request_quirks(people: dict[str, httpx.Client]) -> None:
    """A trailing slash, and JSON under whatever Content-Type the client chose (Flutter
    sends the file's type, curl sends form data); an encoded slash stays part of the id."""
    alice = people["alice"]
    room_id = _room(alice)
    ok(alice.post(f"/rooms/{room_id}/message/", json={"message": "slash"}))
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "image/png", ""):
        ok(
            alice.post(
                f"/rooms/{room_id}/message",
                content=b'{"message": "typed"}',
                headers={"Content-Type": content_type},
            )
        )
    assert _history(alice, room_id) == ["typed"] * 4 + ["slash"]  # newest first
    response = alice.post(f"/rooms/{room_id}/message%2F", json={"message": "x"})
    assert response.status_code == 404
    assert response.json()["RC"] == 404


def test_a_declared_length_over_the_limit_is_refused_unread(
    server: Server, people: dict[str, httpx.Client]
) -> None:
    alice = people["alice"]
    room_id = _room(alice)
    limit = server.settings.max_body_bytes
    body = b'{"message": "' + b"x" * limit + b'"}'
    response = alice.post(f"/rooms/{room_id}/message", content=body)
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert response.headers["connection"] == "close"
    assert _history(alice, room_id) == []


def test_an_unexpected_failure_is_a_contract_500_and_logged(
    server: Server,
    people: dict[str, httpx.Client],
    log_capture: LogCapture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice = people["alice"]
    room_id = _room(alice)

    async def broken(*_args: object) -> None:
        raise RuntimeError("the storage fell over")

    monkeypatch.setattr(server.services.messaging, "send_in_room", broken)
    response = alice.post(f"/rooms/{room_id}/message", json={"message": "x"})
    assert_error(response, 500, "INTERNAL_ERROR")
    assert "the storage fell over" not in response.text
    assert any("unhandled RuntimeError" in line for line in log_capture.lines)


def test_service_errors_keep_their_status_and_headers(
    server: Server, people: dict[str, httpx.Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rate limits and outages raised by the services answer as from every route."""
    alice = people["alice"]
    room_id = _room(alice)
    raised: list[ParleyError] = [
        RateLimitExceeded(retry_after=7),
        ServiceUnavailable("the database is away"),
    ]

    async def failing(*_args: object) -> None:
        raise raised.pop(0)

    monkeypatch.setattr(server.services.messaging, "send_in_room", failing)
    limited = alice.post(f"/rooms/{room_id}/message", json={"message": "x"})
    assert_error(limited, 429, "RATE_LIMIT_EXCEEDED")
    assert limited.headers["retry-after"] == "7"
    assert limited.json()["retryAfter"] == 7
    away = alice.post(f"/rooms/{room_id}/message", json={"message": "x"})
    assert away.status_code == 503
    assert away.headers["retry-after"] == "1"
