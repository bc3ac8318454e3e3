"""Each room's new messages in ``seq`` order, whichever node stored them.

A node publishes a message after its transaction commits. Two nodes storing messages of
one room commit them in ``seq`` order (the room's row is locked), but their publishes race:
a node may receive ``seq`` n+1 from one node before ``seq`` n from the other, or miss n
altogether while Redis was away. Clients expect a room's messages in order and treat a
jump as a gap, so the gateway puts them back in order before fan-out:

- a message with the next ``seq`` of its room goes out at once (the usual case, and the
  only one on a single node);
- a later one waits, with any others after the gap, for at most ``GAP_WAIT`` seconds;
  if the missing messages arrive meanwhile, all go out in order;
- otherwise the missing ones are read from the database (what a resume reads), and
  everything waiting goes out in order.

Changes to a message already sent (an edit, a recall: same ``seq``, newer state) go out at
once. Only rooms with sockets on this node are followed; a room's state is dropped at its
first event after its last socket left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from parley.background import cancel_and_wait
from parley.services.events import CHAT_MESSAGE, Event

log = logging.getLogger("parley.gateway")

GAP_WAIT = 0.15  # seconds a room's later messages wait for an earlier one before a read
Room = tuple[str, str]  # (app id, room id)
FetchAfter = Callable[[str, str, int, int], Awaitable[list[dict[str, Any]]]]


class RoomOrder:
    """Delivers chat messages to ``deliver`` in each room's ``seq`` order (see the module).

    ``fetch(app_id, room_id, after_seq, limit)`` reads a room's messages after a ``seq``,
    oldest first; ``followed(app_id, room_id)`` tells whether this node has sockets in
    the room. Other events pass straight through."""

    def __init__(
        self,
        deliver: Callable[[Event], None],
        fetch: FetchAfter,
        followed: Callable[[str, str], bool],
        wait: float = GAP_WAIT,
    ) -> None:
        self._deliver = deliver
        self._fetch = fetch
        self._followed = followed
        self.wait = wait
        self._last: dict[Room, int] = {}  # the last seq sent out, per followed room
        self._held: dict[Room, dict[int, list[Event]]] = {}  # waiting behind a gap
        self._timers: dict[Room, asyncio.TimerHandle] = {}
        self._reads: dict[Room, asyncio.Task[None]] = {}
        self.gaps_read = 0  # how many gaps were filled from the database

    def accept(self, event: Event) -> None:
        seq = _seq_of(event)
        if seq is None:
            self._deliver(event)
            return
        room = (event.app_id, event.rooms[0])
        if not self._followed(*room):
            self._forget(room)
            self._deliver(event)  # reaches the room's users' own sockets, if any
            return
        last = self._last.get(room)
        if last is None or seq <= last:  # the first we see, or a change to a sent one
            if last is None:
                self._last[room] = seq
            self._deliver(event)
            return
        held = self._held.get(room)
        if seq == last + 1 and not held:
            self._last[room] = seq
            self._deliver(event)
            return
        self._held.setdefault(room, {}).setdefault(seq, []).append(event)
        self._release(room)
        if room in self._held and room not in self._timers and room not in self._reads:
            loop = asyncio.get_running_loop()
            self._timers[room] = loop.call_later(self.wait, self._read_gap, room)

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        await cancel_and_wait(*self._reads.values())

    # -- the gap ---------------------------------------------------------------------------

    def _release(self, room: Room) -> None:
        """Send what waits right after the last sent seq, as far as it is contiguous."""
        held = self._held.get(room)
        if not held:
            return
        last = self._last[room]
        while last + 1 in held:
            last += 1
            for event in held.pop(last):
                self._deliver(event)
        self._last[room] = last
        if not held:
            del self._held[room]
            timer = self._timers.pop(room, None)
            if timer is not None:
                timer.cancel()

    def _read_gap(self, room: Room) -> None:
        self._timers.pop(room, None)
        if room in self._held and room not in self._reads:
            self._reads[room] = asyncio.get_running_loop().create_task(self._fill(room))

    async def _fill(self, room: Room) -> None:
        app_id, room_id = room
        upto = max(self._held.get(room, {0: []}))
        try:
            last = self._last[room]
            missed = await self._fetch(app_id, room_id, last, max(upto - last, 1))
            self.gaps_read += 1
            held = self._held.setdefault(room, {})
            for message in missed:
                seq = message.get("seq")
                if isinstance(seq, int) and seq <= upto and seq not in held:
                    held[seq] = [Event(app_id, CHAT_MESSAGE, message, [room_id])]
        except Exception as exc:  # what waits still goes out, in order
            log.warning("could not read the messages missing from room %s: %s", room_id, exc)
        finally:
            self._reads.pop(room, None)
        if room not in self._last:  # its last socket left meanwhile: nothing waits
            return
        # What the database does not have (deleted meanwhile) will not come: send the rest
        # up to ``upto`` in order, then wait again for any newer gap.
        held = self._held.get(room, {})
        for seq in sorted(s for s in held if s <= upto):
            for event in held.pop(seq):
                self._deliver(event)
            self._last[room] = max(self._last[room], seq)
        if not held:
            self._held.pop(room, None)
        self._release(room)
        if room in self._held and room not in self._timers:
            loop = asyncio.get_running_loop()
            self._timers[room] = loop.call_later(self.wait, self._read_gap, room)

    def _forget(self, room: Room) -> None:
        if room not in self._last:
            return
        del self._last[room]
        timer = self._timers.pop(room, None)
        if timer is not None:
            timer.cancel()
        for events in self._held.pop(room, {}).values():
            for event in events:
                self._deliver(event)


def _seq_of(event: Event) -> int | None:
    """The ``seq`` of a one-room chat message event, else None (not ordered here)."""
    if event.kind != CHAT_MESSAGE or len(event.rooms) != 1 or event.users:
        return None
    data = event.data
    seq = data.get("seq") if isinstance(data, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None
