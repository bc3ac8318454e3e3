"""Files over HTTP (contract §3.14): upload, download, HEAD, metadata, thumbnails, signed
URLs, statistics, and every refusal — through the real server."""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select

from parley.client import Client
from parley.config import Settings
from parley.services.container import Services
from parley.storage.tables import FileRow
from tests.conftest import (
    AppKeys,
    LogCapture,
    Server,
    assert_error,
    issue_token,
    make_settings,
    ok,
)

BUCKET = "chatserver-upload"
SMALL_LIMIT = 100_000


# -- fixtures and helpers ---------------------------------------------------------------------


def user_client(server: Server, keys: AppKeys, token: str) -> httpx.Client:
    return server.client(**{"IM-CLIENT-KEY": keys.client_key, "IM-Authorization": token})


@pytest.fixture
def people(
    server: Server, app_keys: AppKeys, admin: httpx.Client
) -> Iterator[dict[str, httpx.Client]]:
    """alice and bob share the room "team" (tag "support"); carol is in neither room but
    "elsewhere" (tag "sales")."""
    clients = {
        name: user_client(server, app_keys, issue_token(admin, name))
        for name in ("alice", "bob", "carol")
    }
    ok(
        admin.post(
            "/rooms", json={"_id": "team", "members": ["alice", "bob"], "roomTags": ["support"]}
        )
    )
    ok(admin.post("/rooms", json={"_id": "elsewhere", "members": ["carol"], "roomTags": ["sales"]}))
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture(scope="module")
def small(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, log_capture: LogCapture
) -> Iterator[Server]:
    """A second node on the same database with a small upload limit and short-lived
    signed URLs, so limits can be crossed quickly."""
    node = Server(
        make_settings(
            tmp_path_factory.mktemp("small"),
            database_url=settings.effective_database_url,
            max_file_bytes=SMALL_LIMIT,
            signed_url_seconds=3,
        )
    ).start()
    yield node
    node.stop()


def upload(
    client: httpx.Client,
    data: bytes,
    *,
    filename: str = "data.bin",
    content_type: str | None = "application/octet-stream",
    extra: Any = None,
    bucket: str = BUCKET,
) -> httpx.Response:
    file: tuple[Any, ...] = (
        (filename, data) if content_type is None else (filename, data, content_type)
    )
    fields = {} if extra is None else {"extra": extra if isinstance(extra, str) else _json(extra)}
    return client.post(f"/files/{bucket}", files={"file": file}, data=fields)


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def png(width: int, height: int, mode: str = "RGBA") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), (200, 30, 30, 128) if mode == "RGBA" else 100).save(out, "PNG")
    return out.getvalue()


def jpeg(width: int, height: int, orientation: int | None = None) -> bytes:
    image = Image.new("RGB", (width, height), (10, 120, 200))
    out = io.BytesIO()
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    image.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` by ``height`` pixels: a decompression bomb
    as far as anything that trusts the header is concerned."""
    data = png(4, 4)
    ihdr = struct.pack(">II", width, height) + data[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return data[:16] + ihdr + crc + data[33:]


def files_on_disk(server: Server, app_id: str) -> list[str]:
    """The app's files in the server's file store, and any temporary file of an upload."""
    root = server.settings.data_dir / "files"
    found = [*(root / app_id).rglob("*"), *(root / ".tmp").rglob("*")]
    return sorted(str(p.relative_to(root)) for p in found if p.is_file())


def rows_of(server: Server, app_id: str) -> int:
    async def count(services: Services) -> int:
        async with services.db.read() as s:
            return int(
                (
                    await s.execute(
                        select(func.count()).select_from(FileRow).where(FileRow.app_id == app_id)
                    )
                ).scalar_one()
            )

    return server.call(count)


# -- the main flows ---------------------------------------------------------------------------


def test_upload_and_download_round_trip(
    server: Server, app_keys: AppKeys, admin: httpx.Client, people: dict[str, httpx.Client]
) -> None:
    alice, bob = people["alice"], people["bob"]
    data = os.urandom(300_000)
    before = int(time.time() * 1000)
    result = ok(upload(alice, data, filename="report.bin", extra={"roomID": "team", "note": "hi"}))
    file_id = result["_id"]
    assert re.fullmatch(r"[0-9a-f]{24}", file_id)
    assert result["id"] == file_id
    assert result["appID"] == app_keys.id
    assert result["length"] == len(data)
    assert result["chunkSize"] == 261_120
    assert result["md5"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert result["filename"] == "report.bin"
    assert result["mimetype"] == "application/octet-stream"
    assert result["client"] == "alice"
    assert result["bucketName"] == BUCKET
    assert result["extra"] == {"roomID": "team", "note": "hi"}
    assert before <= result["uploadDateMS"] <= int(time.time() * 1000)
    assert result["uploadDate"].endswith("Z")
    assert result["url"] == result["originalUrl"] == f"{server.url}/files/{BUCKET}/{file_id}"
    assert "thumbnailUrl" not in result and "width" not in result

    for reader in (bob, alice, admin):  # a room member, the uploader, the API Key
        response = reader.get(f"/files/{BUCKET}/{file_id}")
        assert response.status_code == 200, response.text
        assert hashlib.md5(response.content, usedforsecurity=False).hexdigest() == result["md5"]
        assert response.content == data
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["content-length"] == str(len(data))
        assert response.headers["etag"] == f'"{result["md5"]}"'
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"] == "sandbox"
        assert response.headers["content-disposition"].startswith("attachment;")
        assert 'filename="report.bin"' in response.headers["content-disposition"]

    ranged = bob.get(f"/files/{BUCKET}/{file_id}", headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == data[10:20]
    cached = bob.get(f"/files/{BUCKET}/{file_id}", headers={"If-None-Match": f'"{result["md5"]}"'})
    assert cached.status_code == 304 and cached.content == b""
    # The bytes sit in the server's data directory under the app and the id, nowhere else.
    assert files_on_disk(server, app_keys.id) == [f"{app_keys.id}/{file_id[-2:]}/{file_id}"]


def test_head_sends_the_headers_without_the_body(people: dict[str, httpx.Client]) -> None:
    alice, bob = people["alice"], people["bob"]
    data = b"%PDF-1.4 not really a pdf"
    result = ok(
        upload(
            alice,
            data,
            filename="Überblick 2024.pdf",
            content_type="application/pdf",
            extra={"roomId": "team"},
        )
    )
    head = bob.head(f"/files/{BUCKET}/{result['_id']}")
    assert head.status_code == 200 and head.content == b""
    h = head.headers
    assert h["content-type"] == "application/pdf"
    assert h["content-length"] == str(len(data))
    assert h["etag"] == f'"{result["md5"]}"'
    assert h["x-imkit-id"] == result["_id"]
    assert h["x-imkit-filename"] == "%C3%9Cberblick%202024.pdf"
    assert h["x-imkit-md5"] == result["md5"]
    assert h["x-imkit-client"] == "alice"
    assert h["x-imkit-bucketName"] == BUCKET
    assert h["x-imkit-extra"] == '{"roomId":"team"}'
    assert h["x-imkit-uploadDate"] == result["uploadDate"]
    assert h["x-imkit-uploadDateMS"] == str(result["uploadDateMS"])
    assert h["x-imkit-chunkSize"] == "261120"
    assert h["x-imkit-appID"] == result["appID"]
    assert h["x-content-type-options"] == "nosniff"
    assert h["content-disposition"].startswith("inline;")
    assert "filename*=UTF-8''%C3%9Cberblick%202024.pdf" in h["content-disposition"]
    get = bob.get(f"/files/{BUCKET}/{result['_id']}")
    for name in ("content-length", "etag", "x-imkit-extra", "content-disposition", "content-type"):
        assert get.headers[name] == h[name]


def test_metadata_is_the_file_object(people: dict[str, httpx.Client]) -> None:
    alice, bob = people["alice"], people["bob"]
    result = ok(
        upload(
            alice,
            png(40, 30),
            filename="pic.png",
            content_type="image/png",
            extra={"roomID": "team"},
        )
    )
    meta = ok(bob.get(f"/files/{BUCKET}/{result['_id']}/metadata"))
    assert meta == result


def test_an_image_gets_its_size_and_a_thumbnail(
    server: Server, people: dict[str, httpx.Client]
) -> None:
    alice, bob = people["alice"], people["bob"]
    result = ok(
        upload(
            alice,
            png(800, 600),
            filename="wide.png",
            content_type="image/png",
            extra={"roomID": "team"},
        )
    )
    assert (result["width"], result["height"]) == (800, 600)
    assert result["mimetype"] == "image/png"
    assert result["thumbnailUrl"] == f"{server.url}/files/{BUCKET}/{result['_id']}/thumbnail"
    original = bob.get(f"/files/{BUCKET}/{result['_id']}")
    assert original.headers["content-disposition"].startswith("inline;")
    thumb = bob.get(f"/files/{BUCKET}/{result['_id']}/thumbnail")
    assert thumb.status_code == 200, thumb.text
    assert thumb.headers["content-type"] == "image/jpeg"
    assert thumb.headers["x-content-type-options"] == "nosniff"
    assert thumb.headers["etag"] != original.headers["etag"]
    with Image.open(io.BytesIO(thumb.content)) as image:
        assert image.format == "JPEG" and image.size == (320, 240)
    assert bob.head(f"/files/{BUCKET}/{result['_id']}/thumbnail").headers["content-length"] == str(
        len(thumb.content)
    )

    # A photo taken sideways (EXIF orientation 6) is as wide as it looks, not as stored.
    turned = ok(
        upload(alice, jpeg(400, 100, orientation=6), filename="p.jpg", content_type="image/jpeg")
    )
    assert (turned["width"], turned["height"]) == (100, 400)
    with Image.open(
        io.BytesIO(alice.get(f"/files/{BUCKET}/{turned['_id']}/thumbnail").content)
    ) as image:
        assert image.size == (80, 320)

    # Sent without a type, an image is still recognised; the stored type is what it is.
    untyped = ok(
        upload(alice, jpeg(50, 50), filename="x.bin", content_type="application/octet-stream")
    )
    assert untyped["mimetype"] == "image/jpeg" and untyped["width"] == 50
    mislabelled = ok(upload(alice, jpeg(60, 20), filename="y.png", content_type="image/png"))
    assert mislabelled["mimetype"] == "image/jpeg"

    # A file that is not an image has no thumbnail.
    plain = ok(upload(alice, b"hello", filename="a.txt", content_type="text/plain"))
    assert "thumbnailUrl" not in plain
    assert_error(alice.get(f"/files/{BUCKET}/{plain['_id']}/thumbnail"), 404, "FILE_NOT_FOUND")


def test_the_flutter_content_type_header_is_tolerated(people: dict[str, httpx.Client]) -> None:
    """The Flutter SDK sends ``Content-Type: <the file's type>`` on the multipart request:
    the boundary is then read from the body's first line."""
    alice = people["alice"]
    data = png(64, 48)
    boundary = "dart-http-boundary-Zx9.q_1"
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="extra"\r\n\r\n'
            '{"roomID":"team"}\r\n'
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="photo.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    for header in ("image/png", "multipart/form-data", "application/octet-stream"):
        result = ok(alice.post(f"/files/{BUCKET}", content=body, headers={"Content-Type": header}))
        assert result["filename"] == "photo.png" and result["width"] == 64
        assert result["extra"] == {"roomID": "team"}
        assert alice.get(f"/files/{BUCKET}/{result['_id']}").content == data
    without_header = httpx.Request("POST", "http://x", content=body).headers
    assert "content-type" not in without_header
    assert ok(alice.post(f"/files/{BUCKET}", content=body))["length"] == len(data)


def test_an_rfc_5987_file_name_wins_over_the_plain_one(people: dict[str, httpx.Client]) -> None:
    body = (
        b'--xyz\r\nContent-Disposition: form-data; name=file; filename="fallback.pdf"; '
        b"filename*=UTF-8''%E5%A0%B1%E5%91%8A.pdf\r\nContent-Type: application/pdf\r\n\r\n"
        b"%PDF-1.7\r\n--xyz--\r\n"
    )
    headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
    result = ok(people["alice"].post(f"/files/{BUCKET}", content=body, headers=headers))
    assert result["filename"] == "報告.pdf" and result["length"] == 8


def test_group_members_read_their_rooms_files(
    server: Server, app_keys: AppKeys, admin: httpx.Client, people: dict[str, httpx.Client]
) -> None:
    ok(admin.post("/admin/groups", json={"_id": "crew", "nickname": "Crew", "members": ["carol"]}))
    ok(admin.post("/rooms", json={"_id": "crewroom", "members": ["alice", "crew"]}))
    result = ok(upload(people["alice"], b"for the crew", extra={"roomID": "crewroom"}))
    assert people["carol"].get(f"/files/{BUCKET}/{result['_id']}").content == b"for the crew"
    assert_error(people["bob"].get(f"/files/{BUCKET}/{result['_id']}"), 404, "FILE_NOT_FOUND")


def test_stats_by_room_tag(admin: httpx.Client, people: dict[str, httpx.Client]) -> None:
    alice, carol = people["alice"], people["carol"]
    ok(
        admin.post(
            "/rooms",
            json={"_id": "both", "members": ["alice", "carol"], "roomTags": ["support", "sales"]},
        )
    )
    ok(upload(alice, b"a" * 100, extra={"roomID": "team"}))  # support
    ok(upload(carol, b"b" * 200, extra={"roomID": "elsewhere"}))  # sales
    ok(upload(alice, b"c" * 300, extra={"roomID": "both"}))  # support and sales
    ok(upload(alice, b"d" * 400))  # no room
    everything = ok(admin.post("/files/stats", json={"tags": ["support", "sales", "none"]}))
    assert everything == {
        "data": {
            "support": {"size": 400, "count": 2},
            "sales": {"size": 500, "count": 2},
            "none": {"size": 0, "count": 0},
        },
        "totalCount": 3,
        "totalSize": 600,
    }
    # A user counts only the files of rooms they are in.
    assert ok(carol.post("/files/stats", json={"tags": ["support", "sales"]})) == {
        "data": {"support": {"size": 300, "count": 1}, "sales": {"size": 500, "count": 2}},
        "totalCount": 2,
        "totalSize": 500,
    }
    assert ok(people["bob"].post("/files/stats", json={"tags": ["sales"]}))["totalCount"] == 0
    # Without tags: every file in reach (the API Key: the whole app).
    assert ok(admin.post("/files/stats", json={}))["totalSize"] == 1000
    assert ok(alice.post("/files/stats", json={}))["totalSize"] == 400  # team and both
    # The time range, ISO or epoch ms.
    past = {
        "tags": ["support"],
        "rangeStart": "2001-01-01T00:00:00Z",
        "rangeEnd": "2001-12-31T00:00:00.000Z",
    }
    assert ok(admin.post("/files/stats", json=past))["data"]["support"] == {"size": 0, "count": 0}
    now = int(time.time() * 1000)
    recent = {"tags": ["support"], "rangeStart": now - 600_000, "rangeEnd": now + 600_000}
    assert ok(admin.post("/files/stats", json=recent))["data"]["support"]["count"] == 2
    assert (
        ok(admin.post("/files/stats", json={"tags": ["support"], "rangeStart": now + 600_000}))[
            "totalCount"
        ]
        == 0
    )
    assert_error(admin.post("/files/stats", json={"tags": "x" * 101}), 400, "INVALID_TAGS")
    assert_error(admin.post("/files/stats", json={"tags": [1, 2]}), 400, "INVALID_TAGS")
    assert_error(
        admin.post("/files/stats", json={"rangeStart": "yesterday"}), 400, "INVALID_REQUEST"
    )


# -- signed URLs ------------------------------------------------------------------------------


def test_a_signed_url_opens_the_file_without_credentials(
    server: Server, people: dict[str, httpx.Client]
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    data = png(500, 500)
    result = ok(
        upload(alice, data, filename="s.png", content_type="image/png", extra={"roomID": "team"})
    )
    path = f"/files/{BUCKET}/{result['_id']}"
    for flag in ("1", "true"):
        url = ok(bob.get(path, params={"signedUrlOnly": flag}))["url"]
        assert url.startswith(f"{server.url}{path}?")
    query = parse_qs(urlsplit(url).query)
    assert set(query) == {"appID", "expires", "signature"}
    assert 3500 < int(query["expires"][0]) - time.time() <= 3601

    with httpx.Client() as browser:  # no IMKIT headers at all, as from <img src>
        response = browser.get(url)
        assert response.status_code == 200, response.text
        assert response.content == data
        assert response.headers["content-security-policy"] == "sandbox"
        assert browser.head(url).headers["content-length"] == str(len(data))
        thumb_url = ok(bob.get(path + "/thumbnail", params={"signedUrlOnly": 1}))["url"]
        assert thumb_url.startswith(f"{server.url}{path}/thumbnail?")
        assert browser.get(thumb_url).headers["content-type"] == "image/jpeg"

        def tampered(**changes: str) -> str:
            q = {k: v[0] for k, v in query.items()} | changes
            return f"{server.url}{path}?{urlencode(q)}"

        sig = query["signature"][0]
        flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
        assert_error(browser.get(tampered(signature=flipped)), 403, "INVALID_SIGNATURE")
        later = str(int(query["expires"][0]) + 3600)
        assert_error(browser.get(tampered(expires=later)), 403, "INVALID_SIGNATURE")
        assert_error(browser.get(tampered(expires="soon")), 403, "INVALID_SIGNATURE")
        assert_error(browser.get(tampered(appID="another-app")), 403, "INVALID_SIGNATURE")
        # The signature is for this file only: not another id, not another bucket.
        other = ok(upload(alice, b"other", extra={"roomID": "team"}))
        assert_error(
            browser.get(f"{server.url}/files/{BUCKET}/{other['_id']}?{urlsplit(url).query}"),
            403,
            "INVALID_SIGNATURE",
        )
        assert_error(
            browser.get(f"{server.url}/files/other-bucket/{result['_id']}?{urlsplit(url).query}"),
            403,
            "INVALID_SIGNATURE",
        )
        # A signed URL cannot mint a fresh one for itself.
        assert_error(browser.get(url + "&signedUrlOnly=1"), 403, "INSUFFICIENT_PERMISSIONS")
        # Nor open the metadata or anything else.
        meta = f"{server.url}{path}/metadata?{urlsplit(url).query}"
        assert_error(browser.get(meta), 401, "MISSING_CLIENT_KEY")

    # Only a caller who may read the file gets a signed URL for it.
    assert_error(carol.get(path, params={"signedUrlOnly": 1}), 404, "FILE_NOT_FOUND")


def test_a_signed_url_expires(small: Server) -> None:
    keys = small.new_app("signed")
    with small.client(**{"IM-API-KEY": keys.api_key}) as admin:
        token = issue_token(admin, "uma")
    with user_client(small, keys, token) as uma:
        result = ok(upload(uma, b"short-lived"))
        url = ok(uma.get(f"/files/{BUCKET}/{result['_id']}", params={"signedUrlOnly": 1}))["url"]
    with httpx.Client() as browser:
        assert browser.get(url).content == b"short-lived"
        deadline = int(parse_qs(urlsplit(url).query)["expires"][0])
        time.sleep(max(0.0, deadline + 1.05 - time.time()))
        assert_error(browser.get(url), 403, "SIGNED_URL_EXPIRED")


# -- refusals ---------------------------------------------------------------------------------


def test_over_the_limit_is_refused_and_leaves_nothing(small: Server) -> None:
    keys = small.new_app("limits")
    with small.client(**{"IM-API-KEY": keys.api_key}) as admin:
        token = issue_token(admin, "uma")
    with user_client(small, keys, token) as uma:
        # One byte over: the body fits the request limit, the file does not.
        assert_error(upload(uma, b"x" * (SMALL_LIMIT + 1)), 413, "FILE_TOO_LARGE")
        assert ok(uma.post("/files/stats", json={}))["totalCount"] == 0  # same connection
    # Far over: refused from Content-Length before the body is read (the request is
    # written by hand: a client still sending when the server closes may see a reset).
    with socket.create_connection(("127.0.0.1", small.port), timeout=10) as raw:
        raw.sendall(
            (
                f"POST /files/{BUCKET} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"IM-CLIENT-KEY: {keys.client_key}\r\nIM-Authorization: {token}\r\n"
                "Content-Type: multipart/form-data; boundary=b\r\n"
                f"Content-Length: {SMALL_LIMIT + 200_000}\r\n\r\n"
            ).encode()
        )
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), head
    assert b'"error":"FILE_TOO_LARGE"' in body
    with user_client(small, keys, token) as uma:
        # Streamed without Content-Length: counted as it arrives.
        boundary = "b0undary"
        head_text = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'
        )

        def streamed() -> Iterator[bytes]:
            yield head_text.encode()
            for _ in range(15):
                yield b"y" * 10_000
            yield f"\r\n--{boundary}--\r\n".encode()

        response = uma.post(
            f"/files/{BUCKET}",
            content=streamed(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert_error(response, 413, "FILE_TOO_LARGE")
        # The body was read to its end: the connection serves the next request.
        assert ok(uma.post("/files/stats", json={}))["totalCount"] == 0
    # A form whose other parts overflow the request allowance is cut off as it streams.
    junk = b'--b\r\nContent-Disposition: form-data; name="junk"\r\n\r\n' + b"j" * 170_000
    with socket.create_connection(("127.0.0.1", small.port), timeout=10) as raw:
        raw.sendall(
            (
                f"POST /files/{BUCKET} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"IM-CLIENT-KEY: {keys.client_key}\r\nIM-Authorization: {token}\r\n"
                "Content-Type: multipart/form-data; boundary=b\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        for start in range(0, len(junk), 10_000):
            piece = junk[start : start + 10_000]
            try:
                raw.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            except OSError:  # the server answered and closed: stop sending
                break
        answer = b""
        while b'"}' not in answer and (chunk := raw.recv(65536)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b'"error":"FILE_TOO_LARGE"' in answer
    assert rows_of(small, keys.id) == 0
    assert files_on_disk(small, keys.id) == []
    with user_client(small, keys, token) as uma:
        exactly = ok(upload(uma, b"z" * SMALL_LIMIT))
        assert exactly["length"] == SMALL_LIMIT
        # Other requests keep the ordinary body limit.
        assert_error(
            uma.post("/files/stats", content=b"[" * (2 * 1024 * 1024)), 413, "PAYLOAD_TOO_LARGE"
        )
    assert rows_of(small, keys.id) == 1


def test_upload_input_errors(
    server: Server, app_keys: AppKeys, people: dict[str, httpx.Client]
) -> None:
    alice = people["alice"]
    assert_error(upload(alice, b""), 400, "EMPTY_FILE")
    assert_error(
        alice.post(f"/files/{BUCKET}", data={"extra": "{}"}, files={"other": ("a", b"x")}),
        400,
        "MISSING_PARAMETER",
    )
    assert_error(alice.post(f"/files/{BUCKET}", json={"file": "not a form"}), 400, "INVALID_BODY")
    assert_error(alice.post(f"/files/{BUCKET}"), 400, "INVALID_BODY")
    assert_error(
        alice.post(
            f"/files/{BUCKET}",
            content=b"--b\r\nno end",
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        ),
        400,
        "INVALID_BODY",
    )
    two_files = [("file", ("a", b"1")), ("file", ("b", b"2"))]
    assert_error(alice.post(f"/files/{BUCKET}", files=two_files), 400, "INVALID_REQUEST")
    for bucket in ("bad bucket", "x" * 101, "semi;colon", "%C3%BC"):
        assert_error(upload(alice, b"data", bucket=bucket), 400, "INVALID_BUCKET")
    assert_error(upload(alice, b"data", extra="{not json"), 400, "INVALID_REQUEST")
    assert_error(upload(alice, b"data", extra="[1, 2]"), 400, "INVALID_REQUEST")
    assert_error(upload(alice, b"data", extra={"roomID": 5}), 400, "INVALID_REQUEST")
    deep = '{"a":' + "[" * 300 + "]" * 300 + "}"
    assert_error(upload(alice, b"data", extra=deep), 400, "INVALID_REQUEST")
    assert_error(upload(alice, b"data", extra='{"a":"\\ud800"}'), 400, "INVALID_REQUEST")
    big = ok(upload(alice, b"data", extra='{"n": 123456789012345678901234567890, "s": "ü"}'))
    assert big["extra"]["s"] == "ü" and ok(alice.get(f"/files/{BUCKET}/{big['_id']}/metadata"))
    assert_error(upload(alice, b"data", extra="x" * 20_000), 413, "PAYLOAD_TOO_LARGE")
    assert_error(upload(alice, b"data", content_type="not a type"), 400, "INVALID_REQUEST")
    # Naming a room needs membership of it.
    assert_error(upload(alice, b"data", extra={"roomID": "elsewhere"}), 403, "NOT_ROOM_MEMBER")
    assert_error(upload(alice, b"data", extra={"roomId": "no-such-room"}), 404, "ROOM_NOT_FOUND")
    assert files_on_disk(server, app_keys.id) == [f"{app_keys.id}/{big['_id'][-2:]}/{big['_id']}"]
    assert rows_of(server, app_keys.id) == 1


@pytest.mark.parametrize(
    ("content_type", "filename"),
    [
        ("text/html", "page.html"),
        ("text/html; charset=utf-8", "page.txt"),
        ("image/svg+xml", "logo.svg"),
        ("application/xhtml+xml", "a.xhtml"),
        ("application/javascript", "app.js"),
        ("text/javascript", "app.js"),
        ("text/xml", "feed.xml"),
        ("application/rss+xml", "feed.rss"),
        (None, "index.html"),  # no type: the name's would be served
    ],
)
def test_types_a_browser_would_run_are_refused(
    server: Server,
    app_keys: AppKeys,
    people: dict[str, httpx.Client],
    content_type: str | None,
    filename: str,
) -> None:
    response = upload(
        people["alice"],
        b"<script>alert(document.cookie)</script>",
        filename=filename,
        content_type=content_type,
    )
    assert_error(response, 400, "UNSUPPORTED_FILE_TYPE")
    assert rows_of(server, app_keys.id) == 0


def test_a_declared_image_must_be_one(
    server: Server, app_keys: AppKeys, people: dict[str, httpx.Client]
) -> None:
    alice = people["alice"]
    assert_error(
        upload(alice, b"MZ\x90\x00 an executable", filename="cat.png", content_type="image/png"),
        400,
        "INVALID_IMAGE",
    )
    truncated = jpeg(300, 300)[:400]
    assert_error(
        upload(alice, truncated, filename="cut.jpg", content_type="image/jpeg"),
        400,
        "INVALID_IMAGE",
    )
    # Decompression bombs: a small file whose header claims a huge image is not decoded.
    assert_error(
        upload(alice, png_claiming(8000, 7000), filename="b.png", content_type="image/png"),
        413,
        "IMAGE_TOO_LARGE",
    )
    assert_error(
        upload(alice, png_claiming(60000, 60000), filename="b.png", content_type="image/png"),
        413,
        "IMAGE_TOO_LARGE",
    )
    assert files_on_disk(server, app_keys.id) == []
    assert rows_of(server, app_keys.id) == 0


def test_a_path_in_the_filename_is_only_a_name(
    server: Server, people: dict[str, httpx.Client]
) -> None:
    alice = people["alice"]
    data_dir: Path = server.settings.data_dir
    for raw, kept in [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("/abs/path/../", "file"),
        ("..", "file"),
        ("x" * 300 + ".jpeg", "x" * 250 + ".jpeg"),
    ]:
        result = ok(upload(alice, b"payload", filename=raw))
        assert result["filename"] == kept
        assert alice.get(f"/files/{BUCKET}/{result['_id']}").content == b"payload"
    assert not list(data_dir.rglob("passwd")) and not list(data_dir.rglob("win.ini"))
    assert not (data_dir.parent / "etc").exists()


def test_who_may_read_a_file(
    server: Server, app_keys: AppKeys, admin: httpx.Client, people: dict[str, httpx.Client]
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    in_room = ok(upload(alice, b"room file", extra={"roomID": "team"}))
    private = ok(upload(alice, b"no room"))
    path = f"/files/{BUCKET}/{in_room['_id']}"
    # Not a member: the file does not exist, as far as carol can tell.
    for suffix in ("", "/metadata"):
        assert_error(carol.get(path + suffix), 404, "FILE_NOT_FOUND")
    assert carol.head(path).status_code == 404
    # Without a room only the uploader and the API Key.
    assert bob.get(f"/files/{BUCKET}/{private['_id']}").status_code == 404
    assert alice.get(f"/files/{BUCKET}/{private['_id']}").content == b"no room"
    assert admin.get(f"/files/{BUCKET}/{private['_id']}").content == b"no room"
    # The wrong bucket, an unknown id, a malformed id.
    assert_error(bob.get(f"/files/other/{in_room['_id']}"), 404, "FILE_NOT_FOUND")
    assert_error(bob.get(f"/files/{BUCKET}/{'0' * 24}"), 404, "FILE_NOT_FOUND")
    assert_error(bob.get(f"/files/{BUCKET}/../../etc/passwd"), 404, "NOT_FOUND")
    assert_error(bob.get(f"/files/{BUCKET}/not-an-id/metadata"), 404, "FILE_NOT_FOUND")
    # No credentials at all.
    with httpx.Client(base_url=server.url) as anonymous:
        assert_error(anonymous.get(path), 401, "MISSING_CLIENT_KEY")
        assert_error(anonymous.get(path + "/metadata"), 401, "MISSING_CLIENT_KEY")
        assert_error(
            anonymous.post(f"/files/{BUCKET}", files={"file": ("a", b"x")}),
            401,
            "MISSING_CLIENT_KEY",
        )
    with server.client(**{"IM-CLIENT-KEY": app_keys.client_key}) as key_only:
        assert_error(key_only.get(path), 401, "INVALID_TOKEN")
    # Another app, even with its API Key, finds nothing.
    other = server.new_app("other")
    with server.client(**{"IM-API-KEY": other.api_key}) as other_admin:
        assert_error(other_admin.get(path), 404, "FILE_NOT_FOUND")
        assert_error(other_admin.get(path + "/metadata"), 404, "FILE_NOT_FOUND")
        assert_error(other_admin.get(path, params={"signedUrlOnly": 1}), 404, "FILE_NOT_FOUND")
        other_token = issue_token(other_admin, "alice")  # the same user id, in another app
    with user_client(server, other, other_token) as other_alice:
        assert_error(other_alice.get(path), 404, "FILE_NOT_FOUND")


def test_python_client(
    server: Server, app_keys: AppKeys, people: dict[str, httpx.Client], admin: httpx.Client
) -> None:
    token = issue_token(admin, "alice")
    with Client(server.url, app_keys.client_key, token) as alice:
        result = alice.upload_file(
            BUCKET,
            b"via the client",
            filename="c.txt",
            mimetype="text/plain",
            extra={"roomID": "team"},
        )
        assert result["length"] == 14 and result["extra"] == {"roomID": "team"}
        assert alice.file_metadata(BUCKET, result["_id"]) == result
        assert alice.download_file(BUCKET, result["_id"]) == b"via the client"
        from parley.client import ParleyAPIError

        with pytest.raises(ParleyAPIError) as raised:
            alice.download_file(BUCKET, "0" * 24)
        assert raised.value.status == 404 and raised.value.error == "FILE_NOT_FOUND"
