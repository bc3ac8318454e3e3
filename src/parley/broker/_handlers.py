"""Handler bookkeeping shared by the broker implementations."""

from __future__ import annotations

import inspect
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable

from parley.broker.base import Handler, Unsubscribe

log = logging.getLogger("parley.broker")


class HandlerTable:
    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._reconnect: list[Callable[[], Awaitable[None] | None]] = []

    @property
    def channels(self) -> list[str]:
        return [c for c, hs in self._handlers.items() if hs]

    def add(self, channel: str, handler: Handler) -> Unsubscribe:
        self._handlers[channel].append(handler)

        def unsubscribe() -> None:
            if handler in self._handlers[channel]:
                self._handlers[channel].remove(handler)

        return unsubscribe

    def add_reconnect(self, callback: Callable[[], Awaitable[None] | None]) -> None:
        self._reconnect.append(callback)

    async def dispatch(self, channel: str, data: bytes) -> None:
        for handler in list(self._handlers.get(channel, ())):
            await _call(handler, data)

    async def reconnected(self) -> None:
        for callback in list(self._reconnect):
            await _call(callback)


async def _call(fn: Callable[..., Awaitable[None] | None], *args: bytes) -> None:
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("broker handler failed")
