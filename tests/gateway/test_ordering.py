"""RoomOrder on its own: a room's new messages leave in ``seq`` order however they arrive.

The cross-node race it repairs is exercised end to end by the fault scenario of a node
killed under load (tests/faults/test_node_kill.py); here each arrival order is set up
exactly, with the database played by a dict of stored messages."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

from parley.gateway.ordering import RoomOrder
from parley.services.events import CHAT_MESSAGE, ROOM, Event

APP, ROOM_ID = "app", "lobby"
WAIT = 0.05


def message(seq: int, state: int = 0) -> dict[str, Any]:
    return {"_id": f"m{seq}", "room": ROOM_ID, "seq": seq, "updatedAtMS": state}


def chat(seq: int, state: int = 0, room: str = ROOM_ID) -> Event:
    return Event(APP, CHAT_MESSAGE, message(seq, state) | {"room": room}, [room])


class Harness:
    def __init__(self, stored: list[int] | None = None, *, fail: bool = False) -> None:
        self.sent: list[tuple[int, int]] = []  # (seq, state) as delivered
        self.others: list[Event] = []
        self.stored = {seq: message(seq) for seq in stored or []}
        self.reads: list[tuple[int, int]] = []
        self.fail = fail
        self.followed = {(APP, ROOM_ID)}
        self.order = RoomOrder(self.deliver, self.fetch, self.is_followed, wait=WAIT)

    def deliver(self, event: Event) -> None:
        if event.kind == CHAT_MESSAGE and isinstance(event.data.get("seq"), int):
            self.sent.append((event.data["seq"], event.data["updatedAtMS"]))
        else:
            self.others.append(event)

    async def fetch(self, app_id: str, room_id: str, after: int, limit: int) -> list[Any]:
        self.reads.append((after, limit))
        if self.fail:
            raise RuntimeError("database unavailable")
        return [self.stored[s] for s in sorted(self.stored) if s > after][:limit]

    def is_followed(self, app_id: str, room_id: str) -> bool:
        return (app_id, room_id) in self.followed

    def seqs(self) -> list[int]:
        return [seq for seq, _ in self.sent]


def in_a_loop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


async def settle() -> None:
    await asyncio.sleep(WAIT * 4)


@in_a_loop
async def test_messages_in_order_go_out_at_once() -> None:
    h = Harness()
    for seq in (4, 5, 6):
        h.order.accept(chat(seq))
    assert h.seqs() == [4, 5, 6]  # the first one seen sets where the room stands
    assert h.reads == []


@in_a_loop
async def test_a_later_message_waits_for_an_earlier_one_still_on_its_way() -> None:
    h = Harness()
    h.order.accept(chat(1))
    h.order.accept(chat(3))
    h.order.accept(chat(4))
    assert h.seqs() == [1]
    h.order.accept(chat(2))
    assert h.seqs() == [1, 2, 3, 4]
    await settle()
    assert h.reads == [] and h.order.gaps_read == 0


@in_a_loop
async def test_a_message_that_never_comes_is_read_from_the_database() -> None:
    h = Harness(stored=[1, 2, 3, 4])
    h.order.accept(chat(1))
    h.order.accept(chat(4))
    await settle()
    assert h.seqs() == [1, 2, 3, 4]
    assert h.reads == [(1, 3)] and h.order.gaps_read == 1
    h.order.accept(chat(2))  # the lost publish turns up after all: a socket skips it
    h.order.accept(chat(5))
    assert h.seqs() == [1, 2, 3, 4, 2, 5]


@in_a_loop
async def test_a_change_to_a_sent_message_is_not_held_back() -> None:
    h = Harness(stored=[1, 2, 3])
    h.order.accept(chat(1))
    h.order.accept(chat(3))
    h.order.accept(chat(1, state=7))  # an edit of message 1 while 3 waits for 2
    assert h.sent == [(1, 0), (1, 7)]
    await settle()
    assert h.seqs() == [1, 1, 2, 3]


@in_a_loop
async def test_what_the_database_lacks_does_not_hold_the_rest_forever() -> None:
    h = Harness(stored=[1, 3])  # 2 was deleted for everyone before this node saw it
    h.order.accept(chat(1))
    h.order.accept(chat(3))
    await settle()
    assert h.seqs() == [1, 3]
    h.order.accept(chat(4))
    assert h.seqs() == [1, 3, 4]


@in_a_loop
async def test_a_failed_read_still_sends_what_waits_in_order() -> None:
    h = Harness(fail=True)
    h.order.accept(chat(1))
    h.order.accept(chat(4))
    h.order.accept(chat(3))
    await settle()
    assert h.seqs() == [1, 3, 4]


@in_a_loop
async def test_a_newer_gap_after_a_read_is_waited_for_again() -> None:
    h = Harness(stored=[1, 2, 3, 4, 5, 6])
    h.order.accept(chat(1))
    h.order.accept(chat(3))
    await settle()
    h.order.accept(chat(6))
    assert h.seqs() == [1, 2, 3]
    await settle()
    assert h.seqs() == [1, 2, 3, 4, 5, 6]
    assert h.order.gaps_read == 2


@in_a_loop
async def test_rooms_without_sockets_here_and_other_events_pass_straight_through() -> None:
    h = Harness()
    h.order.accept(chat(1))
    h.order.accept(chat(3))
    h.followed.clear()  # the room's last socket on this node left
    h.order.accept(chat(7))
    assert h.seqs() == [1, 3, 7]  # what waited goes out, and nothing waits any more
    h.order.accept(Event(APP, ROOM, {"_id": ROOM_ID}, [ROOM_ID]))
    h.order.accept(Event(APP, CHAT_MESSAGE, {"seq": "9"}, [ROOM_ID]))
    assert len(h.others) == 2 and h.seqs() == [1, 3, 7]  # (a seq that is no number)
    await settle()
    assert h.reads == []


@in_a_loop
async def test_close_stops_waiting() -> None:
    h = Harness(stored=[1, 2, 3])
    h.order.accept(chat(1))
    h.order.accept(chat(3))
    await h.order.close()
    await settle()
    assert h.reads == []
