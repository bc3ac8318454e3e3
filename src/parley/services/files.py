"""Uploaded files (contract §3.14, §4.8): upload, read, metadata, signed URLs, statistics.

Rules:

| operation                      | who may                                                       |
|--------------------------------|---------------------------------------------------------------|
| upload                         | any user; naming a room (``extra.roomID`` / ``roomId``) needs |
|                                | membership of it (the API Key: only that it exists)           |
| read bytes, thumbnail, metadata| members of the file's room, its uploader, the API Key, and a  |
|                                | request carrying a valid signed URL for that file             |
| make a signed URL              | whoever may read the file, with credentials (not a signed URL)|
| statistics                     | a user over the rooms they are in; the API Key over the app   |

A file that does not exist, lives in another bucket or app, or that the caller may not
read is the same 404 ``FILE_NOT_FOUND``: a non-member learns nothing about which ids exist.

Bytes live in a :class:`~parley.services.filestore.FileStore` under
``<app id>/<last two hex digits of the id>/<id>`` (the middle segment spreads files over
256 directories); an image's thumbnail under the same key plus ``.thumb``. Metadata is a
``files`` row, written after the bytes are in place; a failed upload removes the bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import logging
import math
import mimetypes
import re
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

import anyio.to_thread
import orjson
from PIL import Image, UnidentifiedImageError
from sqlalchemy import func, select

from parley.services import crypto
from parley.services.auth import Principal
from parley.services.clock import iso, now_ms
from parley.services.errors import (
    InsufficientPermissions,
    InvalidRequest,
    NotFound,
    TooLarge,
)
from parley.services.filestore import FileStore, StoredFile, StoredObject
from parley.services.groups import groups_of
from parley.services.ids import object_id
from parley.services.params import tag_list, time_param
from parley.storage.db import Database
from parley.storage.tables import FileRow, RoomMemberRow, RoomRow, RoomTagRow

log = logging.getLogger("parley.files")

# GridFS's default chunk size: IMKIT's files came from GridFS and carry it (§4.8).
CHUNK_SIZE = 261_120
THUMBNAIL_SIZE = 320  # longest side of a thumbnail, in pixels
MAX_EXTRA_BYTES = 16 * 1024  # the JSON of an upload's ``extra`` field
MAX_EXTRA_DEPTH = 32
MAX_FORM_PARTS = 16
MAX_STATS_TAGS = 100
SIGNED_URL_KIND = "signed-url"  # Principal.key_kind of a request opened by a signed URL
_BUCKET = re.compile(r"[A-Za-z0-9._-]{1,100}")
_FILE_ID = re.compile(r"[0-9a-f]{24}")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9*][a-z0-9!#$&^_.+-]{0,126}")
_FILENAME_STAR = re.compile(r"filename\*\s*=\s*([A-Za-z0-9_-]+)'[^']*'([^;\s]+)", re.IGNORECASE)
# Types a browser runs or renders as a document when they come back from this server's
# origin: HTML, SVG and any XML (which may carry XHTML and its scripts), scripts. They are
# refused at upload rather than served as attachments: nosniff, a sandbox CSP and
# ``Content-Disposition: attachment`` would each stop the script, but only while every
# proxy and CDN in front of the server keeps every one of those headers, whereas a file
# that was never accepted cannot be served wrongly. IMKIT clients upload images, video,
# audio and documents; none of these.
_EXECUTABLE = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/xsl",
        "application/xslt+xml",
        "text/javascript",
        "application/javascript",
        "application/x-javascript",
        "text/ecmascript",
        "application/ecmascript",
        "text/jscript",
        "text/vbscript",
        "text/x-component",
        "application/x-shockwave-flash",
        "multipart/x-mixed-replace",
        "text/cache-manifest",
    }
)
# Image formats that get verified, measured and thumbnailed; each maps to the type the
# file is then stored and served as, whatever the upload declared.
_IMAGE_FORMATS = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",  # what Pillow calls many phone cameras' JPEGs
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "AVIF": "image/avif",
    "ICO": "image/x-icon",
}
# EXIF orientation → the transposition that shows the image upright.
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class FormPart(Protocol):
    """One part of an upload form, as the edge parsed it. ``chunks`` streams the part's
    bytes; the next part arrives only after it has been read (or skipped)."""

    name: str
    filename: str | None
    content_type: str | None

    def chunks(self) -> AsyncIterator[bytes]: ...


@dataclass(frozen=True)
class FileLimits:
    max_file_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    file_types: str = "*"
    signed_url_seconds: int = 3600


@dataclass(frozen=True)
class ImageInfo:
    mimetype: str
    width: int
    height: int
    thumbnail: bytes | None  # JPEG, or None when one could not be made


class _NotAnImage(Exception):
    pass


class _TooManyPixels(Exception):
    pass


def not_found(file_id: str) -> NotFound:
    return NotFound(f"File {file_id!r} not found", code="FILE_NOT_FOUND")


class FileService:
    def __init__(self, db: Database, store: FileStore, master: bytes, limits: FileLimits) -> None:
        self._db = db
        self._store = store
        self._url_key = crypto.derive_secret(master, "signed-file-url", "")
        self.limits = limits
        self._allowed = [p.strip().lower() for p in limits.file_types.split(",") if p.strip()]
        # Decoding images takes memory in proportion to their pixels: two at a time.
        self._image_slots = anyio.CapacityLimiter(2)

    # -- upload ---------------------------------------------------------------------------

    async def upload(
        self, caller: Principal, bucket: str, parts: AsyncIterable[FormPart]
    ) -> FileRow:
        """Store the form's ``file`` part in ``bucket``; ``extra`` (a JSON object) is kept
        with it. Returns the stored file's metadata (see :func:`file_public`)."""
        bucket = check_bucket(bucket)
        file_id = object_id()
        key = _key(caller.app_id, file_id)
        stored: StoredObject | None = None
        thumbnail_stored = False
        try:
            filename, declared, extra = "file", "application/octet-stream", None
            count = 0
            async for part in parts:
                count += 1
                if count > MAX_FORM_PARTS:
                    raise InvalidRequest(f"An upload form has at most {MAX_FORM_PARTS} parts")
                if part.name == "file":
                    if stored is not None:
                        raise InvalidRequest("One file per upload")
                    filename = clean_filename(part.filename)
                    declared = self._declared_type(part.content_type, filename)
                    stored = await self._store.put(
                        key, part.chunks(), max_bytes=self.limits.max_file_bytes
                    )
                elif part.name == "extra":
                    extra = await _read_text(part, MAX_EXTRA_BYTES, "extra")
                else:  # fields IMKIT clients do not send: read past them
                    async for _ in part.chunks():
                        pass
            if stored is None:
                raise InvalidRequest("The form has no file part", code="MISSING_PARAMETER")
            if stored.size == 0:
                raise InvalidRequest("The file is empty", code="EMPTY_FILE")
            fields = _extra(extra)
            room_id = _room_of(fields)
            if room_id is not None:
                await self._check_room(caller, room_id)
            image = await self._inspect(key, declared)
            mimetype = image.mimetype if image else declared
            self._check_allowed(mimetype)
            if image is not None and image.thumbnail is not None:
                thumb = image.thumbnail
                await self._store.put(key + ".thumb", _once(thumb), max_bytes=len(thumb))
                thumbnail_stored = True
            row = FileRow(
                app_id=caller.app_id,
                id=file_id,
                bucket=bucket,
                filename=filename,
                mimetype=mimetype,
                length=stored.size,
                md5=stored.md5,
                uploader=caller.user_id,
                room_id=room_id,
                extra=fields,
                width=image.width if image else None,
                height=image.height if image else None,
                has_thumbnail=thumbnail_stored,
                created_at=now_ms(),
            )
            async with self._db.write() as s:
                s.add(row)
        except BaseException:
            if stored is not None or thumbnail_stored:
                with anyio.CancelScope(shield=True):
                    await self._store.delete(key)
                    await self._store.delete(key + ".thumb")
            raise
        return row

    def _declared_type(self, content_type: str | None, filename: str) -> str:
        """The part's type (or one guessed from the file name when it has none), refused
        when it is one a browser would run."""
        declared = media_type(content_type)
        if declared is None:
            declared = media_type(mimetypes.guess_type(filename)[0]) or "application/octet-stream"
        if declared in _EXECUTABLE or declared.endswith("+xml"):
            raise InvalidRequest(
                f"Files of type {declared} are not accepted: a browser would run them",
                code="UNSUPPORTED_FILE_TYPE",
            )
        if declared != "application/octet-stream":  # which may yet turn out to be an image
            self._check_allowed(declared)
        return declared

    def _check_allowed(self, mimetype: str) -> None:
        major = mimetype.split("/")[0]
        if not any(p in ("*", "*/*", mimetype, major + "/*") for p in self._allowed):
            raise InvalidRequest(
                f"Files of type {mimetype} are not accepted here", code="UNSUPPORTED_FILE_TYPE"
            )

    async def _check_room(self, caller: Principal, room_id: str) -> None:
        async with self._db.read() as s:
            if await s.get(RoomRow, (caller.app_id, room_id)) is None:
                raise NotFound(f"Room {room_id!r} not found", code="ROOM_NOT_FOUND")
            if caller.is_admin:
                return
            if caller.user_id is None or not await _is_member(
                s, caller.app_id, room_id, caller.user_id
            ):
                raise InsufficientPermissions("Not a member of this room", code="NOT_ROOM_MEMBER")

    async def _inspect(self, key: str, declared: str) -> ImageInfo | None:
        """For a declared image (or an untyped file), what Pillow finds: a declared image
        that is not one is refused; an untyped file that is one becomes an image."""
        if not declared.startswith("image/") and declared != "application/octet-stream":
            return None
        stored = await self._store.open(key)
        source: Path | bytes
        if stored.path is not None:
            source = stored.path
        else:
            source = b"".join([chunk async for chunk in stored.chunks()])
        try:
            return await anyio.to_thread.run_sync(
                inspect_image,
                source,
                self.limits.max_image_pixels,
                limiter=self._image_slots,
            )
        except _NotAnImage:
            if declared == "application/octet-stream":
                return None
            raise InvalidRequest(
                f"The file is not a {declared} image (or not a supported one)",
                code="INVALID_IMAGE",
            ) from None
        except _TooManyPixels:
            if declared == "application/octet-stream":
                return None
            raise TooLarge(
                f"Images may have at most {self.limits.max_image_pixels} pixels",
                code="IMAGE_TOO_LARGE",
            ) from None

    # -- read -----------------------------------------------------------------------------

    async def find(self, caller: Principal, bucket: str, file_id: str) -> FileRow:
        """The file's metadata, if the caller may read it; FILE_NOT_FOUND otherwise."""
        if not _BUCKET.fullmatch(bucket) or not _FILE_ID.fullmatch(file_id):
            raise not_found(file_id)
        async with self._db.read() as s:
            row = await s.get(FileRow, (caller.app_id, file_id))
            if row is None or row.bucket != bucket or not await self._may_read(s, caller, row):
                raise not_found(file_id)
            return row

    async def open(self, row: FileRow, *, thumbnail: bool = False) -> StoredFile:
        key = _key(row.app_id, row.id)
        if thumbnail:
            if not row.has_thumbnail:
                raise NotFound(f"File {row.id!r} has no thumbnail", code="FILE_NOT_FOUND")
            key += ".thumb"
        try:
            return await self._store.open(key)
        except FileNotFoundError:
            log.error("the bytes of file %s/%s are missing from the file store", row.app_id, key)
            raise not_found(row.id) from None

    async def _may_read(self, s: Any, caller: Principal, row: FileRow) -> bool:
        if caller.key_kind == SIGNED_URL_KIND:
            return caller.key_id == f"{row.bucket}/{row.id}"
        if caller.is_admin:
            return True
        if caller.user_id is None:
            return False
        if row.uploader == caller.user_id:
            return True
        return row.room_id is not None and await _is_member(
            s, row.app_id, row.room_id, caller.user_id
        )

    # -- signed URLs ------------------------------------------------------------------------

    async def signed_query(self, caller: Principal, bucket: str, file_id: str) -> str:
        """The query string that opens ``/files/{bucket}/{file_id}`` (and its thumbnail)
        without credentials until it expires. Only a caller with credentials who may read
        the file gets one: a signed URL cannot extend itself."""
        if caller.key_kind == SIGNED_URL_KIND:
            raise InsufficientPermissions(
                "A signed URL cannot make another", code="INSUFFICIENT_PERMISSIONS"
            )
        row = await self.find(caller, bucket, file_id)
        expires = math.ceil(time.time()) + self.limits.signed_url_seconds  # at least that long
        signature = self._signature(row.app_id, row.bucket, row.id, expires)
        return f"appID={row.app_id}&expires={expires}&signature={signature}"

    def signed_caller(
        self, bucket: str, file_id: str, app_id: str, expires: str, signature: str
    ) -> Principal:
        """The caller a signed URL stands for, or INVALID_SIGNATURE / SIGNED_URL_EXPIRED."""
        if not (expires.isdigit() and len(expires) <= 12 and 0 < len(app_id) <= 64):
            raise InsufficientPermissions("Malformed signed URL", code="INVALID_SIGNATURE")
        expected = self._signature(app_id, bucket, file_id, int(expires))
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise InsufficientPermissions("The URL signature is invalid", code="INVALID_SIGNATURE")
        if int(expires) < time.time():
            raise InsufficientPermissions("The signed URL has expired", code="SIGNED_URL_EXPIRED")
        return Principal(app_id, False, None, SIGNED_URL_KIND, f"{bucket}/{file_id}")

    def _signature(self, app_id: str, bucket: str, file_id: str, expires: int) -> str:
        message = f"{app_id}\n{bucket}\n{file_id}\n{expires}".encode()
        digest = hmac.new(self._url_key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    # -- statistics -------------------------------------------------------------------------

    async def stats(self, caller: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """Count and size of the files uploaded in ``[rangeStart, rangeEnd]`` to rooms
        having each of ``tags``, and in total (a file in rooms of two tags counts once in
        the total). A user sees the rooms they are in; the API Key the whole app."""
        tags = tag_list(body.get("tags"), maximum=MAX_STATS_TAGS)
        where: list[Any] = [FileRow.app_id == caller.app_id]
        start, end = (
            time_param(body.get("rangeStart"), "rangeStart"),
            time_param(body.get("rangeEnd"), "rangeEnd"),
        )
        if start is not None:
            where.append(FileRow.created_at >= start)
        if end is not None:
            where.append(FileRow.created_at <= end)
        async with self._db.read() as s:
            if not caller.is_admin:
                if caller.user_id is None:
                    raise InsufficientPermissions()
                holders = [caller.user_id, *await groups_of(s, caller.app_id, caller.user_id)]
                mine = select(RoomMemberRow.room_id).where(
                    RoomMemberRow.app_id == caller.app_id, RoomMemberRow.user_id.in_(holders)
                )
                where.append(FileRow.room_id.in_(mine))
            data: dict[str, dict[str, int]] = {t: {"size": 0, "count": 0} for t in tags}
            if tags:
                per_tag = (
                    select(RoomTagRow.tag, func.count(), func.coalesce(func.sum(FileRow.length), 0))
                    .join(
                        RoomTagRow,
                        (RoomTagRow.app_id == FileRow.app_id)
                        & (RoomTagRow.room_id == FileRow.room_id),
                    )
                    .where(*where, RoomTagRow.tag.in_(tags))
                    .group_by(RoomTagRow.tag)
                )
                for tag, count, size in (await s.execute(per_tag)).all():
                    data[tag] = {"size": int(size), "count": int(count)}
                tagged = select(RoomTagRow.room_id).where(
                    RoomTagRow.app_id == caller.app_id, RoomTagRow.tag.in_(tags)
                )
                where.append(FileRow.room_id.in_(tagged))
            total_count, total_size = (
                await s.execute(
                    select(func.count(), func.coalesce(func.sum(FileRow.length), 0)).where(*where)
                )
            ).one()
        return {"data": data, "totalCount": int(total_count), "totalSize": int(total_size)}


# -- the File object and its pieces ------------------------------------------------------------


def file_public(row: FileRow) -> dict[str, Any]:
    """The File object of §4.8 (URLs are the edge's to add: they depend on the request)."""
    view: dict[str, Any] = {
        "_id": row.id,
        "id": row.id,
        "appID": row.app_id,
        "length": row.length,
        "chunkSize": CHUNK_SIZE,
        "uploadDate": iso(row.created_at),
        "uploadDateMS": row.created_at,
        "md5": row.md5,
        "filename": row.filename,
        "mimetype": row.mimetype,
        "client": row.uploader,
        "bucketName": row.bucket,
        "extra": row.extra or {},
    }
    if row.width is not None and row.height is not None:
        view["width"], view["height"] = row.width, row.height
    return view


def check_bucket(bucket: str) -> str:
    # "." and ".." pass the pattern but no client could fetch them back: URL paths
    # collapse such segments.
    if not _BUCKET.fullmatch(bucket) or bucket in (".", ".."):
        raise InvalidRequest(
            "A bucket name is 1 to 100 of the characters A-Z a-z 0-9 . _ -",
            code="INVALID_BUCKET",
        )
    return bucket


def clean_filename(raw: str | None) -> str:
    """The name to keep as metadata: the last path segment, printable characters only,
    at most 255 characters (extension kept). Never used as a path."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    if name in ("", ".", ".."):
        return "file"
    if len(name) > 255:
        stem, dot, ext = name.rpartition(".")
        name = stem[: 255 - len(ext) - 1] + dot + ext if dot and len(ext) <= 16 else name[:255]
    return name


def filename_from_disposition(header: str) -> str | None:
    """``filename*=UTF-8''…`` (RFC 5987) when present; the caller reads plain
    ``filename=`` with the rest of the header."""
    match = _FILENAME_STAR.search(header)
    if match is None:
        return None
    charset = match.group(1).lower()
    try:
        return unquote(match.group(2), encoding=charset, errors="replace")
    except LookupError:
        return unquote(match.group(2), errors="replace")


def media_type(value: str | None) -> str | None:
    """``type/subtype`` in lower case without parameters; None when absent. Malformed
    types are refused: they would come back as the Content-Type of the file."""
    if value is None:
        return None
    text = value.split(";", 1)[0].strip().lower()
    if not text:
        return None
    if not _MEDIA_TYPE.fullmatch(text) or "*" in text:
        raise InvalidRequest(f"{value[:100]!r} is not a media type")
    return text


def inspect_image(source: Path | bytes, max_pixels: int) -> ImageInfo:
    """Verify, measure and thumbnail an image (blocking: run it in a thread).

    Pillow reads only the header to measure it, so the pixel limit applies before any
    decoding; thumbnail() then decodes the image (JPEG at a reduced scale) and so proves
    it whole. Raises _NotAnImage or _TooManyPixels."""
    fp: Any = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with Image.open(fp, formats=_openers()) as img:
            mimetype = _IMAGE_FORMATS[str(img.format)]
            width, height = img.size
            if width * height > max_pixels:
                raise _TooManyPixels()
            orientation = img.getexif().get(0x0112, 1)
            img.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
            transpose = _ORIENTATION.get(orientation) if isinstance(orientation, int) else None
            thumbnail = _jpeg(img, transpose)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _TooManyPixels() from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, KeyError):
        raise _NotAnImage() from None
    if orientation in (5, 6, 7, 8):  # shown a quarter turn round: sides swap
        width, height = height, width
    return ImageInfo(mimetype, width, height, thumbnail)


def _openers() -> list[str]:
    """The formats to try: ours that this Pillow build can open (the JPEG opener also
    yields MPO; AVIF depends on the build)."""
    Image.init()
    return [f for f in _IMAGE_FORMATS if f in Image.OPEN]


def _jpeg(image: Image.Image, transpose: Image.Transpose | None) -> bytes | None:
    """The thumbnail as JPEG, upright, transparency flattened onto white; None if this
    image's mode cannot be converted (the upload still succeeds, without a thumbnail)."""
    try:
        if transpose is not None:
            image = image.transpose(transpose)
        if image.mode not in ("RGB", "L"):
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size, "white")
            image.paste(rgba, mask=rgba.getchannel("A"))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=80, optimize=True)
        return out.getvalue()
    except (OSError, ValueError) as exc:
        log.warning("no thumbnail for an image of mode %s: %s", image.mode, exc)
        return None


# -- helpers ----------------------------------------------------------------------------------


def _key(app_id: str, file_id: str) -> str:
    return f"{app_id}/{file_id[-2:]}/{file_id}"


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _read_text(part: FormPart, limit: int, name: str) -> str:
    pieces: list[bytes] = []
    size = 0
    async for chunk in part.chunks():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"{name} may be at most {limit} bytes")
        pieces.append(chunk)
    try:
        return b"".join(pieces).decode()
    except UnicodeDecodeError:
        raise InvalidRequest(f"{name} must be UTF-8 text") from None


def _extra(text: str | None) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidRequest("extra must be a JSON object") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest("extra must be a JSON object")
    if _depth(value) > MAX_EXTRA_DEPTH:  # deeper than the JSON encoder will write back
        raise InvalidRequest(f"extra may nest at most {MAX_EXTRA_DEPTH} levels")
    return value


def _depth(value: Any) -> int:
    deepest, level, todo = 0, 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        deepest = max(deepest, level)
        if deepest > MAX_EXTRA_DEPTH:
            break
        if isinstance(item, dict):
            todo.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            todo.extend((v, level + 1) for v in item)
    return deepest


def _room_of(extra: dict[str, Any]) -> str | None:
    """``roomID`` (the documented spelling) or ``roomId`` (what the web SDKs send)."""
    room = extra.get("roomID", extra.get("roomId"))
    if room is None or room == "":
        return None
    if not isinstance(room, str) or len(room) > 255 or not room.isprintable():
        raise InvalidRequest("extra.roomID must be a room id")
    return room


async def _is_member(s: Any, app_id: str, room_id: str, user_id: str) -> bool:
    """Whether the user is in the room, directly or through one of its groups."""
    holders = [user_id, *await groups_of(s, app_id, user_id)]
    found = await s.execute(
        select(RoomMemberRow.user_id)
        .where(
            RoomMemberRow.app_id == app_id,
            RoomMemberRow.room_id == room_id,
            RoomMemberRow.user_id.in_(holders),
        )
        .limit(1)
    )
    return found.first() is not None
