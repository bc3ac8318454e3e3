"""Real time for :mod:`parley.client`: one user's live connection to the gateway.

::

    with Client(url, client_key, token) as alice:
        async with alice.realtime() as rt:          # open on entry, closed on exit
            rt.on("typing", show_typing)             # callbacks, plain or async
            stored = await rt.send("lobby", "hi", client_message_id="m-1")
            await rt.typing("lobby")
            async for name, data in rt.events():     # and/or an iterator of (name, data)
                ...

``rt = await alice.connect()`` does the same without the block; ``await rt.close()`` ends
it. Events are the gateway's (``chat message``, ``room``, ``lastRead``, ``typing``,
``roomPref``, ``myPrefChange``, ``myPrefDelete``, ``invitation``, ``cancelInvitation``,
``userDeleteMessages``) plus two of the connection's own: ``disconnect`` (data: why) when
it is lost and ``reconnect`` (data: how many attempts it took) when it is back.

Why it works the way it does:

- It speaks Engine.IO 4 / Socket.IO 5 over one WebSocket with the gateway's own codec
  (:mod:`parley.gateway.protocol`) and authenticates in the CONNECT packet. A refusal
  raises :class:`~parley.client.ParleyAPIError` with the contract's code
  (``MISSING_CLIENT_KEY``, ``INVALID_CLIENT_KEY``, ``CLIENT_KEY_MISMATCH``,
  ``INVALID_TOKEN``) and is never retried: the same credentials would be refused again.
- Nothing missed, nothing twice. The connection keeps, per room, the highest ``seq`` it
  has received, and every CONNECT asks the gateway to resume from there: the gateway sends
  what was stored after those positions, then the live messages, each once and in order.
  The positions start where the rooms are: the ``seed_rooms`` most recently active rooms
  are read over REST *before* the first CONNECT (so a message sent in between is resumed,
  not lost), and ``resume`` positions saved from an earlier run (:attr:`positions`) take
  precedence. A lost connection is reopened with bounded, jittered exponential backoff.
  Recent ``(_id, updatedAtMS)`` pairs drop anything that arrives twice all the same.
- One task reads the socket and another delivers events, so a callback may await
  :meth:`send`: the reader stays free to receive its ack.
- :meth:`send` with a ``client_message_id`` survives a lost connection: it is sent again
  once reconnected and the server answers with the message it stored the first time.

What a resume cannot bring back: edits and recalls of older messages, and the events other
than ``chat message`` (room changes, typing, read receipts...) of the time offline; refresh
those over REST on ``reconnect``. The gateway resumes at most 1,000 rooms and 10,000
messages a room.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as open_websocket
from websockets.exceptions import ConnectionClosed, WebSocketException

from parley.client import ParleyAPIError, _error_of
from parley.gateway.protocol import (
    ACK,
    CONNECT,
    CONNECT_ERROR,
    DISCONNECT,
    EIO_CLOSE,
    EIO_MESSAGE,
    EIO_OPEN,
    EIO_PING,
    EIO_PONG,
    EVENT,
    ProtocolError,
    decode_engine,
    decode_socket,
    socket_frame,
)

if TYPE_CHECKING:
    from parley.client import Client

__all__ = ["EventStream", "Handler", "Realtime"]

log = logging.getLogger("parley.client.realtime")

Handler = Callable[[Any], object]
"""An event callback: called with the event's data; may be a coroutine function."""

# Refusals that the same credentials would meet again: never retried.
AUTH_CODES = frozenset(
    {"MISSING_CLIENT_KEY", "INVALID_CLIENT_KEY", "CLIENT_KEY_MISMATCH", "INVALID_TOKEN"}
)
MAX_RESUME_ROOMS = 1000  # the gateway resumes no more rooms than this
RECENT_VERSIONS = 4096
MAX_FRAME_IN = 16 * 2**20


class _FramesUnlogged(logging.LoggerAdapter[logging.Logger]):
    """websockets' logger without its DEBUG lines: they quote the frames, and the CONNECT
    frame carries the user's token."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and super().isEnabledFor(level)


_QUIET_FRAMES = _FramesUnlogged(logging.getLogger("websockets.client"), {})


class _Lost(Exception):
    """The connection failed or ended under us (as opposed to being refused)."""


class _Recent:
    """The last ``size`` message versions received: a duplicate is one of them."""

    def __init__(self, size: int) -> None:
        self._order: deque[tuple[Any, Any]] = deque()
        self._items: set[tuple[Any, Any]] = set()
        self._size = size

    def first_time(self, version: tuple[Any, Any]) -> bool:
        """Remember ``version``; False if it was already there."""
        if version in self._items:
            return False
        self._order.append(version)
        self._items.add(version)
        if len(self._order) > self._size:
            self._items.discard(self._order.popleft())
        return True


class _End:
    """What a stream holds once its connection is over (and the error that ended it)."""

    def __init__(self, error: ParleyAPIError | None) -> None:
        self.error = error


class EventStream:
    """The events of one connection from the moment :meth:`Realtime.events` made it, as
    ``(name, data)``. It ends when the connection is closed, and raises the error that
    ended it otherwise (a refused reconnect). Unread events wait in memory: a stream you
    stop reading is forgotten once you drop it."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[str, Any] | _End] = asyncio.Queue()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> tuple[str, Any]:
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # so that every later read ends too
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item

    def _put(self, item: tuple[str, Any] | _End) -> None:
        self._queue.put_nowait(item)


class Realtime:
    """One user's real-time connection (see the module's documentation).

    ``resume``: ``{roomId: seq}`` to start from (e.g. :attr:`positions` saved by an earlier
    run). ``seed_rooms``: how many of the most recently active rooms to read over REST
    first (0: none; rooms are then followed from their first message). ``backoff``: the
    first and the largest delay between reconnection attempts, in seconds. ``ack_timeout``:
    how long :meth:`send` waits, reconnection included. ``headers``: extra headers of the
    WebSocket upgrade (``Origin``, for instance).
    """

    def __init__(
        self,
        domain: str,
        client_key: str,
        token: str,
        *,
        rest: Client | None = None,
        resume: Mapping[str, int] | None = None,
        seed_rooms: int = 100,
        backoff: tuple[float, float] = (0.5, 15.0),
        ack_timeout: float = 10.0,
        open_timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._url = _socket_url(domain)
        self._auth = {"clientKey": client_key, "token": token}
        self._rest = rest
        self._seed_rooms = seed_rooms
        self._backoff = backoff
        self._ack_timeout = ack_timeout
        self._open_timeout = open_timeout
        self._headers = dict(headers or {})
        self._positions: OrderedDict[str, int] = OrderedDict()
        for room, seq in (resume or {}).items():
            self._advance(room, seq)
        self._recent = _Recent(RECENT_VERSIONS)
        self._handlers: dict[str, list[Handler]] = {}
        self._streams: weakref.WeakSet[EventStream] = weakref.WeakSet()
        self._inbox: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_ack = 0
        self._ws: ClientConnection | None = None
        self._state = asyncio.Event()  # set whenever the socket opens or the end comes
        self._silence_limit = open_timeout
        self._max_payload = 1_000_000
        self._supervisor: asyncio.Task[None] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._closing = False
        self._ended = False
        self._error: ParleyAPIError | None = None

    # -- public -------------------------------------------------------------------------

    async def connect(self) -> Realtime:
        """Open the connection: raises :class:`ParleyAPIError` if it is refused, or with
        ``CONNECTION_ERROR`` if the server cannot be reached (a first connection is not
        retried: the caller learns at once that something is wrong)."""
        if self._supervisor is not None:
            raise RuntimeError("this connection was already opened")
        if not self._auth["clientKey"] and not self._auth["token"]:
            # Without either, the gateway would accept a socket that hears nothing.
            raise ParleyAPIError(401, "MISSING_CLIENT_KEY", "a Client Key is required")
        await self._seed()
        try:
            ws = await self._open()
        except _Lost as lost:
            raise ParleyAPIError(0, "CONNECTION_ERROR", str(lost)) from None
        self._dispatcher = asyncio.create_task(self._dispatch())
        self._supervisor = asyncio.create_task(self._supervise(ws))
        return self

    async def close(self) -> None:
        """End the connection (no reconnection follows); streams end once the events
        already received have been delivered."""
        if self._closing:
            return
        self._closing = True
        if self._supervisor is None:  # never opened: end the streams made beforehand
            self._ended = True
            for stream in list(self._streams):
                stream._put(_End(None))
            return
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(ConnectionClosed, OSError):
                await ws.send(socket_frame(DISCONNECT))
                await ws.close()
        self._supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._supervisor
        dispatcher = self._dispatcher
        if dispatcher is not None and dispatcher is not asyncio.current_task():
            await dispatcher

    async def wait_closed(self) -> None:
        """Wait until the connection is over; raises the error that ended it, if any."""
        if self._supervisor is not None:
            await asyncio.wait({self._supervisor})
        if self._error is not None:
            raise self._error

    async def __aenter__(self) -> Realtime:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def positions(self) -> dict[str, int]:
        """``{roomId: highest seq received}``: save it to pass as ``resume`` next time."""
        return dict(self._positions)

    def on(self, name: str, handler: Handler) -> Handler:
        """Call ``handler(data)`` for every event ``name``, in the order they arrive; an
        exception it raises is logged and does not stop the others."""
        self._handlers.setdefault(name, []).append(handler)
        return handler

    def off(self, name: str, handler: Handler) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._handlers[name].remove(handler)

    def events(self) -> EventStream:
        """A stream of the events from now on: ``async for name, data in rt.events()``.
        Made before :meth:`connect`, it misses nothing of this connection."""
        stream = EventStream()
        if self._ended:
            stream._put(_End(self._error))
        else:
            self._streams.add(stream)
        return stream

    async def send(
        self,
        room: str,
        message: Any = None,
        *,
        message_type: str = "text",
        client_message_id: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Send a message over the socket (the REST send path on the server, same rules):
        returns the stored message, raises :class:`ParleyAPIError` with the server's code
        if it is refused. With ``client_message_id`` it is sent again if the connection is
        lost before the answer; without, that raises ``CONNECTION_ERROR``."""
        body: dict[str, Any] = {**fields, "room": room, "messageType": message_type}
        if message is not None:
            body["message"] = message
        if client_message_id is not None:
            body["clientMessageId"] = client_message_id
        ack = await self._call("chat message", body, retry=client_message_id is not None)
        if not isinstance(ack, dict) or ack.get("RC") != 0:
            answer: dict[str, Any] = ack if isinstance(ack, dict) else {}
            raise _error_of(int(answer.get("RC") or 0), ack, str(answer.get("RM") or ""))
        result: dict[str, Any] = ack.get("result") or {}
        return result

    async def typing(self, room: str) -> None:
        """Tell the room's other members that this user is typing. Fleeting by nature:
        nothing is sent while the connection is being reopened."""
        self._raise_if_over()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(socket_frame(EVENT, ["typing", room]))

    # -- opening --------------------------------------------------------------------------

    async def _seed(self) -> None:
        """Start each recently active room at its last message, read before CONNECT so
        that the gateway resumes whatever is sent in between."""
        if self._rest is None or self._seed_rooms <= 0:
            return
        page = await asyncio.to_thread(
            self._rest.rooms, sort="-lastMessage", limit=self._seed_rooms
        )
        for room in reversed(page.get("data") or []):  # least active first, as positions go
            if isinstance(room, dict) and room.get("_id") not in self._positions:
                self._advance(room.get("_id"), _last_seq(room))

    async def _open(self) -> ClientConnection:
        """A WebSocket through the Engine.IO and Socket.IO handshakes, authenticated and
        resuming from the current positions."""
        try:
            ws = await open_websocket(
                self._url,
                additional_headers=self._headers,
                open_timeout=self._open_timeout,
                close_timeout=2,
                ping_interval=None,  # Engine.IO's heartbeat is the one the server watches
                max_size=MAX_FRAME_IN,
                logger=_QUIET_FRAMES,
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise _Lost(f"cannot open {self._url}: {exc}") from exc
        try:
            async with asyncio.timeout(self._open_timeout):
                await self._handshake(ws)
        except TimeoutError:
            ws.transport.abort()
            raise _Lost("no answer to the handshake") from None
        except (ProtocolError, ValueError, KeyError, TypeError) as exc:
            ws.transport.abort()
            raise _Lost(f"a broken handshake: {exc!r}") from None
        except BaseException:
            ws.transport.abort()
            raise
        return ws

    async def _handshake(self, ws: ClientConnection) -> None:
        kind, data = decode_engine(await _receive(ws))
        if kind != EIO_OPEN:
            raise _Lost("the server did not open an Engine.IO session")
        opening = orjson.loads(data)
        # The server pings every pingInterval; silent for longer than that plus
        # pingTimeout, it is gone (the same rule it applies to us).
        self._silence_limit = (int(opening["pingInterval"]) + int(opening["pingTimeout"])) / 1000
        self._max_payload = int(opening.get("maxPayload") or self._max_payload)
        resume = dict(list(self._positions.items())[-MAX_RESUME_ROOMS:])
        await ws.send(socket_frame(CONNECT, {**self._auth, "resume": resume}))
        while True:
            kind, data = decode_engine(await _receive(ws))
            if kind == EIO_PING:
                await ws.send(EIO_PONG + data)
            elif kind == EIO_MESSAGE:
                packet = decode_socket(data)
                if packet.type == CONNECT:
                    return
                if packet.type == CONNECT_ERROR:
                    raise _refusal(packet.data)

    # -- the connection's life ----------------------------------------------------------

    async def _supervise(self, ws: ClientConnection) -> None:
        """Read until the connection is lost, then reopen it, until closed or refused."""
        try:
            while True:
                reason = await self._read(ws)
                if self._closing or reason is None:
                    return
                self._deliver("disconnect", reason)
                ws, attempts = await self._reconnect()
                self._deliver("reconnect", attempts)
        except ParleyAPIError as refused:
            log.warning("real-time connection refused: %s", refused)
            self._error = refused
        finally:
            self._ended = True
            self._state.set()  # wakes callers waiting for a socket: there will be none
            self._inbox.put_nowait(None)

    async def _read(self, ws: ClientConnection) -> str | None:
        """Handle frames until the connection ends: why it was lost, or None when the
        server ended the session (a Socket.IO DISCONNECT: do not come back)."""
        self._ws = ws
        self._state.set()
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(ws.recv(), self._silence_limit)
                except TimeoutError:
                    return "the server stopped answering"
                except ConnectionClosed as closed:
                    return f"the connection closed ({closed})"
                if not isinstance(frame, str):
                    return "the server sent a binary frame"
                try:
                    if not await self._handle(ws, frame):
                        return None
                except ProtocolError as exc:
                    return f"protocol error: {exc}"
                except _Lost as lost:
                    return str(lost)
                except ConnectionClosed as closed:
                    return f"the connection closed ({closed})"
        finally:
            self._ws = None
            self._state.clear()
            ws.transport.abort()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(_Lost("the connection was lost"))

    async def _handle(self, ws: ClientConnection, frame: str) -> bool:
        """One frame; False when the server ended the session."""
        kind, data = decode_engine(frame)
        if kind == EIO_PING:
            await ws.send(EIO_PONG + data)
        elif kind == EIO_CLOSE:
            raise _Lost("the server closed the Engine.IO session")
        elif kind == EIO_MESSAGE:
            packet = decode_socket(data)
            if packet.type == EVENT:
                self._on_event(packet.data)
            elif packet.type == ACK and packet.ack_id is not None:
                future = self._pending.get(packet.ack_id)
                if future is not None and not future.done():
                    future.set_result(packet.data[0] if packet.data else None)
            elif packet.type == DISCONNECT:
                return False
        return True

    async def _reconnect(self) -> tuple[ClientConnection, int]:
        """Reopen the connection, waiting longer after each failure; a refusal of the
        credentials ends it (raised), other refusals (e.g. 503) are tried again."""
        attempts = 0
        while True:
            await asyncio.sleep(self._delay(attempts))
            attempts += 1
            try:
                return await self._open(), attempts
            except _Lost as lost:
                log.info("reconnection attempt %d failed: %s", attempts, lost)
            except ParleyAPIError as refused:
                if refused.error in AUTH_CODES or refused.status in (401, 403):
                    raise
                log.info("reconnection attempt %d refused: %s", attempts, refused)

    def _delay(self, attempts: int) -> float:
        """Exponential and capped, jittered over its upper half so that the clients a
        server restart dropped do not all come back at the same instant."""
        first, largest = self._backoff
        ceiling = min(largest, first * 2 ** min(attempts, 30))
        # Jitter needs no cryptographic randomness.
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311

    # -- events -------------------------------------------------------------------------

    def _on_event(self, args: list[Any]) -> None:
        name, data = args[0], (args[1] if len(args) > 1 else None)
        if name == "chat message" and not self._first_time(data):
            return
        if name == "room" and isinstance(data, dict):
            room = data.get("_id")
            if isinstance(room, str) and room not in self._positions:
                # A room we are new to: its messages from now on are ours to resume.
                self._advance(room, _last_seq(data))
        self._deliver(name, data)

    def _first_time(self, message: Any) -> bool:
        """Track the message's room position; False for a version already received."""
        if not isinstance(message, dict):
            return True
        if not self._recent.first_time((message.get("_id"), message.get("updatedAtMS"))):
            return False
        self._advance(message.get("room"), message.get("seq"))
        return True

    def _advance(self, room: Any, seq: Any) -> None:
        """Raise the room's position to ``seq``, keeping the most recently active rooms
        last and no more than the gateway resumes."""
        if not isinstance(room, str) or not isinstance(seq, int) or isinstance(seq, bool):
            return
        self._positions[room] = max(seq, self._positions.get(room, -1))
        self._positions.move_to_end(room)
        while len(self._positions) > MAX_RESUME_ROOMS:
            self._positions.popitem(last=False)

    def _deliver(self, name: str, data: Any) -> None:
        self._inbox.put_nowait((name, data))

    async def _dispatch(self) -> None:
        """Hand each event to the streams, then to the callbacks, in order."""
        while (item := await self._inbox.get()) is not None:
            name, data = item
            for stream in list(self._streams):
                stream._put(item)
            for handler in list(self._handlers.get(name, ())):
                await _run_handler(name, handler, data)
        for stream in list(self._streams):
            stream._put(_End(self._error))

    # -- calls with acks ----------------------------------------------------------------

    async def _call(self, name: str, payload: Any, *, retry: bool) -> Any:
        """Emit ``name`` with an ack id and wait for the ack (reconnection included)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._ack_timeout
        while True:
            ws = await self._socket(deadline)
            ack_id = self._next_ack
            self._next_ack += 1
            frame = socket_frame(EVENT, [name, payload], ack_id)
            if len(frame) > self._max_payload:
                # The server would close the socket on it, and a retry would again.
                raise ParleyAPIError(413, "PAYLOAD_TOO_LARGE", "the message is too large")
            future: asyncio.Future[Any] = loop.create_future()
            self._pending[ack_id] = future
            try:
                await ws.send(frame)
                async with asyncio.timeout_at(deadline):
                    return await future
            except (_Lost, ConnectionClosed):
                if not retry:
                    raise ParleyAPIError(
                        0, "CONNECTION_ERROR", "the connection was lost before the answer"
                    ) from None
                self._pending.pop(ack_id, None)  # the reader fails what is pending
                await self._until_let_go(ws, deadline)
            except TimeoutError:
                raise ParleyAPIError(
                    0, "CONNECTION_ERROR", f"no answer within {self._ack_timeout} s"
                ) from None
            finally:
                self._pending.pop(ack_id, None)

    async def _until_let_go(self, ws: ClientConnection, deadline: float) -> None:
        """Wait until the reader has given up ``ws``. A send on a socket that has just
        closed fails at once, without suspending, while the reader has not yet seen the
        close: retrying on the same socket straight away would spin forever and never
        let the reader run."""
        loop = asyncio.get_running_loop()
        while self._ws is ws:
            if loop.time() >= deadline:
                raise ParleyAPIError(
                    0, "CONNECTION_ERROR", f"no answer within {self._ack_timeout} s"
                )
            await asyncio.sleep(0.01)

    async def _socket(self, deadline: float) -> ClientConnection:
        """The open socket, waiting for a reconnection until ``deadline``."""
        while True:
            self._raise_if_over()
            if self._ws is not None:
                return self._ws
            try:
                async with asyncio.timeout_at(deadline):
                    await self._state.wait()
            except TimeoutError:
                raise ParleyAPIError(0, "CONNECTION_ERROR", "not connected") from None

    def _raise_if_over(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closing or self._ended or self._supervisor is None:
            raise ParleyAPIError(0, "CONNECTION_ERROR", "the connection is not open")


async def _receive(ws: ClientConnection) -> str:
    """The next text frame; a closed connection or binary frame is a lost connection."""
    try:
        frame = await ws.recv()
    except ConnectionClosed as closed:
        raise _Lost(f"the connection closed ({closed})") from None
    if not isinstance(frame, str):
        raise _Lost("the server sent a binary frame")
    return frame


async def _run_handler(name: str, handler: Handler, data: Any) -> None:
    try:
        result = handler(data)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("a callback of %r failed", name)


def _refusal(data: Any) -> ParleyAPIError:
    """A CONNECT_ERROR as the error REST gives for the same credentials: its ``data`` is
    the gateway's error ack ``{RC, RM, error: {code, message}}``."""
    fields = data if isinstance(data, dict) else {}
    ack = fields.get("data")
    if isinstance(ack, dict):
        return _error_of(int(ack.get("RC") or 0), ack, str(ack.get("RM") or ""))
    message = str(fields.get("message") or "refused")
    return ParleyAPIError(0, "CONNECTION_REFUSED", message, data)


def _last_seq(room: dict[str, Any]) -> int:
    """The ``seq`` of a room's last message; 0 when it has none, so that every message
    it gets is resumed."""
    last = room.get("lastMessage")
    seq = last.get("seq") if isinstance(last, dict) else None
    return seq if isinstance(seq, int) else 0


def _socket_url(domain: str) -> str:
    """``http(s)://host[/prefix]`` as the gateway's WebSocket address."""
    base = domain.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return base + "/socket.io/?EIO=4&transport=websocket"
