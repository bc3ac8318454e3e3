"""The real-time gateway: ``/socket.io/`` on the REST port (contract §5).

One :class:`Gateway` per node. It owns the protocol (see :mod:`parley.gateway.protocol`)
so that a frame is encoded once per encoding and written to every socket that gets it.

A socket's life:
1. WebSocket accepted, Engine.IO ``open`` sent; pings every ``ping_interval`` seconds, a
   socket that does not answer within ``ping_timeout`` is closed.
2. Socket.IO CONNECT to the root namespace. With ``auth: {clientKey, token}`` the socket
   is authenticated right there (modern clients); without it, the IMKIT handshake follows:
   ``conf`` (``{"encoding": "base64"}`` turns every payload and ack of this socket into
   base64 of its JSON) then ``auth2(token, headers, ack)`` or the legacy ``auth(token,
   ack)``. Authentication is the REST path itself (``Authenticator.authenticate``), so
   the Client Key rules and error codes are the same; a failure is acked with the error
   and the socket closed. Until then the socket receives nothing and may send nothing.
3. Authenticated, it receives every event of the rooms its user belongs to (followed live
   as ``room`` events change membership) and of the user itself; it may send ``typing``
   and ``chat message`` (through the same message writer as REST; the socket reads on
   while its messages are stored, at most MAX_SENDS_IN_FLIGHT at a time, stored in the
   order they arrived).
A frame that breaks the protocol closes its own socket only. Frames that cannot be
written at once (see :mod:`parley.gateway.transport`) wait in a queue per socket,
bounded in frames and in bytes; a socket that stops reading until it is full is closed,
and so is one not authenticated within ``connect_timeout`` of opening.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Collection
from http import HTTPStatus
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from parley.api.deps import host_of, origin_of
from parley.api.errors import status_of
from parley.gateway.memberships import RoomsOfUsers
from parley.gateway.ordering import RoomOrder
from parley.gateway.protocol import (
    ACK,
    CONNECT,
    CONNECT_ERROR,
    DISCONNECT,
    EIO_CLOSE,
    EIO_MESSAGE,
    EIO_PING,
    EIO_PONG,
    EVENT,
    ProtocolError,
    decode_engine,
    decode_socket,
    engine_open,
    event_packet,
    socket_frame,
)
from parley.gateway.transport import EXTENSION, GatewayWebSocketProtocol, text_frame
from parley.services.auth import Access, Credentials, Principal
from parley.services.changes import Change
from parley.services.container import Services
from parley.services.errors import AuthError, InvalidRequest, InvalidToken, ParleyError
from parley.services.events import CHANNEL, CHAT_MESSAGE, ROOM, ROOM_DELETED, TYPING, Event
from parley.services.messages import RECALL
from parley.services.users import user_embedded

log = logging.getLogger("parley.gateway")

PATHS = ("/socket.io", "/socket.io/")
MAX_RESUME_ROOMS = 1000
MAX_SENDS_IN_FLIGHT = 32  # chat messages of one socket being stored at once
# The message versions a socket remembers having got (Socket.recent). They cover what can
# reach a socket twice: a live event still on its way when a resume sent the message
# from the database (the newest of what the resume sent), and, for a resume asked on a
# live socket, the messages it got live after the client's cursor. Measured with
# tracemalloc (1,000 sockets of one room, 3,000 messages): a busy socket held 170-270 KB
# of them at 2,048 (ten times an idle socket's whole footprint), 34 KB at 256.
RECENT_VERSIONS = 256
MAX_RESUME_MESSAGES = 10_000  # per room; a client further behind reloads its history
RESUME_PAGE = 500
RESUME_WAIT = 10.0  # seconds a resume waits for its client to read before giving up
MAX_SEQ = 2**63 - 1  # the database's largest integer
CLOSE_WAIT = 1.0  # seconds the close frame may wait for a client that stopped reading
OUTAGE_MARGIN_MS = 5_000
MAX_OUTAGE_REPLAY = 10_000  # per 500 rooms of an app; clients further behind resume


class RecentSet(OrderedDict[Any, None]):
    """The last :data:`RECENT_VERSIONS` items added, as a set: one ordered dict, the
    oldest dropped first."""

    __slots__ = ()

    def add(self, item: Any) -> None:
        if item in self:
            return
        self[item] = None
        if len(self) > RECENT_VERSIONS:
            self.popitem(last=False)

    def snapshot(self) -> set[Any]:
        return set(self)


class Socket:
    """One client connection. ``encoding`` is "plain" or "base64" (set by ``conf``).

    Frames go out in the order they are pushed. With the transport of
    :mod:`parley.gateway.transport` (``wire``), a frame is written to it at once while it
    is not paused and nothing waits before it; otherwise it waits in the queue, which the
    transport empties when it may be written to again. Without (another ASGI server), the
    queue is emptied through ``send`` by a task that lives only while it is not empty.
    Either way the queue is bounded in frames and in bytes (characters through ASGI)."""

    __slots__ = (
        "_changed",
        "_drainer",
        "_max_queue",
        "_max_queue_bytes",
        "_queued_bytes",
        "_send",
        "_sending",
        "catching_up",
        "close_code",
        "closed",
        "counted",
        "creds",
        "deadline",
        "dropped",
        "encoding",
        "idle",
        "last_seen",
        "pinger",
        "principal",
        "queue",
        "recent",
        "rooms",
        "sends",
        "sid",
        "task",
        "wire",
    )

    def __init__(
        self,
        sid: str,
        send: Send,
        max_queue: int,
        max_queue_bytes: int,
        wire: GatewayWebSocketProtocol | None = None,
    ) -> None:
        self.sid = sid
        self._send = send
        self.wire = wire
        self.encoding = "plain"
        self.principal: Principal | None = None
        self.creds: Credentials | None = None  # what it authenticated with
        self.rooms: set[str] = set()
        self.last_seen = time.monotonic()
        # Frames waiting to be written: WebSocket frames (bytes) for ``wire``, else the
        # text of each. Made when first needed (most sockets never wait); with ``wire``,
        # None again once empty.
        self.queue: deque[bytes | str] | None = None
        self._queued_bytes = 0
        self._max_queue = max_queue
        self._max_queue_bytes = max_queue_bytes
        self._drainer: asyncio.Task[None] | None = None
        self._sending = False  # the drainer is sending a frame it took off the queue
        self._changed: asyncio.Event | None = None  # made for whoever waits on the queue
        # Rooms being resumed: their live ``chat message`` frames wait here, keyed by
        # (message id, updatedAtMS), until the missed messages have gone out.
        self.catching_up: dict[str, list[tuple[tuple[Any, Any], bytes]]] | None = None
        # The message versions this socket got last: a resume skips them, and an event
        # that arrives after a resume already sent its message from the database is
        # dropped. Made with the first message.
        self.recent: RecentSet | None = None
        self.task: asyncio.Task[Any] | None = None  # the handler reading from the client
        self.idle = False  # that handler waits for the client's next frame
        self.dropped = False  # the server cancelled that wait (see Gateway._drop)
        self.close_code = 1000
        self.sends: set[asyncio.Task[None]] | None = None  # chat messages being stored
        self.counted = False  # in presence (authenticated, not yet forgotten)
        self.pinger: asyncio.TimerHandle | None = None
        self.deadline: asyncio.TimerHandle | None = None  # to authenticate by
        self.closed = False

    @property
    def key(self) -> tuple[str, str] | None:
        if self.principal is None or self.principal.user_id is None:
            return None
        return (self.principal.app_id, self.principal.user_id)

    def _fits(self, size: int) -> bool:
        queue = self.queue
        if not queue:
            return True  # one frame always fits: a large room event must get through
        return len(queue) < self._max_queue and self._queued_bytes + size <= self._max_queue_bytes

    def push(self, packet: bytes | str, frame: bytes | None = None) -> bool:
        """Send an Engine.IO packet (``frame``: the same as a WebSocket frame, when the
        caller has it); False when the client has stopped reading (queue full)."""
        if self.closed:
            return True
        wire = self.wire
        if wire is None:
            text = packet if isinstance(packet, str) else packet.decode()
            if not self._enqueue(text, len(text)):
                return False
            if self._drainer is None:
                self._drainer = asyncio.get_running_loop().create_task(self._drain())
            return True
        if frame is None:
            frame = text_frame(packet.encode() if isinstance(packet, str) else packet)
        if self.queue is None and not wire.paused and not wire.transport.is_closing():
            wire.transport.write(frame)
            return True
        return self._enqueue(frame, len(frame))

    def _enqueue(self, item: bytes | str, size: int) -> bool:
        if not self._fits(size):
            return False
        if self.queue is None:
            self.queue = deque()
        self.queue.append(item)
        self._queued_bytes += size
        return True

    def frame_size(self, packet: bytes | str) -> tuple[bytes | None, int]:
        """What ``packet`` counts against the queue's bound, and its frame if built."""
        if self.wire is None:
            return None, len(packet)
        frame = text_frame(packet.encode() if isinstance(packet, str) else packet)
        return frame, len(frame)

    def flush(self) -> None:
        """The transport may be written to again (or is gone): write what waits, until
        it pauses again."""
        wire, queue = self.wire, self.queue
        if wire is None or queue is None:
            self._notify()
            return
        if wire.transport.is_closing():
            self.discard()
            return
        while queue and not wire.paused:
            frame = queue.popleft()
            self._queued_bytes -= len(frame)
            wire.transport.write(frame)  # type: ignore[arg-type]
        if not queue:
            self.queue = None
        self._notify()

    async def _drain(self) -> None:
        """Through ASGI: send what waits, then end (the next push starts another)."""
        try:
            while self.queue and not self.closed:
                text = self.queue.popleft()
                self._queued_bytes -= len(text)
                self._sending = True
                self._notify()
                await self._send({"type": "websocket.send", "text": text})
                self._sending = False
        except Exception:
            self.discard()  # the connection is gone: its handler ends on the disconnect
        finally:
            self._drainer = None
            self._sending = False
            self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _changes(self, deadline: float) -> bool:
        """Wait until the queue shrinks or the socket closes; False past ``deadline``."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if self._changed is None:
            self._changed = asyncio.Event()
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), remaining)
        except TimeoutError:
            return False
        return True

    async def put(self, packet: bytes | str, within: float) -> bool:
        """Send a packet of a bulk send (a resume), waiting up to ``within`` seconds for
        the client to make room; False when it did not, or the socket closed."""
        deadline = time.monotonic() + within
        frame, size = self.frame_size(packet)
        while not self.closed and not self._fits(size):
            if not await self._changes(deadline):
                return False
        return not self.closed and self.push(packet, frame)

    def discard(self) -> None:
        """Closed: what waits in the queue will never be sent; free it now."""
        self.closed = True
        self.queue = None
        self._queued_bytes = 0
        if self.pinger is not None:
            self.pinger.cancel()
            self.pinger = None
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self._notify()

    async def flushed(self, within: float = 0.5) -> None:
        """Wait (briefly) until the queued frames have been written, including one the
        drainer has taken off the queue but not finished sending."""
        deadline = time.monotonic() + within
        while (self.queue or self._sending) and not self.closed:
            if not await self._changes(deadline):
                return

    def payload(self, data: Any) -> Any:
        """``data`` as this socket's encoding carries it."""
        if self.encoding == "base64":
            return base64.b64encode(orjson.dumps(data)).decode()
        return data


class Gateway:
    def __init__(
        self,
        services: Services,
        *,
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
        connect_timeout: float = 45.0,
        max_payload: int = 1_000_000,
        max_queue: int = 1000,
        max_queue_bytes: int | None = None,
    ) -> None:
        self._svc = services
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.connect_timeout = connect_timeout
        self.max_payload = max_payload
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes or 4 * max_payload
        self._sockets: dict[str, Socket] = {}
        self._by_user: dict[tuple[str, str], set[Socket]] = {}
        self._by_room: dict[tuple[str, str], set[Socket]] = {}
        self._rechecks: set[asyncio.Task[None]] = set()
        self._memberships = RoomsOfUsers(services.db)
        # Each room's new messages leave in seq order, whichever node stored them.
        self._order = RoomOrder(
            self._deliver,
            services.history.after_seq,
            lambda app, room: (app, room) in self._by_room,
        )

    def attach(self) -> None:
        """Subscribe to the event channel (before the broker starts), and to credential
        changes: a revoked token or key closes the sockets it opened."""
        self._svc.broker.subscribe(CHANNEL, self._on_event)
        self._svc.broker.on_reconnect(self._replay_after_outage)
        self._svc.change_listeners.append(self._on_change)

    async def close(self) -> None:
        """Stop waiting for messages that a gap held back (the node is stopping)."""
        await self._order.close()

    def _on_change(self, change: Change | None) -> None:
        if change is not None and change.kind in ("profile", "profiles"):
            return
        affected = [
            sock
            for sock in self._sockets.values()
            if sock.principal is not None
            and (
                change is None
                or (sock.principal.app_id == change.app_id and change.kind == "app")
                or (change.kind == "user" and sock.key == (change.app_id, change.subject))
            )
        ]
        if affected:
            task = asyncio.get_running_loop().create_task(self._recheck(affected))
            self._rechecks.add(task)
            task.add_done_callback(self._rechecks.discard)

    async def _recheck(self, sockets: list[Socket]) -> None:
        """Authenticate each socket again with what it presented; close the refused."""
        for sock in sockets:
            if sock.closed or sock.creds is None:
                continue
            try:
                await self._svc.auth.authenticate(sock.creds, Access.USER)
            except AuthError:
                log.info("socket %s: its credentials were revoked; closing", sock.sid)
                self._drop(sock)
            except ParleyError:
                continue  # the database is unreachable: check again at the next change

    @property
    def socket_count(self) -> int:
        """Open sockets on this node, authenticated or not."""
        return len(self._sockets)

    # -- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await _refuse_polling(send)
            return
        query = dict(
            part.split("=", 1) if "=" in part else (part, "")
            for part in scope.get("query_string", b"").decode("latin-1").split("&")
            if part
        )
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if query.get("EIO") != "4" or query.get("transport", "websocket") != "websocket":
            await send({"type": "websocket.close", "code": 1002})
            return
        await send({"type": "websocket.accept"})
        wire: GatewayWebSocketProtocol | None = (scope.get("extensions") or {}).get(EXTENSION)
        sid = secrets.token_urlsafe(15)
        sock = Socket(sid, send, self.max_queue, self.max_queue_bytes, wire)
        if wire is not None:
            wire.on_writable = sock.flush
        self._sockets[sid] = sock
        sock.push(
            engine_open(
                sid,
                int(self.ping_interval * 1000),
                int(self.ping_timeout * 1000),
                self.max_payload,
            )
        )
        loop = asyncio.get_running_loop()
        # Timers, not tasks: a sleeping task per socket costs more memory than a socket.
        sock.pinger = loop.call_later(self.ping_interval, self._ping, sock)
        # As Socket.IO's connectTimeout: a socket that never authenticates holds a slot.
        sock.deadline = loop.call_later(self.connect_timeout, self._handshake_deadline, sock)
        sock.task = task = asyncio.current_task()
        try:
            await self._read_forever(sock, scope, receive)
        except ProtocolError as exc:
            log.info("closing socket %s: %s", sid, exc)
        except asyncio.CancelledError:
            # The server dropped it (see _drop) while it waited for the client: handled
            # here. Any other cancellation (shutdown) goes on.
            if not sock.dropped or task is None or task.uncancel() > 0:
                raise
        finally:
            sock.discard()
            self._forget(sock)
            if wire is not None:
                wire.on_writable = None
            sock.task = None
            # A client that stopped reading never takes the close frame: do not wait
            # for it forever (the connection is closed all the same).
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    send({"type": "websocket.close", "code": sock.close_code}), CLOSE_WAIT
                )

    async def _read_forever(self, sock: Socket, scope: Scope, receive: Receive) -> None:
        connected = False
        while not sock.closed:
            # The last frame is not kept while waiting for the next, which may be minutes
            # away: an idle socket would hold its CONNECT frame (credentials included).
            message = text = data = packet = None
            sock.idle = True
            try:
                message = await receive()
            finally:
                sock.idle = False
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                raise ProtocolError("binary frames are not accepted")
            if len(text) > self.max_payload:
                raise ProtocolError("frame too large")
            sock.last_seen = time.monotonic()
            kind, data = decode_engine(text)
            if kind == EIO_PONG:
                continue
            if kind == EIO_PING:
                self._push(sock, EIO_PONG + data)
                continue
            if kind == EIO_CLOSE:
                return
            if kind != EIO_MESSAGE:
                continue
            packet = decode_socket(data)
            if packet.namespace != "/":
                if packet.type != CONNECT:
                    raise ProtocolError("a packet of a namespace it did not join")
                refusal = {"message": "Invalid namespace"}
                self._push(sock, socket_frame(CONNECT_ERROR, refusal, namespace=packet.namespace))
                continue
            if packet.type == CONNECT:
                connected = await self._connect(sock, scope, packet.data)
                if not connected:
                    await sock.flushed()  # the CONNECT_ERROR must reach the client
                    return
            elif not connected:
                raise ProtocolError("a packet before CONNECT")
            elif packet.type == DISCONNECT or (
                packet.type == EVENT
                and not await self._event(sock, scope, packet.data, packet.ack_id)
            ):
                return
            # ACKs from the client answer nothing the server asks: ignored.

    def _ping(self, sock: Socket) -> None:
        sock.pinger = None
        if sock.closed:
            return
        if time.monotonic() - sock.last_seen > self.ping_interval + self.ping_timeout:
            log.info("socket %s missed its pongs: closing", sock.sid)
            self._drop(sock, 1001)
            return
        self._push(sock, EIO_PING)
        if not sock.closed:
            loop = asyncio.get_running_loop()
            sock.pinger = loop.call_later(self.ping_interval, self._ping, sock)

    def _handshake_deadline(self, sock: Socket) -> None:
        sock.deadline = None
        if sock.principal is None and not sock.closed:
            log.info("socket %s did not authenticate in time: closing", sock.sid)
            self._drop(sock)

    # -- handshake ----------------------------------------------------------------------

    async def _connect(self, sock: Socket, scope: Scope, auth: Any) -> bool:
        """Socket.IO CONNECT; with ``{clientKey, token}`` authenticates at once."""
        if isinstance(auth, dict) and (auth.get("clientKey") or auth.get("token")):
            headers = {
                "IM-CLIENT-KEY": auth.get("clientKey"),
                "IM-Authorization": auth.get("token"),
            }
            resume = auth.get("resume")
            try:
                await self._authenticate(
                    sock, scope, auth.get("token"), headers, resume=resume, profile=False
                )
            except ParleyError as error:
                refusal = {"message": error.code, "data": _error(error)}
                self._push(sock, socket_frame(CONNECT_ERROR, refusal))
                return False
            self._push(sock, socket_frame(CONNECT, {"sid": sock.sid}))
            if isinstance(resume, dict):
                await self._resume(sock, resume)
            return True
        self._push(sock, socket_frame(CONNECT, {"sid": sock.sid}))
        return True

    async def _event(self, sock: Socket, scope: Scope, args: list[Any], ack_id: int | None) -> bool:
        """One client event; False when the socket must close."""
        name, params = args[0], args[1:]
        if name == "conf":
            conf = params[0] if params and isinstance(params[0], dict) else {}
            if conf.get("encoding") in ("base64", "plain"):
                sock.encoding = str(conf["encoding"])
            self._ack(sock, ack_id, {"RC": 0, "RM": "OK", "result": {"encoding": sock.encoding}})
            return True
        if name in ("auth2", "auth"):
            token = params[0] if params else None
            headers = params[1] if name == "auth2" and len(params) > 1 else {}
            try:
                profile = await self._authenticate(
                    sock, scope, token, headers if isinstance(headers, dict) else {}
                )
            except ParleyError as error:
                self._ack(sock, ack_id, _error(error))
                await sock.flushed()
                return False
            self._ack(sock, ack_id, {"RC": 0, "RM": "OK", "result": profile})
            return True
        if sock.principal is None:
            refusal = InvalidToken("Authenticate the socket first", code="UNAUTHORIZED")
            self._ack(sock, ack_id, _error(refusal))
            return True
        if name == "resume":
            request = params[0] if params and isinstance(params[0], dict) else {}
            result = await self._resume(sock, request.get("rooms"))
            self._ack(sock, ack_id, {"RC": 0, "RM": "OK", "result": result})
            return True
        if name == "typing":
            room_id = params[0] if params else None
            if isinstance(room_id, dict):
                room_id = room_id.get("room") or room_id.get("roomId")
            room = str(room_id or "")
            # Not a room of its user: nothing to relay, no database read (a client may send
            # thousands at once). The room service throttles the rest before any read.
            if room not in sock.rooms:
                return True
            with contextlib.suppress(ParleyError):
                await self._svc.rooms.typing(sock.principal, room, None)
            return True
        if name == "chat message":
            await self._send_soon(sock, params, ack_id)
            return True
        self._ack(sock, ack_id, _error(InvalidRequest(f"Unknown event {name!r}")))
        return True

    async def _send_soon(self, sock: Socket, params: list[Any], ack_id: int | None) -> None:
        """Start a ``chat message`` send and return: the socket reads its next frame
        while the message is being stored, so that sends following each other share a
        commit instead of each waiting for the one before (at most
        MAX_SENDS_IN_FLIGHT at a time; then it waits for one to finish). New messages
        reach the message writer in the order they arrived, so they are stored in that
        order; an edit or a recall (which take other paths) waits for the sends before
        it, and the socket reads on once it is done."""
        sends = sock.sends
        if sends is None:
            sends = sock.sends = set()
        body = params[0] if params else None
        if isinstance(body, dict) and (
            body.get("_id") is not None or body.get("messageType") == RECALL
        ):
            if sends:
                await asyncio.wait(set(sends))
            await self._chat_message(sock, params, ack_id)
            return
        while len(sends) >= MAX_SENDS_IN_FLIGHT:
            await asyncio.wait(set(sends), return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.get_running_loop().create_task(self._chat_message(sock, params, ack_id))
        sends.add(task)
        task.add_done_callback(sends.discard)

    async def _chat_message(self, sock: Socket, params: list[Any], ack_id: int | None) -> None:
        assert sock.principal is not None
        body = params[0] if params else None
        try:
            if not isinstance(body, dict) or not body.get("room"):
                raise InvalidRequest("room is required", code="MISSING_PARAMETER")
            room_id = str(body["room"])
            result = await self._svc.messaging.send_in_room(sock.principal, room_id, body)
        except ParleyError as error:
            self._ack(sock, ack_id, _error(error))
            return
        self._ack(sock, ack_id, {"RC": 0, "RM": "OK", "result": result})

    async def _authenticate(
        self,
        sock: Socket,
        scope: Scope,
        token: Any,
        headers: dict[str, Any],
        *,
        resume: Any = None,
        profile: bool = True,
    ) -> dict[str, Any]:
        """The REST authentication, fed from the handshake; binds the socket to its user
        and that user's rooms. Returns the user's Client object for the ack (nothing
        with ``profile=False``)."""
        http = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        lowered = {str(k).lower(): v for k, v in headers.items()}
        # The handshake's own headers first; then those of the WebSocket upgrade, where
        # native clients of the legacy ``auth(token)`` put the Client Key.
        client_key = next(
            (
                str(source[k])
                for source in (lowered, http)
                for k in ("im-client-key", "client_key", "clientkey")
                if source.get(k)
            ),
            None,
        )
        raw_token = token if isinstance(token, str) and token else None
        raw_token = raw_token or next(
            (str(lowered[k]) for k in ("im-authorization", "authorization") if lowered.get(k)),
            None,
        )
        if raw_token and raw_token[:7].lower() == "bearer ":
            raw_token = raw_token[7:].strip()
        # Host and Origin as REST reads them (the same proxy trust, the same own-page rule).
        raw_headers = dict(scope["headers"])
        trust_proxy = self._svc.settings.trust_proxy
        creds = Credentials(
            api_key=None,
            client_key=client_key,
            token=raw_token,
            host=host_of(raw_headers, trust_proxy),
            origin=origin_of(raw_headers, trust_proxy),
            acting_user=None,
        )
        principal = await self._svc.auth.authenticate(creds, Access.USER)
        assert principal is not None and principal.user_id is not None
        if sock.closed:  # dropped (revoked, too slow) while this was being checked
            raise ProtocolError("socket closed during authentication")
        self._forget(sock)
        sock.principal = principal
        sock.creds = creds
        if sock.deadline is not None:
            sock.deadline.cancel()
            sock.deadline = None
        sock.rooms = await self._rooms_of(principal.app_id, principal.user_id)
        if isinstance(resume, dict):
            # Live messages of the resumed rooms wait until the missed ones are out.
            _hold_back(sock, list(resume)[:MAX_RESUME_ROOMS])
        key = (principal.app_id, principal.user_id)
        self._svc.presence.connected(*key)
        sock.counted = True
        self._by_user.setdefault(key, set()).add(sock)
        for room in sock.rooms:
            self._by_room.setdefault((principal.app_id, room), set()).add(sock)
        if not profile:  # CONNECT answers with the sid alone: no profile to read
            return {}
        profiles = await self._svc.users.profiles(principal.app_id, [principal.user_id])
        found = profiles.get(principal.user_id) or {"_id": principal.user_id}
        return {**user_embedded(found), **found}

    async def _rooms_of(self, app_id: str, user_id: str) -> set[str]:
        """The rooms of a user, as a member or through its groups (one read shared by
        the sockets that connect meanwhile)."""
        return await self._memberships.get(app_id, user_id)

    # -- delivery -----------------------------------------------------------------------

    def _on_event(self, raw: bytes) -> None:
        try:
            event = Event.decode(raw)
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        self._order.accept(event)

    def _deliver(self, event: Event) -> None:
        app_id = event.app_id
        targets: Collection[Socket]
        if len(event.rooms) == 1 and not event.users:
            # The usual case: one room. A copy, as delivery may drop sockets from it.
            targets = tuple(self._by_room.get((app_id, event.rooms[0]), ()))
        else:
            union: set[Socket] = set()
            for room in event.rooms:
                union |= self._by_room.get((app_id, room), set())
            for user in event.users:
                union |= self._by_user.get((app_id, user), set())
            targets = union
        if event.kind == TYPING and isinstance(event.data, dict):
            sender = event.data.get("sender")
            targets = [t for t in targets if t.key != (app_id, sender)]
        self._follow_membership(event)
        if event.kind == ROOM_DELETED or not targets:
            return
        # Encoded once per encoding: the Engine.IO packet, and the same as a WebSocket
        # frame for the sockets written to directly.
        encoded: dict[str, tuple[bytes, bytes]] = {}
        chat = event.kind == CHAT_MESSAGE
        version = _version(event.data) if chat else None
        chat_room = event.rooms[0] if chat and event.rooms else None
        for sock in targets:
            if sock.principal is None:
                continue
            packet_frame = encoded.get(sock.encoding)
            if packet_frame is None:
                packet = event_packet(event.kind, sock.payload(event.data))
                packet_frame = encoded[sock.encoding] = (packet, text_frame(packet))
            if chat:
                if sock.catching_up is not None and chat_room in sock.catching_up:
                    waiting = sock.catching_up[chat_room]
                    if len(waiting) < self.max_queue:
                        waiting.append((version, packet_frame[0]))  # type: ignore[arg-type]
                    else:  # live traffic outpaces the resume: the client resumes again
                        self._overflowed(sock)
                    continue
                recent = sock.recent
                if recent is None:
                    recent = sock.recent = RecentSet()
                elif version in recent:
                    continue
                recent[version] = None  # RecentSet.add, inline (a call per frame saved)
                if len(recent) > RECENT_VERSIONS:
                    recent.popitem(last=False)
            wire = sock.wire
            # Socket.push's own first case, inline: the one a broadcast takes.
            if wire is not None and sock.queue is None and not sock.closed and not wire.paused:
                transport = wire.transport
                if not transport.is_closing():
                    transport.write(packet_frame[1])
                    continue
            if not sock.push(*packet_frame):
                self._overflowed(sock)

    def _follow_membership(self, event: Event) -> None:
        """Keep each socket's room set current: a ``room`` event names the members."""
        if event.kind == ROOM_DELETED:
            for room in event.rooms:
                for sock in self._by_room.pop((event.app_id, room), set()):
                    sock.rooms.discard(room)
            return
        if event.kind != ROOM or not isinstance(event.data, dict):
            return
        room_id = event.data.get("_id")
        members = event.data.get("members")
        if not isinstance(room_id, str) or not isinstance(members, list):
            return
        ids: set[str] = set()
        for member in members:
            if isinstance(member, dict):
                ids.add(str(member.get("_id")))
                for inner in member.get("members") or []:  # a user group's members
                    ids.add(str(inner.get("_id") if isinstance(inner, dict) else inner))
        key = (event.app_id, room_id)
        current = self._by_room.get(key, set())
        for sock in list(current):
            if sock.key is not None and sock.key[1] not in ids:
                current.discard(sock)
                sock.rooms.discard(room_id)
        for user in ids:
            for sock in self._by_user.get((event.app_id, user), set()):
                sock.rooms.add(room_id)
                self._by_room.setdefault(key, set()).add(sock)

    async def _replay_after_outage(self) -> None:
        """Back from a broker outage: the messages of this node's rooms that changed
        meanwhile come from the database, through the same delivery as live ones (which
        skips what a socket already got). Other events of the outage are not replayed."""
        began = self._svc.broker.outage_began_ms
        if not began:
            return
        since = began - OUTAGE_MARGIN_MS  # the loss may be noticed a little late
        rooms_by_app: dict[str, list[str]] = {}
        for app_id, room_id in list(self._by_room):
            rooms_by_app.setdefault(app_id, []).append(room_id)
        replayed = 0
        for app_id, rooms in rooms_by_app.items():
            for start in range(0, len(rooms), 500):
                chunk = rooms[start : start + 500]
                try:
                    missed = await self._svc.history.changed_since(
                        app_id, chunk, since, MAX_OUTAGE_REPLAY
                    )
                except ParleyError:
                    log.warning("could not replay the broker outage: database unavailable")
                    return
                for message in missed:  # in order with what came live since
                    self._order.accept(Event(app_id, CHAT_MESSAGE, message, [message["room"]]))
                replayed += len(missed)
        log.info("replayed %d messages changed during the broker outage", replayed)

    # -- resume -------------------------------------------------------------------------

    async def _resume(self, sock: Socket, rooms: Any) -> dict[str, Any]:
        """Send what the client missed: for each ``{roomId: lastSeq}`` of a room the user
        is in, the messages after ``lastSeq`` from the database, then the live ones that
        arrived meanwhile, each once, in order. Rooms the user is not in are ignored."""
        if not isinstance(rooms, dict) or sock.principal is None:
            return {"rooms": {}}
        app_id = sock.principal.app_id
        wanted = {
            room: seq
            for room, seq in list(rooms.items())[:MAX_RESUME_ROOMS]
            if room in sock.rooms and _is_seq(seq)
        }
        _hold_back(sock, list(wanted))
        if sock.recent is None:
            sock.recent = RecentSet()
        recent = sock.recent
        already = recent.snapshot()
        sent: dict[str, int] = {}
        try:
            for room, seq in wanted.items():
                if sock.closed:
                    break
                seen: set[tuple[Any, Any]] = set()
                count = 0
                while count < MAX_RESUME_MESSAGES:
                    batch = await self._svc.history.after_seq(app_id, room, seq, RESUME_PAGE)
                    for message in batch:
                        version = _version(message)
                        seen.add(version)
                        if version not in already:
                            # Paced frame by frame on the client's reading: a page of
                            # large messages is more than the queue holds.
                            packet = event_packet(CHAT_MESSAGE, sock.payload(message))
                            if not await sock.put(packet, RESUME_WAIT):
                                self._overflowed(sock)
                                return {"rooms": sent}
                            recent.add(version)
                        seq = message["seq"]
                    count += len(batch)
                    if len(batch) < RESUME_PAGE:
                        break
                for version, packet in _held_back(sock, room):
                    if version not in seen and version not in recent:
                        self._push(sock, packet)
                        recent.add(version)
                sent[room] = count
        finally:
            for room in wanted:
                for _, packet in _held_back(sock, room):
                    self._push(sock, packet)
        return {"rooms": sent}

    # -- helpers ------------------------------------------------------------------------

    def _ack(self, sock: Socket, ack_id: int | None, data: Any) -> None:
        if ack_id is not None:
            self._push(sock, socket_frame(ACK, [sock.payload(data)], ack_id))

    def _push(self, sock: Socket, packet: bytes | str) -> None:
        """Send a packet; a socket whose queue is full has stopped reading: it is closed
        rather than buffered without bound, and its client resumes when it reconnects."""
        if not sock.push(packet):
            self._overflowed(sock)

    def _overflowed(self, sock: Socket) -> None:
        if not sock.closed:
            log.info("socket %s stopped reading: closing", sock.sid)
            self._drop(sock)

    def _drop(self, sock: Socket, code: int = 1008) -> None:
        """Close a socket from the server's side: free its queue now, and end its handler
        even if the client never sends another frame (one that stopped reading may not)."""
        sock.close_code = code
        sock.discard()
        self._forget(sock)
        if sock.idle and sock.task is not None and not sock.dropped:
            sock.dropped = True
            sock.task.cancel()

    def _forget(self, sock: Socket) -> None:
        if sock.closed:
            self._sockets.pop(sock.sid, None)
        key = sock.key
        if key is None:
            return
        if sock.counted:
            sock.counted = False
            self._svc.presence.disconnected(*key)
        users = self._by_user.get(key)
        if users is not None:
            users.discard(sock)
            if not users:
                del self._by_user[key]
        for room in sock.rooms:
            members = self._by_room.get((key[0], room))
            if members is not None:
                members.discard(sock)
                if not members:
                    del self._by_room[(key[0], room)]


def _hold_back(sock: Socket, rooms: list[str]) -> None:
    """Live messages of these rooms (those of the user) wait until a resume lets them go."""
    for room in rooms:
        if room in sock.rooms:
            if sock.catching_up is None:
                sock.catching_up = {}
            sock.catching_up.setdefault(room, [])


def _held_back(sock: Socket, room: str) -> list[tuple[tuple[Any, Any], bytes]]:
    """The live messages of ``room`` held back during its resume, which ends now."""
    if sock.catching_up is None:
        return []
    held = sock.catching_up.pop(room, [])
    if not sock.catching_up:
        sock.catching_up = None
    return held


def _is_seq(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEQ


def _version(message: Any) -> tuple[Any, Any]:
    """Which state of which message a ``chat message`` carries."""
    if not isinstance(message, dict):
        return (None, None)
    return (message.get("_id"), message.get("updatedAtMS"))


def _error(error: ParleyError) -> dict[str, Any]:
    """An ack carrying an error: RC is the HTTP status REST gives the same error."""
    rc = status_of(error)
    return {
        "RC": rc,
        "RM": HTTPStatus(rc).phrase,  # as REST says it
        "error": {"code": error.code, "message": str(error)},
    }


async def _refuse_polling(send: Send) -> None:
    """HTTP long-polling is not served: the SDKs use the websocket transport alone."""
    body = orjson.dumps({"code": 0, "message": "Transport unknown"})
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
