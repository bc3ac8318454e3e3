"""A Socket.IO client spoken frame by frame, for tests of the real-time gateway that
send it what a well-behaved SDK never would (hostile clients, fuzzing)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from typing import Any, Protocol

import websockets

# What a node's log holds when a request or a socket ended in an unhandled exception.
CRASH_MARKS = ("Traceback", "Exception in ASGI application")


class Endpoint(Protocol):
    """Where a gateway listens: ``ws://…/socket.io/?EIO=4&transport=websocket``."""

    @property
    def ws_url(self) -> str: ...


class Wire:
    """A Socket.IO client spoken frame by frame over ``websockets``: it answers pings,
    keeps every other frame the server sends, and sends whatever it is given."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.frames: list[str] = []
        self.events: list[tuple[str, Any]] = []
        self.closed = asyncio.Event()
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, node: Endpoint) -> Wire:
        wire = cls(await websockets.connect(node.ws_url, max_size=None))
        await wire.until(lambda: bool(wire.frames), "the Engine.IO open packet")
        assert wire.frames[0].startswith("0{"), wire.frames[0]
        return wire

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                if frame == "2":
                    await self.ws.send("3")
                    continue
                text = frame if isinstance(frame, str) else repr(frame)
                self.frames.append(text)
                if text.startswith("42["):
                    name, *args = json.loads(text[2:])
                    self.events.append((name, args[0] if args else None))
                self._arrived.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self._arrived.set()

    async def until(self, done: Callable[[], bool], what: str, within: float = 5.0) -> None:
        try:
            async with asyncio.timeout(within):
                while not done():
                    assert not self.closed.is_set(), f"closed while waiting for {what}"
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(f"no {what} within {within} s: {self.frames[-3:]}") from None

    async def expect(self, prefix: str, within: float = 5.0) -> str:
        """The first frame starting with ``prefix`` (waiting for it)."""
        await self.until(lambda: any(f.startswith(prefix) for f in self.frames), prefix, within)
        return next(f for f in self.frames if f.startswith(prefix))

    async def connect(self, auth: dict[str, Any] | None = None) -> str:
        await self.ws.send("40" + (json.dumps(auth) if auth else ""))
        await self.until(
            lambda: any(f[:2] in ("40", "44") for f in self.frames), "the CONNECT answer"
        )
        return next(f for f in self.frames if f[:2] in ("40", "44"))

    async def still_usable(self) -> None:
        """The socket reads and answers: a ``conf`` call is acknowledged."""
        ack_id = secrets.randbelow(10**6) + 1
        await self.ws.send(f'42{ack_id}["conf",{{}}]')
        await self.expect(f"43{ack_id}[")

    async def round_trip(self) -> None:
        """An Engine.IO ping of its own: the pong is queued after anything queued for
        this socket before, so once it is in, nothing sent earlier is on its way."""
        probe = secrets.token_hex(4)
        await self.ws.send("2" + probe)
        await self.expect("3" + probe)

    def chat(self) -> list[dict[str, Any]]:
        return [data for name, data in self.events if name == "chat message"]

    async def close(self) -> None:
        await self.ws.close()
        await self._reader
