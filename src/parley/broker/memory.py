"""The in-memory broker: one node, no other process. Delivery happens on the event loop
after ``publish`` returns, as it would through a real broker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from parley.background import cancel_and_wait
from parley.broker._handlers import HandlerTable
from parley.broker.base import Handler, Unsubscribe


class MemoryBroker:
    outage_began_ms = 0  # one process: never cut off

    def __init__(self) -> None:
        self._table = HandlerTable()
        self._queue: asyncio.Queue[tuple[str, bytes]] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._pump())

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def publish(self, channel: str, data: bytes) -> bool:
        if self._queue is None:
            return False
        self._queue.put_nowait((channel, data))
        return True

    def subscribe(self, channel: str, handler: Handler) -> Unsubscribe:
        return self._table.add(channel, handler)

    def on_reconnect(self, callback: Callable[[], Awaitable[None] | None]) -> None:
        self._table.add_reconnect(callback)  # never called: memory does not disconnect

    async def _pump(self) -> None:
        assert self._queue is not None
        while True:
            channel, data = await self._queue.get()
            await self._table.dispatch(channel, data)
