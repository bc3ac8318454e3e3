"""Lookups that share database reads.

A read costs about a millisecond of CPU however little it returns (a session, a
transaction, a few hops to the driver's thread). Where many callers look up one row each
at the same time — sockets authenticating together — they can share: a lookup asked
while a read is running waits for the next read, which answers every lookup asked
meanwhile. A lookup alone is read at once, so nothing waits for company.

Each read starts after every lookup it answers was asked: a caller sees every row
committed before it asked, as a read of its own would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

CHUNK = 500  # ids per statement (well under every database's limit on parameters)


def chunks_by_app(keys: list[tuple[str, str]]) -> Iterator[tuple[str, list[str]]]:
    """``(app id, ids)`` for ``(app id, id)`` keys: one app at a time, ``CHUNK`` ids at a
    time, as a batched read asks for them."""
    by_app: dict[str, list[str]] = {}
    for app_id, key in keys:
        by_app.setdefault(app_id, []).append(key)
    for app_id, ids in by_app.items():
        for start in range(0, len(ids), CHUNK):
            yield app_id, ids[start : start + CHUNK]


class BatchedLookup(Generic[K, V]):
    """``await get(key)``: the value ``read`` found for ``key``, or None. ``read`` gets
    the distinct keys asked since the last read began and returns what it found for
    them (keys it did not find left out)."""

    def __init__(self, read: Callable[[list[K]], Awaitable[dict[K, V]]]) -> None:
        self._read = read
        self._asked: dict[K, list[asyncio.Future[V | None]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V | None:
        """Raises what the read raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V | None] = loop.create_future()
        self._asked.setdefault(key, []).append(future)
        if self._reader is None:
            self._reader = loop.create_task(self._read_while_asked())
        return await future

    async def _read_while_asked(self) -> None:
        try:
            while self._asked:
                batch, self._asked = self._asked, {}
                try:
                    found = await self._read(list(batch))
                except Exception as exc:
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                for key, futures in batch.items():
                    value = found.get(key)
                    for future in futures:
                        if not future.done():  # not cancelled (its caller went away)
                            future.set_result(value)
        finally:
            self._reader = None
