"""Hostile or sloppy requests: refused in the contract's error shape, never a 5xx, and
never at the expense of data already stored."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Server, assert_error, ok

ADMIN_ROUTES = ["/admin/clients", "/admin/clients/list"]


def assert_handled(response: httpx.Response) -> None:
    """Not a server error; and a refusal is in the contract's error shape."""
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert_error(response, response.status_code, response.json()["error"])


def raw_request(server: Server, head: bytes, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """Send bytes as they are (httpx would fix them up) and read one response."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < _expected_length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    _headers, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(payload)


def _expected_length(data: bytes) -> int:
    head, sep, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + len(sep) + int(value)
    return 0


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# -- body size ------------------------------------------------------------------------------


@pytest.fixture
def limit(server: Server) -> int:
    return server.settings.max_body_bytes


def test_max_body_is_one_mebibyte(limit: int) -> None:
    assert limit == 1_048_576


def test_body_over_the_limit_with_content_length(admin: httpx.Client, limit: int) -> None:
    body = b'{"_id": "big", "pad": "' + b"x" * limit + b'"}'
    assert_error(admin.post("/admin/clients", content=body), 413, "PAYLOAD_TOO_LARGE")
    assert_error(admin.get("/admin/clients/big"), 404, "CLIENT_NOT_FOUND")


def test_oversized_content_length_is_refused_before_the_body_arrives(
    server: Server, admin: httpx.Client, limit: int
) -> None:
    # Only the headers are sent: the answer must not wait for (or buffer) the body.
    head = (
        f"POST /admin/clients HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"IM-API-KEY: {admin.headers['IM-API-KEY']}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {limit * 100}\r\n\r\n"
    ).encode()
    status, body = raw_request(server, head)
    assert status == 413
    assert body["RC"] == 413 and body["error"] == "PAYLOAD_TOO_LARGE"


def test_chunked_body_over_the_limit(admin: httpx.Client, limit: int) -> None:
    def chunks() -> Iterator[bytes]:  # no length known up front: sent chunked
        yield b'{"_id": "big", "pad": "'
        for _ in range(limit // 65536 + 1):
            yield b"x" * 65536
        yield b'"}'

    response = admin.post("/admin/clients", content=chunks())
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert_error(admin.get("/admin/clients/big"), 404, "CLIENT_NOT_FOUND")


def test_body_of_exactly_the_limit_is_not_refused_for_its_size(
    admin: httpx.Client, limit: int
) -> None:
    body = b'{"_id": "edge"}'
    body += b" " * (limit - len(body))  # whitespace is valid JSON padding
    ok(admin.post("/admin/clients", content=body))

    def chunks() -> Iterator[bytes]:
        yield body[:1000]
        yield body[1000:]

    ok(admin.post("/admin/clients", content=chunks()))


# -- malformed bodies -----------------------------------------------------------------------


@pytest.mark.parametrize("route", ADMIN_ROUTES)
@pytest.mark.parametrize("body", [b"{not json", b'{"_id": "x"', b"", b"\xff\xfe", b"{'_id': 'x'}"])
def test_malformed_json(admin: httpx.Client, route: str, body: bytes) -> None:
    response = admin.post(route, content=body, headers={"Content-Type": "application/json"})
    if body == b"":  # no body is a missing field, not a syntax error
        assert response.status_code == 400, response.text
        assert_error(response, 400, response.json()["error"])
    else:
        assert_error(response, 400, "INVALID_BODY")


def test_malformed_json_on_user_routes(user: httpx.Client, admin: httpx.Client) -> None:
    assert_error(user.post("/me", content=b"{nope"), 400, "INVALID_BODY")
    response = admin.put("/admin/clients/alice/token", content=b"{nope")
    assert_error(response, 400, "INVALID_BODY")


@pytest.mark.parametrize("body", [[], [{"_id": "x"}], "x", 5, None, True])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/clients"),
        ("POST", "/admin/clients/list"),
        ("PUT", "/admin/clients/alice/token"),
        ("DELETE", "/admin/clients/alice/token"),
        ("POST", "/me"),
    ],
)
def test_json_that_is_not_an_object(
    admin: httpx.Client, user_token: str, method: str, path: str, body: Any
) -> None:
    response = admin.request(
        method, path, content=json.dumps(body), headers={"IM-CLIENT-ID": "alice"}
    )
    if body is None and method == "DELETE":  # "null" is no body: revoke all, as documented
        ok(response)
        return
    assert response.status_code == 400, response.text
    assert_error(response, 400, response.json()["error"])


# -- routing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/nope", "/admin", "/admin/clients/a/b", "/me/nothing", "/admin/clients/x/token/y"]
)
def test_unknown_route(server: Server, admin: httpx.Client, path: str) -> None:
    assert_error(admin.get(path), 404, "NOT_FOUND")
    with server.client() as anonymous:
        assert_error(anonymous.post(path, json={}), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", "/me"),
        ("DELETE", "/me"),
        ("PUT", "/admin/clients"),
        ("DELETE", "/admin/clients"),
        ("POST", "/admin/clients/x/token"),
        ("GET", "/admin/clients/x/token"),
    ],
)
def test_wrong_method(admin: httpx.Client, method: str, path: str) -> None:
    response = admin.request(method, path)
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers.get("allow")


@pytest.mark.parametrize("value", ["0", 1, 0, "yes", "true"])
def test_booleans_are_json_booleans(admin: httpx.Client, value: object) -> None:
    # Lax parsing once took these for booleans, against the description's "boolean".
    response = admin.post("/admin/clients", json={"_id": "strict", "issueAccessToken": value})
    assert_error(response, 400, "INVALID_REQUEST")
    response = admin.post("/rooms", json={"_id": "strict", "invitationRequired": value})
    assert_error(response, 400, "INVALID_REQUEST")
    assert_error(admin.get("/rooms/strict"), 404, "ROOM_NOT_FOUND")


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/rooms/ids", "GET"),
        ("/rooms/quitted", "GET"),
        ("/admin/clients/list", "POST"),
        ("/rooms/x/messages/v3", "GET"),
        ("/roomPrefs/group/x", "GET"),
        ("/me", "GET, POST"),
        ("/admin/clients", "GET, POST"),
        ("/rooms/x", "DELETE, GET, PUT"),
        ("/me/pref/x", "DELETE, POST"),
    ],
)
def test_wrong_method_lists_every_method_of_the_path_it_matched(
    admin: httpx.Client, path: str, methods: str
) -> None:
    # Each method of a path is a route of its own (Allow once named only the first), and
    # the path is the one matched, not the /rooms/{room_id} or /admin/clients/{client_id}
    # it also fits.
    response = admin.request("OPTIONS", path)
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == methods


def test_trailing_slash_is_tolerated(user: httpx.Client, admin: httpx.Client) -> None:
    assert ok(user.get("/me/"))["_id"] == "alice"
    assert ok(user.post("/me/", json={"description": "slash"}))["description"] == "slash"
    assert ok(admin.get("/admin/clients/"))["totalCount"] == 1
    ok(admin.post("/admin/clients/", json={"_id": "slashy"}))
    assert ok(admin.get("/admin/clients/slashy/"))["_id"] == "slashy"
    assert ok(admin.post("/admin/clients/list/", json={"data": [{"_id": "s2"}]})) == {"count": 1}


# -- Content-Type ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "text/plain; charset=utf-8",
        "application/octet-stream",
        "image/png",  # Flutter sends the type of the file it last touched
        None,
    ],
)
def test_json_is_json_whatever_the_content_type(
    admin: httpx.Client, user: httpx.Client, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps({"_id": "ct", "nickname": "Typed", "tags": ["a"]}).encode()
    created = ok(admin.post("/admin/clients", content=body, headers=headers))
    assert created["nickname"] == "Typed" and created["tags"] == ["a"]
    me = json.dumps({"description": str(content_type)}).encode()
    assert ok(user.post("/me", content=me, headers=headers))["description"] == str(content_type)


# -- pathological JSON ----------------------------------------------------------------------

# Each builds a body for POST /admin/clients from the id of the user it names.
PATHOLOGICAL: dict[str, Callable[[str], bytes]] = {
    "deep-array-10000": lambda _id: nested(10_000).encode(),
    "deep-object-10000": lambda _id: ('{"a":' * 10_000 + "1" + "}" * 10_000).encode(),
    "deep-field-10000": lambda _id: f'{{"_id": "{_id}", "x": {nested(10_000)}}}'.encode(),
    "deep-field-900": lambda _id: f'{{"_id": "{_id}", "x": {nested(900)}}}'.encode(),
    "deep-field-300": lambda _id: f'{{"_id": "{_id}", "x": {nested(300)}}}'.encode(),
    "huge-int-field": lambda _id: f'{{"_id": "{_id}", "n": {10**30}}}'.encode(),
    "int-past-64-bits": lambda _id: f'{{"_id": "{_id}", "n": {2**64}}}'.encode(),
    "long-int-5000-digits": lambda _id: f'{{"_id": "{_id}", "n": {"9" * 5000}}}'.encode(),
    "float-overflow": lambda _id: f'{{"_id": "{_id}", "n": 1e400}}'.encode(),
    "nan": lambda _id: f'{{"_id": "{_id}", "n": NaN}}'.encode(),
    "huge-int-nickname": lambda _id: f'{{"_id": "{_id}", "nickname": {10**30}}}'.encode(),
    "huge-expiration": lambda _id: (
        f'{{"_id": "{_id}", "token": "t-{_id}", "expirationDate": {10**30}}}'.encode()
    ),
    "far-future-expiration": lambda _id: (
        f'{{"_id": "{_id}", "token": "f-{_id}", "expirationDate": 253402300800000}}'.encode()
    ),
    "nul-in-id": lambda _id: f'{{"_id": "{_id}\\u0000x"}}'.encode(),
    "nul-in-nickname": lambda _id: f'{{"_id": "{_id}", "nickname": "a\\u0000b"}}'.encode(),
    "lone-surrogate": lambda _id: f'{{"_id": "{_id}", "nickname": "\\ud800"}}'.encode(),
    "lone-surrogate-field": lambda _id: f'{{"_id": "{_id}", "\\udfff": 1}}'.encode(),
    "duplicate-keys": lambda _id: f'{{"_id": "{_id}", "_id": "{_id}-2"}}'.encode(),
}


@pytest.mark.parametrize(
    "body", [nested(10_000), '{"a":' * 10_000 + "1" + "}" * 10_000], ids=["array", "object"]
)
@pytest.mark.parametrize("path", ["/admin/clients", "/admin/clients/list", "/me"])
def test_deeply_nested_body_is_an_invalid_body(
    admin: httpx.Client, user_token: str, path: str, body: str
) -> None:
    response = admin.post(path, content=body, headers={"IM-CLIENT-ID": "alice"})
    assert_error(response, 400, "INVALID_BODY")


@pytest.mark.parametrize("name", PATHOLOGICAL)
def test_pathological_json_is_no_server_error(admin: httpx.Client, name: str) -> None:
    response = admin.post("/admin/clients", content=PATHOLOGICAL[name]("patho"))
    assert_handled(response)
    if response.status_code == 200:  # what was accepted can be read back
        read = ok(admin.get(f"/admin/clients/{response.json()['result']['_id']}"))
        presence = ("isSocketConnected", "lastActiveTime", "lastActiveTimeMS")  # read-only
        stored = {k: v for k, v in read.items() if k not in presence}
        assert stored == {k: v for k, v in response.json()["result"].items() if k in stored}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": str(10**30)},
        {"skip": str(10**30)},
        {"limit": "1e400"},
        {"q": '{"_id": ' + str(10**30) + "}"},
        {"q": '{"nickname": {"$gt": 1e400}}'},
        {"q": '{"_id": ' + nested(1500) + "}"},
        {"q": '{"$or": [' * 200 + '{"_id": "a"}' + "]}" * 200},
        {"q": '{"_id": "' + "x" * 5000 + '"}'},
    ],
    ids=["limit", "skip", "limit-float", "q-int", "q-float", "q-deep", "q-deep-or", "q-long"],
)
def test_pathological_query_string_is_no_server_error(
    admin: httpx.Client, params: dict[str, str]
) -> None:
    response = admin.get("/admin/clients", params=params)
    assert_handled(response)
    if response.status_code == 200 and "q" in params:
        assert response.json()["result"]["data"] == []  # no user matches any of these


def test_stored_data_survives_every_bad_request(
    server: Server, admin: httpx.Client, user: httpx.Client, limit: int
) -> None:
    keeper = {"_id": "keeper", "nickname": "Keep", "tags": ["x"], "meta": {"n": 1}}
    before = ok(admin.post("/admin/clients", json=keeper))
    alice = ok(user.get("/me"))
    profile_keys = ["_id", "appID", "nickname", "avatarUrl", "description", "createdAtMS"]
    admin_headers = {"IM-API-KEY": admin.headers["IM-API-KEY"]}
    user_headers = {k: user.headers[k] for k in ("IM-CLIENT-KEY", "IM-Authorization")}
    attacks: list[tuple[dict[str, str], str, str, bytes]] = [
        (admin_headers, "POST", "/admin/clients", b'{"_id": "keeper", "pad": "' + b"x" * limit),
        (admin_headers, "POST", "/admin/clients", b'{"_id": "keeper", "nickname": '),
        (admin_headers, "POST", "/admin/clients", b'[{"_id": "keeper"}]'),
        (admin_headers, "POST", "/admin/clients", b'{"_id": "keeper", "nickname": 5, "tags": 1}'),
        (admin_headers, "POST", "/admin/clients/list", b'{"data": [{"_id": "keeper", "x": 1}, 5]}'),
        (admin_headers, "POST", "/admin/clients", f'{{"_id": "keeper", "t": {2**64}}}'.encode()),
        (admin_headers, "POST", "/admin/clients", f'{{"_id":"keeper","d":{nested(400)}}}'.encode()),
        (user_headers, "POST", "/me", b"{nope"),
        (user_headers, "POST", "/me", b'["nickname", "x"]'),
        (user_headers, "POST", "/me", nested(10_000).encode()),
        (user_headers, "POST", "/me", f'{{"nickname": "x", "t": {2**64}}}'.encode()),
        *[(admin_headers, "POST", "/admin/clients", b("other")) for b in PATHOLOGICAL.values()],
    ]
    for headers, method, path, body in attacks:
        # A fresh connection each: a failed request may take its connection down with it,
        # and this test is about the data, not the connection.
        with server.client(**headers) as c, contextlib.suppress(httpx.TransportError):
            c.request(method, path, content=body)

    after = ok(admin.get("/admin/clients/keeper"))
    assert {k: after[k] for k in keeper} == keeper
    assert after["createdAtMS"] == before["createdAtMS"]
    with server.client(**user_headers) as c:
        now = ok(c.get("/me"))
    assert {k: now[k] for k in profile_keys} == {k: alice[k] for k in profile_keys}
    assert now.keys() == alice.keys()  # no custom field slipped in
