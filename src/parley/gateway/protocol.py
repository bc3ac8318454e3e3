"""The wire of the real-time gateway: Engine.IO protocol 4 over WebSocket, carrying
Socket.IO protocol 5 packets, text only (contract §5.1).

Engine.IO: one WebSocket text frame is one packet, a digit for its type then its data:
``0`` open (server → client, JSON handshake), ``1`` close, ``2`` ping, ``3`` pong, ``4``
message, ``6`` noop. Socket.IO rides in messages: a digit for its type, an optional
namespace (``/x,``), an optional ack id (digits), then JSON. Binary frames and the
binary Socket.IO packet types are not part of what IMKIT clients send: they are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

# Engine.IO packet types
EIO_OPEN, EIO_CLOSE, EIO_PING, EIO_PONG, EIO_MESSAGE, EIO_UPGRADE, EIO_NOOP = "0123456"
# Socket.IO packet types
CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR, BINARY_EVENT, BINARY_ACK = range(7)

MAX_ACK_ID = 2**53
# ASCII digits only: ``str.isdigit`` also accepts "²" or "٣", which ``int`` refuses or reads.
DIGITS = frozenset("0123456789")


class ProtocolError(Exception):
    """A frame that breaks the protocol: the socket that sent it is closed."""


@dataclass
class Packet:
    """A Socket.IO packet."""

    type: int
    namespace: str = "/"
    data: Any = None
    ack_id: int | None = None


def decode_engine(frame: str) -> tuple[str, str]:
    """An Engine.IO packet: its type and its data."""
    if not frame or frame[0] not in "0123456":
        raise ProtocolError("unknown Engine.IO packet type")
    return frame[0], frame[1:]


def decode_socket(text: str) -> Packet:
    """A Socket.IO packet from the data of an Engine.IO message."""
    if not text or text[0] not in DIGITS:
        raise ProtocolError("unknown Socket.IO packet type")
    kind = int(text[0])
    if kind in (BINARY_EVENT, BINARY_ACK):
        raise ProtocolError("binary packets are not accepted")
    if kind > BINARY_ACK:
        raise ProtocolError("unknown Socket.IO packet type")
    rest = text[1:]
    namespace = "/"
    if rest.startswith("/"):
        end = rest.find(",")
        namespace, rest = (rest, "") if end < 0 else (rest[:end], rest[end + 1 :])
    digits = 0
    while digits < len(rest) and rest[digits] in DIGITS:
        digits += 1
    ack_id = None
    if digits:
        if digits > 16:
            raise ProtocolError("ack id out of range")
        ack_id = int(rest[:digits])
        rest = rest[digits:]
    data = None
    if rest:
        try:
            data = orjson.loads(rest)
        except orjson.JSONDecodeError:
            raise ProtocolError("packet data is not JSON") from None
    if kind in (EVENT, ACK) and (not isinstance(data, list) or (kind == EVENT and not data)):
        raise ProtocolError("event packets carry a JSON array")
    if kind == EVENT and not isinstance(data and data[0], str):
        raise ProtocolError("an event's name is a string")
    return Packet(kind, namespace, data, ack_id)


def engine_open(sid: str, ping_interval_ms: int, ping_timeout_ms: int, max_payload: int) -> str:
    handshake = {
        "sid": sid,
        "upgrades": [],
        "pingInterval": ping_interval_ms,
        "pingTimeout": ping_timeout_ms,
        "maxPayload": max_payload,
    }
    return EIO_OPEN + orjson.dumps(handshake).decode()


def socket_frame(
    kind: int, data: Any = None, ack_id: int | None = None, namespace: str = "/"
) -> str:
    """An Engine.IO message frame holding one Socket.IO packet (of the root namespace
    unless told otherwise)."""
    head = EIO_MESSAGE + str(kind) + ("" if namespace == "/" else namespace + ",")
    head += "" if ack_id is None else str(ack_id)
    if data is None:
        return head
    return head + orjson.dumps(data).decode()


def event_frame(name: str, payload: Any) -> str:
    return socket_frame(EVENT, [name, payload])


_EVENT_HEAD = (EIO_MESSAGE + str(EVENT)).encode()


def event_packet(name: str, payload: Any) -> bytes:
    """:func:`event_frame` as UTF-8 bytes, without a detour through ``str``: what a
    broadcast encodes once and writes to every socket."""
    return _EVENT_HEAD + orjson.dumps([name, payload])
