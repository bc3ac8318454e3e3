"""The file store contract (see :mod:`parley.services.filestore`), one suite for every
implementation.

Each implementation comes with a way to list what it holds on its medium, temporary
files included, so "leaves nothing behind" is checked where the bytes would be.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from parley.services.filestore import FileStore, LocalDiskFileStore, ObjectTooLarge

MiB = 1024 * 1024


@dataclass
class Backend:
    store: FileStore
    leftovers: Callable[[], list[str]]  # every file on the medium, temporaries included


def _disk(tmp_path: Path) -> Backend:
    root = tmp_path / "files"

    def leftovers() -> list[str]:
        if not root.exists():
            return []
        return sorted(
            str(Path(d, f).relative_to(root)) for d, _dirs, files in os.walk(root) for f in files
        )

    return Backend(LocalDiskFileStore(root), leftovers)


@pytest.fixture(params=["disk"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    makers = {"disk": _disk}
    return makers[request.param](tmp_path)


def run(body: Awaitable[None], timeout: float = 30) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(body, timeout)

    asyncio.run(bounded())


async def chunks(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        await asyncio.sleep(0)
        yield piece


async def read_all(store: FileStore, key: str, chunk_size: int = 4096) -> bytes:
    stored = await store.open(key)
    pieces = [c async for c in stored.chunks(chunk_size)]
    assert all(0 < len(c) <= chunk_size for c in pieces)
    return b"".join(pieces)


def test_put_then_read_back_with_size_and_md5(backend: Backend) -> None:
    async def body() -> None:
        store = backend.store
        data = os.urandom(300_000)
        pieces = [data[i : i + 65_536] for i in range(0, len(data), 65_536)]
        result = await store.put("app/ab/file1", chunks(*pieces), max_bytes=1 * MiB)
        assert result.size == len(data)
        assert result.md5 == hashlib.md5(data, usedforsecurity=False).hexdigest()
        assert await store.exists("app/ab/file1")
        stored = await store.open("app/ab/file1")
        assert stored.size == len(data)
        assert await read_all(store, "app/ab/file1") == data
        if stored.path is not None:
            assert stored.path.read_bytes() == data
        assert backend.leftovers() == ["app/ab/file1"]

    run(body())


def test_an_empty_object_is_an_object(backend: Backend) -> None:
    async def body() -> None:
        result = await backend.store.put("empty", chunks(), max_bytes=10)
        assert (result.size, result.md5) == (0, hashlib.md5(b"", usedforsecurity=False).hexdigest())
        assert await read_all(backend.store, "empty") == b""

    run(body())


def test_a_put_to_an_existing_key_replaces_it(backend: Backend) -> None:
    async def body() -> None:
        store = backend.store
        await store.put("k", chunks(b"first version, longer"), max_bytes=100)
        result = await store.put("k", chunks(b"second"), max_bytes=100)
        assert result.size == 6
        assert await read_all(store, "k") == b"second"
        assert backend.leftovers() == ["k"]

    run(body())


def test_over_the_limit_raises_and_leaves_nothing(backend: Backend) -> None:
    read: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for i in range(1000):
            read.append(i)
            yield b"x" * 1000

    async def body() -> None:
        store = backend.store
        with pytest.raises(ObjectTooLarge) as raised:
            await store.put("big", endless(), max_bytes=10_500)
        assert raised.value.code == "FILE_TOO_LARGE"
        assert len(read) == 11, "it stops at the chunk that crosses the limit"
        assert not await store.exists("big")
        with pytest.raises(FileNotFoundError):
            await store.open("big")
        assert backend.leftovers() == []

    run(body())


def test_exactly_the_limit_is_accepted(backend: Backend) -> None:
    async def body() -> None:
        result = await backend.store.put("fits", chunks(b"a" * 5, b"b" * 5), max_bytes=10)
        assert result.size == 10

    run(body())


def test_a_failing_stream_leaves_nothing_and_keeps_the_old_object(backend: Backend) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"partial data"
        raise ConnectionResetError("client went away")

    async def body() -> None:
        store = backend.store
        await store.put("kept", chunks(b"old"), max_bytes=100)
        with pytest.raises(ConnectionResetError):
            await store.put("kept", broken(), max_bytes=100)
        with pytest.raises(ConnectionResetError):
            await store.put("new", broken(), max_bytes=100)
        assert await read_all(store, "kept") == b"old"
        assert not await store.exists("new")
        assert backend.leftovers() == ["kept"]

    run(body())


def test_a_cancelled_put_leaves_nothing_and_readers_never_see_a_partial_object(
    backend: Backend,
) -> None:
    async def body() -> None:
        store = backend.store
        started, never = asyncio.Event(), asyncio.Event()

        async def stalled() -> AsyncIterator[bytes]:
            yield b"x" * 300_000  # past the write batch: some bytes reach the medium
            yield b"y" * 10
            started.set()
            await never.wait()
            yield b"never"

        task = asyncio.create_task(store.put("slow", stalled(), max_bytes=MiB))
        await asyncio.wait_for(started.wait(), 5)
        assert not await store.exists("slow")
        with pytest.raises(FileNotFoundError):
            await store.open("slow")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not await store.exists("slow")
        assert backend.leftovers() == []

    run(body())


BAD_KEYS = [
    "",
    "/etc/passwd",
    "../outside",
    "a/../../outside",
    "a/..",
    "./a",
    ".hidden",
    "a/.tmp",
    "a//b",
    "a/",
    "a\\b",
    "a b",
    "a\x00b",
    "ü",
    "x" * 129,
    "/".join(["a"] * 9),
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_that_could_leave_the_store_are_refused(backend: Backend, key: str) -> None:
    async def body() -> None:
        store = backend.store
        with pytest.raises(ValueError):
            await store.put(key, chunks(b"data"), max_bytes=100)
        with pytest.raises(ValueError):
            await store.open(key)
        with pytest.raises(ValueError):
            await store.delete(key)
        with pytest.raises(ValueError):
            await store.exists(key)
        assert backend.leftovers() == []

    run(body())


def test_the_longest_keys_allowed_work(backend: Backend) -> None:
    async def body() -> None:
        key = "/".join(["s" * 128] + ["a-b_c.d"] * 7)
        await backend.store.put(key, chunks(b"deep down"), max_bytes=10)
        assert await read_all(backend.store, key, chunk_size=2) == b"deep down"

    run(body())


def test_delete_and_exists(backend: Backend) -> None:
    async def body() -> None:
        store = backend.store
        assert await store.delete("gone") is False
        assert await store.exists("gone") is False
        await store.put("gone", chunks(b"soon"), max_bytes=10)
        assert await store.exists("gone") is True
        assert await store.delete("gone") is True
        assert await store.exists("gone") is False
        assert await store.delete("gone") is False
        with pytest.raises(FileNotFoundError):
            await store.open("gone")

    run(body())


def test_concurrent_puts_each_get_their_own_bytes(backend: Backend) -> None:
    async def body() -> None:
        store = backend.store
        blobs = {f"app/{i:02d}/f{i}": os.urandom(50_000 + i) for i in range(20)}
        results = await asyncio.gather(
            *(
                store.put(key, chunks(data[:20_000], data[20_000:]), max_bytes=MiB)
                for key, data in blobs.items()
            )
        )
        for (key, data), result in zip(blobs.items(), results, strict=True):
            assert result.md5 == hashlib.md5(data, usedforsecurity=False).hexdigest()
            assert await read_all(store, key) == data
        assert len(backend.leftovers()) == len(blobs)

    run(body())
