"""WebSocket frames written straight to a connection's transport.

The gateway encodes a broadcast once per encoding (see :mod:`parley.gateway.server`); with
ASGI alone each of a thousand sockets would still pay for a ``websocket.send`` message,
an await, and the WebSocket library framing the same text again. uvicorn's protocol is
extended here to hand itself to the gateway through the ASGI scope (extension
:data:`EXTENSION`), so that the gateway can write complete frames, built once, to every
transport that is not paused, and hear when a paused one may be written to again.

Everything else (the upgrade, reading and parsing the client's frames, control frames,
the close handshake) stays uvicorn's. Under another server or WebSocket implementation
the extension is absent and the gateway sends through ASGI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

EXTENSION = "parley.websocket.transport"
_TEXT = 0x81  # FIN + text opcode


def text_frame(payload: bytes) -> bytes:
    """A complete, unmasked WebSocket text frame (server → client, RFC 6455 §5.2) holding
    ``payload``, which must be UTF-8."""
    size = len(payload)
    if size < 126:
        return bytes((_TEXT, size)) + payload
    if size < 65536:
        return bytes((_TEXT, 126)) + size.to_bytes(2, "big") + payload
    return bytes((_TEXT, 127)) + size.to_bytes(8, "big") + payload


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's default WebSocket protocol, plus what the gateway needs to write frames
    itself: the protocol in the scope's extensions, whether the transport is paused
    (its buffer above the high-water mark), and a callback when it may be written to
    again or the connection is lost."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.paused = False
        self.on_writable: Callable[[], None] | None = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # The application task is created but has not run yet: the scope can still grow.
        if self.handshake_initiated and self.response.status_code == 101:
            extensions: dict[str, Any] = self.scope["extensions"]
            extensions[EXTENSION] = self

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # The handshake's request and response are never read again (the scope has
            # its own copy of the headers); a socket lives for hours, and they are
            # kilobytes of headers apiece (bench/realtime.py's memory per idle socket).
            # The request's headers are emptied in place: the websockets parser's
            # generator keeps the request itself alive for the connection's life.
            self.request.headers.clear()
            self.request = self.response = None  # type: ignore[assignment]

    def pause_writing(self) -> None:
        super().pause_writing()
        self.paused = True

    def resume_writing(self) -> None:
        super().resume_writing()
        self.paused = False
        if self.on_writable is not None:
            self.on_writable()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.paused = False
        if self.on_writable is not None:
            self.on_writable()

    def write(self, frame: bytes) -> None:
        """A complete frame (see :func:`text_frame`), after those written before it."""
        self.transport.write(frame)
