"""A socket's outgoing frames, both ways out: straight to a transport that may pause
(``parley run``), or through ASGI ``send`` (another server). Order is kept, a paused or
slow client's frames wait in a queue bounded in frames and bytes, and a push that does
not fit says so (the gateway then closes the socket)."""

from __future__ import annotations

import asyncio
from typing import Any

from parley.gateway.server import Socket
from parley.gateway.transport import text_frame


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing


class FakeWire:
    """What Socket uses of GatewayWebSocketProtocol."""

    def __init__(self) -> None:
        self.transport = FakeTransport()
        self.paused = False


def direct_socket(max_queue: int = 3, max_bytes: int = 10_000) -> tuple[Socket, FakeWire]:
    wire = FakeWire()

    async def no_asgi(_message: Any) -> None:
        raise AssertionError("frames go to the transport, not through ASGI")

    sock = Socket("sid", no_asgi, max_queue, max_bytes, wire)  # type: ignore[arg-type]
    return sock, wire


def test_frames_go_straight_to_a_transport_that_is_not_paused() -> None:
    sock, wire = direct_socket()
    assert sock.push('42["a"]') and sock.push(b'42["b"]')
    assert wire.transport.written == [text_frame(b'42["a"]'), text_frame(b'42["b"]')]
    assert sock.queue is None


def test_a_paused_transport_gets_its_frames_in_order_once_it_resumes() -> None:
    sock, wire = direct_socket()
    assert sock.push("1")
    wire.paused = True
    assert sock.push("2") and sock.push("3")
    assert wire.transport.written == [text_frame(b"1")]
    wire.paused = False
    assert sock.push("4")  # behind those waiting, though the transport is writable
    assert wire.transport.written == [text_frame(b"1")]
    sock.flush()  # what resume_writing calls
    assert wire.transport.written == [text_frame(x) for x in (b"1", b"2", b"3", b"4")]
    assert sock.queue is None


def test_the_queue_of_a_paused_transport_is_bounded_in_frames_and_bytes() -> None:
    sock, wire = direct_socket(max_queue=3)
    wire.paused = True
    assert sock.push("a") and sock.push("b") and sock.push("c")
    assert not sock.push("d")  # full: the gateway closes such a socket
    big, wire_big = direct_socket(max_queue=100, max_bytes=300)
    wire_big.paused = True
    assert big.push("x" * 250)  # one frame always fits an empty queue
    assert not big.push("y" * 100)


def test_a_closed_transport_drops_what_waits() -> None:
    sock, wire = direct_socket()
    wire.paused = True
    sock.push("a")
    wire.transport.closing = True
    wire.paused = False
    sock.flush()  # what connection_lost calls
    assert sock.closed and sock.queue is None and wire.transport.written == []


def test_through_asgi_frames_are_sent_in_order_by_a_task_that_ends_when_idle() -> None:
    async def go() -> None:
        sent: list[str] = []
        gate = asyncio.Event()

        async def send(message: dict[str, Any]) -> None:
            await gate.wait()
            sent.append(message["text"])

        sock = Socket("sid", send, 3, 10_000)
        assert sock.push("1") and sock.push(b"2")
        await asyncio.sleep(0)  # the drainer took "1" and waits in send
        assert sock.push("3") and sock.push("4")
        assert not sock.push("5")  # three wait: full
        gate.set()
        await sock.flushed(within=2)
        assert sent == ["1", "2", "3", "4"]
        await asyncio.sleep(0)
        assert sock._drainer is None  # no task while nothing waits
        assert sock.push("6")
        await sock.flushed(within=2)
        assert sent[-1] == "6"

    asyncio.run(go())


def test_a_resume_waits_for_room_in_the_queue() -> None:
    async def go() -> None:
        sock, wire = direct_socket(max_queue=2)
        wire.paused = True
        assert sock.push("a") and sock.push("b")
        waiting = asyncio.create_task(sock.put("c", within=5))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        wire.paused = False
        sock.flush()
        assert await waiting
        assert wire.transport.written == [text_frame(x) for x in (b"a", b"b", b"c")]
        wire.paused = True
        assert sock.push("d") and sock.push("e")
        assert not await sock.put("f", within=0.05)  # the client did not read in time

    asyncio.run(go())


def test_a_busy_socket_remembers_a_bounded_number_of_message_versions() -> None:
    """Every live chat message is remembered (a resume skips it, and a late copy of it
    is dropped), but only the last RECENT_VERSIONS: a socket in a busy room must not
    grow without bound."""
    from parley.gateway import server
    from parley.services.events import CHAT_MESSAGE, Event

    sock, wire = direct_socket(max_queue=10_000, max_bytes=100_000_000)
    sock.principal = object()  # type: ignore[assignment]  # authenticated
    gateway = server.Gateway.__new__(server.Gateway)  # delivery alone: no services
    gateway._by_room = {("app", "room"): {sock}}
    gateway._by_user = {}
    gateway.max_queue = 10_000

    def deliver(n: int) -> None:
        message = {"_id": f"m{n}", "updatedAtMS": n, "message": str(n)}
        gateway._deliver(Event("app", CHAT_MESSAGE, message, rooms=["room"]))

    total = server.RECENT_VERSIONS + 50
    for n in range(total):
        deliver(n)
    assert len(wire.transport.written) == total
    assert sock.recent is not None and len(sock.recent) == server.RECENT_VERSIONS
    deliver(total - 1)  # a late copy of a remembered version: dropped
    assert len(wire.transport.written) == total
    deliver(0)  # long forgotten: sent again
    assert len(wire.transport.written) == total + 1
