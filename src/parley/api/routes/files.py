"""Files: contract §3.14. Uploads are parsed here as a stream (the body is never held
whole); the rules are in parley.services.files.

URLs in results (``url``, ``originalUrl``, ``thumbnailUrl``, a signed ``url``) are
absolute, built from the request's own scheme and Host (X-Forwarded-Host behind a trusted
proxy): browsers put them in ``<img src>`` on the customer's pages, where a relative URL
would resolve against the wrong site.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Request, Response
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, StreamingResponse

from parley.api.deps import AuthorizedRoute, caller_of, services_of
from parley.api.errors import error_response
from parley.api.openapi import File, returns
from parley.api.responses import JSONResponse, ok
from parley.api.schemas import Envelope
from parley.services.errors import InvalidRequest, TooLarge
from parley.services.files import CHUNK_SIZE, file_public, filename_from_disposition
from parley.storage.tables import FileRow

router = APIRouter(
    route_class=AuthorizedRoute, tags=["files"], responses={200: {"model": Envelope}}
)

# What an upload's body may hold beyond the file itself: part headers, ``extra``.
UPLOAD_FORM_BYTES = 64 * 1024
# Headers of GET/HEAD /files/... that browser code may read (CORS exposes them).
FILE_HEADERS = [
    "ETag",
    "Content-Disposition",
    "x-imkit-id",
    "x-imkit-filename",
    "x-imkit-md5",
    "x-imkit-client",
    "x-imkit-bucketName",
    "x-imkit-extra",
    "x-imkit-uploadDate",
    "x-imkit-uploadDateMS",
    "x-imkit-chunkSize",
    "x-imkit-appID",
]
MAX_BOUNDARY = 200  # RFC 2046 says 70; some clients pad theirs
_BOUNDARY = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]{1,200}")
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")
# Shown inline by browsers (and safe so: see the refused types in parley.services.files);
# anything else downloads.
_INLINE = ("image/", "audio/", "video/")
_ENCODE_SAFE = "!~*'()"  # what JavaScript's encodeURIComponent leaves alone


# The upload form as the route parses it (the route reads the body itself).
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        # JSON text of an object: roomID / roomId name the file's room.
                        "extra": {"type": "string"},
                    },
                    "required": ["file"],
                }
            }
        },
    }
}
# The query GET and HEAD of a file read themselves: signedUrlOnly, or a signed URL's own.
SERVE_QUERY: dict[str, Any] = {
    "parameters": [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        for name in ("signedUrlOnly", "appID", "expires", "signature")
    ]
}
# GET and HEAD of a file: its bytes (any type), a signed URL in the envelope with
# signedUrlOnly=1, or 304 for a matching If-None-Match.
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The bytes, or with signedUrlOnly=1 {url} in the envelope",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}},
            "*/*": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    304: {"description": "Not modified (If-None-Match matched the ETag)"},
}


# -- multipart, streamed ------------------------------------------------------------------


class _Part:
    def __init__(
        self, reader: _MultipartReader, name: str, filename: str | None, content_type: str | None
    ) -> None:
        self._reader = reader
        self.name = name
        self.filename = filename
        self.content_type = content_type
        self.done = False

    def chunks(self) -> AsyncIterator[bytes]:
        return self._reader.part_chunks(self)


class _MultipartReader:
    """python-multipart's push parser turned into parts that are pulled one after the
    other: each body chunk is parsed only when the consumer wants more, so at most one
    chunk of the body is in memory at a time."""

    def __init__(self, body: AsyncIterator[bytes], boundary: bytes, head: bytes) -> None:
        self._body = body
        self._head = head
        self._eof = False
        self._events: deque[tuple[str, Any]] = deque()
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}

        def header_field(data: bytes, start: int, end: int) -> None:
            self._header_name += data[start:end]

        def header_value(data: bytes, start: int, end: int) -> None:
            self._header_value += data[start:end]

        def header_end() -> None:
            self._headers[bytes(self._header_name).lower()] = bytes(self._header_value)
            self._header_name.clear()
            self._header_value.clear()

        def headers_finished() -> None:
            self._events.append(("part", self._headers))
            self._headers = {}

        def part_data(data: bytes, start: int, end: int) -> None:
            self._events.append(("data", data[start:end]))

        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_header_field": header_field,
                "on_header_value": header_value,
                "on_header_end": header_end,
                "on_headers_finished": headers_finished,
                "on_part_data": part_data,
                "on_part_end": lambda: self._events.append(("part_end", None)),
                "on_end": lambda: self._events.append(("end", None)),
            },
        )

    async def _next_event(self) -> tuple[str, Any]:
        while not self._events:
            if self._eof:
                raise InvalidRequest("The multipart body ends early", code="INVALID_BODY")
            if self._head:
                chunk, self._head = self._head, b""
            else:
                chunk = await anext(self._body, b"")
                if not chunk:
                    self._eof = True
                    continue
            try:
                self._parser.write(chunk)
            except FormParserError as exc:
                raise InvalidRequest(
                    f"Malformed multipart body: {exc}", code="INVALID_BODY"
                ) from None
        return self._events.popleft()

    async def drain(self) -> bool:
        """Read the rest of the request body (BodyLimit bounds it), so that the response
        can go out on a connection the client is no longer writing to. False when the
        body went past the limit instead."""
        try:
            async for _ in self._body:
                pass
        except HTTPException:
            return False
        return True

    async def parts(self) -> AsyncIterator[_Part]:
        while True:
            kind, value = await self._next_event()
            if kind == "end":
                return
            if kind != "part":
                continue
            part = _part(self, value)
            yield part
            if not part.done:  # the consumer did not read it: skip to the next one
                async for _ in part.chunks():
                    pass

    async def part_chunks(self, part: _Part) -> AsyncIterator[bytes]:
        while not part.done:
            kind, value = await self._next_event()
            if kind == "data":
                yield value
            elif kind == "part_end":
                part.done = True


def _text(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _part(reader: _MultipartReader, headers: dict[bytes, bytes]) -> _Part:
    disposition = headers.get(b"content-disposition", b"")
    _, params = parse_options_header(disposition)
    name = _text(params.get(b"name", b""))
    filename = filename_from_disposition(_text(disposition))
    if filename is None and b"filename" in params:
        filename = _text(params[b"filename"])
    content_type = headers.get(b"content-type")
    return _Part(reader, name, filename, _text(content_type) if content_type else None)


async def _form(request: Request) -> _MultipartReader:
    """The upload's form. The boundary comes from the Content-Type header when that is
    multipart with one; else from the body's first line (``--BOUNDARY``): the Flutter SDK
    sends the file's own type as the request's Content-Type."""
    body = request.stream().__aiter__()
    boundary: bytes | None = None
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("multipart/"):
        boundary = parse_options_header(content_type)[1].get(b"boundary") or None
    head = b""
    if boundary is None:
        while b"\r\n" not in head and len(head) <= MAX_BOUNDARY + 4:
            chunk = await anext(body, None)
            if chunk is None:
                break
            head += chunk
        line = head.split(b"\r\n", 1)[0]
        if not line.startswith(b"--") or b"\r\n" not in head:
            raise InvalidRequest("The body is not multipart/form-data", code="INVALID_BODY")
        boundary = line[2:].rstrip(b" \t")
    if not _BOUNDARY.fullmatch(boundary):
        raise InvalidRequest("The multipart boundary is malformed", code="INVALID_BODY")
    return _MultipartReader(body, boundary, head)


# -- responses ----------------------------------------------------------------------------


def _base_url(request: Request) -> str:
    settings = services_of(request).settings
    host = ""
    if settings.trust_proxy:
        host = request.headers.get("x-forwarded-host", "").split(",")[0].strip()
    host = host or request.headers.get("host", "")
    if not _HOST.fullmatch(host):
        host = f"{settings.host}:{settings.port}"
    return f"{request.url.scheme}://{host}"


def _with_urls(request: Request, row: FileRow) -> dict[str, Any]:
    view = file_public(row)
    url = f"{_base_url(request)}/files/{row.bucket}/{row.id}"
    view["url"] = view["originalUrl"] = url
    if row.has_thumbnail:
        view["thumbnailUrl"] = url + "/thumbnail"
    return view


def _encode(value: str) -> str:
    return quote(value, safe=_ENCODE_SAFE)


def _disposition(row: FileRow) -> str:
    kind = (
        "inline"
        if row.mimetype.startswith(_INLINE) or row.mimetype == "application/pdf"
        else "attachment"
    )
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in row.filename)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{_encode(row.filename)}"


def _headers(row: FileRow, size: int, thumbnail: bool) -> dict[str, str]:
    """What GET and HEAD both send: the IMKIT ``x-imkit-*`` metadata (percent-encoded
    where it may hold any text, as encodeURIComponent would) and the headers that keep a
    browser from treating the bytes as anything but what they are."""
    return {
        "Content-Length": str(size),
        "ETag": f'"{row.md5}-thumbnail"' if thumbnail else f'"{row.md5}"',
        "Content-Disposition": "inline" if thumbnail else _disposition(row),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        # Ids are never reused, so the bytes under a URL never change.
        "Cache-Control": "private, max-age=86400",
        "x-imkit-id": row.id,
        "x-imkit-filename": _encode(row.filename),
        "x-imkit-md5": row.md5,
        "x-imkit-client": _encode(row.uploader or ""),
        "x-imkit-bucketName": row.bucket,
        "x-imkit-extra": json.dumps(row.extra or {}, ensure_ascii=True, separators=(",", ":")),
        "x-imkit-uploadDate": file_public(row)["uploadDate"],
        "x-imkit-uploadDateMS": str(row.created_at),
        "x-imkit-chunkSize": str(CHUNK_SIZE),
        "x-imkit-appID": row.app_id,
    }


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


async def _serve(request: Request, bucket: str, file_id: str, *, thumbnail: bool) -> Response:
    files = services_of(request).files
    caller = caller_of(request)
    if _flag(request.query_params.get("signedUrlOnly")):
        query = await files.signed_query(caller, bucket, file_id)
        path = f"/files/{bucket}/{file_id}" + ("/thumbnail" if thumbnail else "")
        return ok({"url": f"{_base_url(request)}{path}?{query}"})
    row = await files.find(caller, bucket, file_id)
    stored = await files.open(row, thumbnail=thumbnail)
    headers = _headers(row, stored.size, thumbnail)
    media_type = "image/jpeg" if thumbnail else row.mimetype
    if request.headers.get("if-none-match", "") == headers["ETag"]:
        kept = ("ETag", "Cache-Control", "Content-Disposition", "X-Content-Type-Options")
        return Response(status_code=304, headers={k: headers[k] for k in kept})
    if request.method == "HEAD":
        return Response(headers=headers, media_type=media_type)
    if stored.path is not None:  # the OS sends it; Range requests (video seeking) work
        return FileResponse(stored.path, headers=headers, media_type=media_type)
    return StreamingResponse(stored.chunks(), headers=headers, media_type=media_type)


# -- routes -------------------------------------------------------------------------------


@router.post("/files/stats", summary="Count and size of files by room tag and time range")
async def file_stats(
    request: Request, body: Annotated[dict[str, Any] | None, Body()] = None
) -> JSONResponse:
    return ok(await services_of(request).files.stats(caller_of(request), body or {}))


@router.post(
    "/files/{bucket}",
    summary="Upload a file (multipart: file, extra)",
    openapi_extra=UPLOAD_BODY,
    responses=returns(File),
)
async def upload_file(request: Request, bucket: str) -> JSONResponse:
    files = services_of(request).files
    form = await _form(request)
    try:
        row = await files.upload(caller_of(request), bucket, form.parts())
    except TooLarge as exc:
        # A client still sending would see its connection reset instead of this answer:
        # take the rest of the body first (at most the form allowance when the request
        # declared its length), or close if even that overflows.
        headers = None if await form.drain() else {"Connection": "close"}
        return error_response(413, exc.code, exc.message, headers=headers)
    except HTTPException as exc:
        if exc.status_code != 413:
            raise
        # The body itself went past the upload limit (sent without Content-Length).
        message = str(exc.detail)
        return error_response(413, "FILE_TOO_LARGE", message, headers={"Connection": "close"})
    return ok(_with_urls(request, row))


@router.get(
    "/files/{bucket}/{file_id}",
    summary="A file's bytes (signedUrlOnly=1: a URL that opens it without credentials)",
    response_class=Response,
    responses=FILE_RESPONSES,
    openapi_extra=SERVE_QUERY,
)
async def get_file(request: Request, bucket: str, file_id: str) -> Response:
    return await _serve(request, bucket, file_id, thumbnail=False)


@router.head(
    "/files/{bucket}/{file_id}",
    summary="A file's headers",
    response_class=Response,
    responses=FILE_RESPONSES,
    openapi_extra=SERVE_QUERY,
)
async def head_file(request: Request, bucket: str, file_id: str) -> Response:
    return await _serve(request, bucket, file_id, thumbnail=False)


@router.get(
    "/files/{bucket}/{file_id}/thumbnail",
    summary="An image's thumbnail (JPEG, at most 320 px a side)",
    response_class=Response,
    responses=FILE_RESPONSES,
    openapi_extra=SERVE_QUERY,
)
async def get_thumbnail(request: Request, bucket: str, file_id: str) -> Response:
    return await _serve(request, bucket, file_id, thumbnail=True)


@router.head(
    "/files/{bucket}/{file_id}/thumbnail",
    summary="A thumbnail's headers",
    response_class=Response,
    responses=FILE_RESPONSES,
    openapi_extra=SERVE_QUERY,
)
async def head_thumbnail(request: Request, bucket: str, file_id: str) -> Response:
    return await _serve(request, bucket, file_id, thumbnail=True)


@router.get(
    "/files/{bucket}/{file_id}/metadata",
    summary="A file's metadata (File object)",
    responses=returns(File),
)
async def file_metadata(request: Request, bucket: str, file_id: str) -> JSONResponse:
    row = await services_of(request).files.find(caller_of(request), bucket, file_id)
    return ok(_with_urls(request, row))
