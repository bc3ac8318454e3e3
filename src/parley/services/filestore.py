"""Where the bytes of uploaded files live: the file store interface and its disk backend.

Contract, for every implementation of :class:`FileStore`:

- Keys are 1 to 8 segments joined by ``/``; a segment is 1 to 128 of ``A-Z a-z 0-9 . _ -``
  and does not start with a dot (so neither ``.`` nor ``..``). Any other key raises
  ``ValueError`` before anything is touched, so no key can name a place outside the store.
- ``put(key, chunks, max_bytes=n)`` consumes the async iterable and stores its bytes under
  ``key``, returning their size and MD5 (hex). The object appears whole or not at all:
  readers never see a partial object, and a failed put (more than ``n`` bytes, an error
  or cancellation while the chunks are read) leaves nothing behind, not even a partial
  temporary file. Past ``n`` bytes it raises :class:`ObjectTooLarge` without reading the
  rest. A put to an existing key replaces the object.
- ``open(key)`` returns a :class:`StoredFile` (its size, a way to read it as an async
  iterator of chunks, and a local path when the store has one, so a server can hand the
  file to the OS); a missing key raises ``FileNotFoundError``.
- ``delete(key)`` removes the object and tells whether there was one; ``exists(key)``
  tells whether there is one.
- Every method may be called concurrently from one event loop; none blocks the loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio.to_thread

from parley.services.errors import TooLarge

_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
MAX_SEGMENTS = 8
READ_CHUNK = 64 * 1024
_WRITE_BATCH = 256 * 1024  # bytes gathered before one write (one thread hop) to disk


class ObjectTooLarge(TooLarge):
    code = "FILE_TOO_LARGE"
    default_message = "The file is larger than this server accepts"


@dataclass(frozen=True, slots=True)
class StoredObject:
    size: int
    md5: str


def check_key(key: str) -> list[str]:
    """The key's segments, or ValueError if it is not a key (see the contract)."""
    if not isinstance(key, str):
        raise ValueError("a key is a string")
    segments = key.split("/")
    if not 1 <= len(segments) <= MAX_SEGMENTS or any(
        _SEGMENT.fullmatch(s) is None for s in segments
    ):
        raise ValueError(f"not a file store key: {key!r}")
    return segments


class StoredFile(Protocol):
    @property
    def size(self) -> int: ...

    @property
    def path(self) -> Path | None:
        """A local file holding the bytes, or None for stores without one."""

    def chunks(self, chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]: ...


class FileStore(Protocol):
    async def put(
        self, key: str, chunks: AsyncIterable[bytes], *, max_bytes: int
    ) -> StoredObject: ...

    async def open(self, key: str) -> StoredFile: ...

    async def delete(self, key: str) -> bool: ...

    async def exists(self, key: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class DiskFile:
    size: int
    path: Path

    async def chunks(self, chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]:
        handle = await anyio.open_file(self.path, "rb")
        try:
            while chunk := await handle.read(chunk_size):
                yield chunk
        finally:
            with anyio.CancelScope(shield=True):
                await handle.aclose()


class LocalDiskFileStore:
    """Files under one directory, a key's segments as its path below it. A put writes a
    temporary file under ``<root>/.tmp`` (the same file system, and a name no key can
    reach: segments never start with a dot) and renames it into place, which is atomic."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root))
        self._tmp = self.root / ".tmp"

    def _path(self, key: str) -> Path:
        path = self.root.joinpath(*check_key(key))
        # check_key already rules out "..", absolute paths and separators; this is the
        # second lock on the same door.
        if os.path.commonpath([self.root, path]) != str(self.root):
            raise ValueError(f"not a file store key: {key!r}")
        return path

    async def put(self, key: str, chunks: AsyncIterable[bytes], *, max_bytes: int) -> StoredObject:
        path = self._path(key)
        await anyio.to_thread.run_sync(lambda: self._tmp.mkdir(parents=True, exist_ok=True))
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        handle = os.fdopen(fd, "wb")
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        pending: list[bytes] = []
        pending_size = 0

        def write(batch: list[bytes]) -> None:
            for piece in batch:
                handle.write(piece)
                digest.update(piece)

        def finish() -> None:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, path)

        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise ObjectTooLarge(f"The file is larger than {max_bytes} bytes")
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= _WRITE_BATCH:
                    batch, pending, pending_size = pending, [], 0
                    await anyio.to_thread.run_sync(write, batch)
            await anyio.to_thread.run_sync(write, pending)
            await anyio.to_thread.run_sync(finish)
        except BaseException:
            # Plain calls, no await: the cleanup runs even when the task is being cancelled.
            handle.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        return StoredObject(size, digest.hexdigest())

    async def open(self, key: str) -> DiskFile:
        path = self._path(key)
        stat = await anyio.to_thread.run_sync(os.stat, path)
        return DiskFile(stat.st_size, path)

    async def delete(self, key: str) -> bool:
        path = self._path(key)

        def unlink() -> bool:
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            return True

        return await anyio.to_thread.run_sync(unlink)

    async def exists(self, key: str) -> bool:
        path = self._path(key)
        return await anyio.to_thread.run_sync(path.is_file)
