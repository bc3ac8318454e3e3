"""The message writer on its own: what one batch (one transaction) does with sends that
fail beside sends that succeed, and batch sizes down to one message per transaction.

Each test drives a writer of its own on the running server's loop and database, and
checks the outcome through the HTTP API."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import JSON, Table, Text, cast, insert, select

from parley.services.container import Services
from parley.services.errors import Conflict, InsufficientPermissions, InvalidRequest, NotFound
from parley.services.events import Event, EventBus
from parley.services.message_writer import MessageWriter, Send
from parley.services.messages import MessageInput, parse_input
from parley.storage.tables import MessageRow
from tests.conftest import AppKeys, Server, issue_token, ok

MESSAGES: Table = MessageRow.__table__  # type: ignore[assignment]


class RecordingBus(EventBus):
    """Keeps what the writer publishes instead of passing it to the broker."""

    def __init__(self, services: Services) -> None:
        super().__init__(services.broker)
        self.published: list[Event] = []

    async def publish(self, events: list[Event]) -> None:
        self.published.extend(events)


class CountingWriter(MessageWriter):
    """A writer that notes the size of every batch it stores."""

    sizes: list[int]
    fail_next: bool = False

    async def _store(self, batch: list[Send]) -> Any:
        self.sizes.append(len(batch))
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("the database went away mid-batch")
        return await super()._store(batch)


def run_batch(
    server: Server, sends: list[Send], *, max_batch: int = 256, fail_first: bool = False
) -> tuple[list[Any], list[int], list[Event]]:
    """Queue every send at once on a fresh writer; the outcomes (a message or the error,
    in order), the batch sizes and the published events."""

    async def go(services: Services) -> tuple[list[Any], list[int], list[Event]]:
        bus = RecordingBus(services)
        writer = CountingWriter(services.db, services.users, bus, max_batch=max_batch)
        writer.sizes = []
        writer.fail_next = fail_first
        try:
            outcomes = await asyncio.gather(
                *(writer.send(x) for x in sends), return_exceptions=True
            )
        finally:
            await writer.close()
        return outcomes, writer.sizes, bus.published

    return server.call(go)


def message(body: dict[str, Any]) -> Any:
    return parse_input({"messageType": "text", **body}, max_bytes=65_536)


@pytest.fixture
def rooms(admin: httpx.Client) -> dict[str, str]:
    """Room "ab" (alice, bob) and room "c" (carol); dave is in no room."""
    for name in ("alice", "bob", "carol", "dave"):
        issue_token(admin, name, nickname=name.title())
    ab = ok(admin.post("/rooms", json={"members": ["alice", "bob"], "owner": "alice"}))["_id"]
    c = ok(admin.post("/rooms", json={"members": ["carol"], "owner": "carol"}))["_id"]
    return {"ab": ab, "c": c}


def history(admin: httpx.Client, room_id: str) -> list[dict[str, Any]]:
    """The room's messages, oldest first."""
    data = ok(admin.get(f"/rooms/{room_id}/messages/v3", params={"limit": 1000}))["data"]
    return list(data[::-1])


def test_a_failing_send_fails_alone_and_the_rest_of_its_batch_is_stored(
    server: Server, app_keys: AppKeys, admin: httpx.Client, rooms: dict[str, str]
) -> None:
    app, ab, c = app_keys.id, rooms["ab"], rooms["c"]
    sends = [
        Send(app, ab, "alice", message({"message": "first"})),
        Send(app, ab, "dave", message({"message": "not a member"})),
        Send(app, ab, "bob", message({"message": "second", "clientMessageId": "k"})),
        Send(app, "nowhere", "alice", message({"message": "no room"})),
        Send(app, ab, "ghost", message({"message": "no user"})),
        Send(app, ab, "alice", message({"message": "bad reply", "reply": "0" * 24})),
        Send(app, ab, "alice", message({"message": "taken id", "clientMessageId": "k"})),
        Send(app, c, "carol", message({"message": "another room"})),
        Send(app, ab, "bob", message({"message": "retry of second", "clientMessageId": "k"})),
        Send(app, ab, "dave", message({"message": "as the API Key"}), members_only=False),
        Send(app, ab, "alice", message({"message": "third", "mentions": ["bob"]})),
    ]
    outcomes, sizes, events = run_batch(server, sends)
    assert sizes == [len(sends)], "every send should have shared one batch"

    failed = {i: o for i, o in enumerate(outcomes) if isinstance(o, BaseException)}
    assert set(failed) == {1, 3, 4, 5, 6}, outcomes
    assert isinstance(failed[1], InsufficientPermissions) and failed[1].code == "NOT_ROOM_MEMBER"
    assert isinstance(failed[3], NotFound) and failed[3].code == "ROOM_NOT_FOUND"
    assert isinstance(failed[4], NotFound) and failed[4].code == "CLIENT_NOT_FOUND"
    assert failed[5].code == "MESSAGE_NOT_FOUND"  # type: ignore[attr-defined]
    assert isinstance(failed[6], Conflict) and failed[6].code == "CLIENT_MESSAGE_ID_TAKEN"

    first, second, other, retry, as_admin, third = (outcomes[i] for i in (0, 2, 7, 8, 9, 10))
    assert retry == second  # the retry in the same batch is the stored message
    stored_ab = history(admin, ab)
    assert [m["message"] for m in stored_ab] == ["first", "second", "as the API Key", "third"]
    assert [m["seq"] for m in stored_ab] == [1, 2, 3, 4]  # no gap where sends failed
    assert stored_ab == [first, second, as_admin, third]
    assert history(admin, c) == [other]
    assert len({m["createdAtMS"] for m in [*stored_ab, other]}) == 1  # one transaction
    # Only what was stored is published, once each, in sequence order, after the commit.
    assert [(e.kind, e.data["_id"], e.rooms) for e in events] == [
        ("chat message", m["_id"], [m["room"]]) for m in [first, second, other, as_admin, third]
    ]
    # Counts and mentions of the stored messages only.
    with server.client(**{"IM-API-KEY": app_keys.api_key, "IM-CLIENT-ID": "bob"}) as bob:
        room = ok(bob.get(f"/rooms/{ab}"))
        assert room["unread"] == 3 and room["isMentioned"] is True
        assert room["lastMessage"]["_id"] == third["_id"]


@pytest.mark.parametrize(
    "body",
    [{"message": float("nan")}, {"message": "a\x00b"}, {"message": "x", "extra": {"k\x00": 1}}],
    ids=["nan", "nul", "nul-key"],
)
def test_a_message_the_database_refuses_fails_alone(
    server: Server, app_keys: AppKeys, admin: httpx.Client, rooms: dict[str, str], body: Any
) -> None:
    """Some input is not storable in every database (PostgreSQL stores neither NaN nor NUL
    characters in JSON). The input checks refuse it; and should such a send reach the
    writer anyway, it must not take its batch down with it."""
    with pytest.raises(InvalidRequest):
        message(body)
    unchecked = MessageInput("text", {**body, "mentions": []})
    app, ab = app_keys.id, rooms["ab"]
    sends = [
        Send(app, ab, "alice", message({"message": "before"})),
        Send(app, ab, "bob", unchecked),
        Send(app, ab, "alice", message({"message": "after"})),
    ]
    outcomes, sizes, _ = run_batch(server, sends)
    assert sizes[0] == 3
    good = [o for i, o in enumerate(outcomes) if i != 1]
    assert not any(isinstance(o, BaseException) for o in good), (
        f"BUG: one unstorable message ({body!r}) failed every send of its batch: {outcomes}; "
        "parse_input should refuse it up front, or the writer retry the batch without it"
    )
    assert isinstance(outcomes[1], (dict, InvalidRequest)), outcomes[1]
    texts = [m["message"] for m in history(admin, ab)]
    assert texts[0] == "before" and texts[-1] == "after"


def test_one_message_per_transaction(
    server: Server, app_keys: AppKeys, admin: httpx.Client, rooms: dict[str, str]
) -> None:
    app, ab = app_keys.id, rooms["ab"]
    sends = [
        Send(app, ab, "alice" if i % 2 else "bob", message({"message": f"m{i}"})) for i in range(12)
    ]
    sends.insert(5, Send(app, ab, "dave", message({"message": "refused"})))
    outcomes, sizes, events = run_batch(server, sends, max_batch=1)
    assert sizes == [1] * 13
    assert isinstance(outcomes.pop(5), InsufficientPermissions)
    assert [o["seq"] for o in outcomes] == list(range(1, 13))  # queue order
    assert [m["message"] for m in history(admin, ab)] == [f"m{i}" for i in range(12)]
    assert [e.data["_id"] for e in events] == [o["_id"] for o in outcomes]


def test_batches_are_cut_at_max_batch(
    server: Server, app_keys: AppKeys, admin: httpx.Client, rooms: dict[str, str]
) -> None:
    app, ab = app_keys.id, rooms["ab"]
    sends = [Send(app, ab, "alice", message({"message": f"m{i}"})) for i in range(10)]
    outcomes, sizes, _ = run_batch(server, sends, max_batch=4)
    assert sizes == [4, 4, 2]
    assert [o["seq"] for o in outcomes] == list(range(1, 11))
    assert len(history(admin, ab)) == 10


def test_a_failed_transaction_fails_its_batch_and_the_writer_goes_on(
    server: Server, app_keys: AppKeys, admin: httpx.Client, rooms: dict[str, str]
) -> None:
    app, ab = app_keys.id, rooms["ab"]
    sends = [Send(app, ab, "alice", message({"message": f"m{i}"})) for i in range(6)]
    outcomes, sizes, events = run_batch(server, sends, max_batch=3, fail_first=True)
    assert sizes == [3, 3]
    assert all(isinstance(o, RuntimeError) for o in outcomes[:3])
    assert [o["message"] for o in outcomes[3:]] == ["m3", "m4", "m5"]
    assert [m["message"] for m in history(admin, ab)] == ["m3", "m4", "m5"]
    assert [m["seq"] for m in history(admin, ab)] == [1, 2, 3]  # the failed batch left no gap
    assert [e.data["_id"] for e in events] == [o["_id"] for o in outcomes[3:]]


class _RollBack(Exception):
    pass


def test_the_writer_stores_columns_as_the_models_would(
    server: Server, app_keys: AppKeys, rooms: dict[str, str]
) -> None:
    """On SQLite the writer hands its rows to the driver itself, encoding JSON columns on
    its own: what it stores must be what SQLAlchemy's Core insert stores for the same
    values, to the byte (queries and other readers see the same data either way)."""
    body = {"message": "x", "extra": {"k": [1, "two", None], "ü": 1.5}, "mentions": ["bob"]}
    outcomes, _, _ = run_batch(server, [Send(app_keys.id, rooms["ab"], "alice", message(body))])
    sent = outcomes[0]
    # JSON columns as the text stored, not decoded: equal values could hide other text.
    columns = [cast(c, Text) if isinstance(c.type, JSON) else c for c in MESSAGES.columns]

    def compare(message_id: str) -> Any:
        return select(*columns).where(MESSAGES.c.app_id == app_keys.id, MESSAGES.c.id == message_id)

    async def both(services: Services) -> tuple[Any, Any]:
        found: list[Any] = []
        try:
            async with services.db.write() as s:
                found.append(tuple((await s.execute(compare(sent["_id"]))).one()))
                original = (
                    await s.execute(select(MESSAGES).where(MESSAGES.c.id == sent["_id"]))
                ).one()
                copy = {**original._asdict(), "id": "c" * 24, "seq": original.seq + 1000}
                await s.execute(insert(MESSAGES), [copy])
                found.append(tuple((await s.execute(compare(copy["id"]))).one()))
                raise _RollBack  # the copy was only for comparing
        except _RollBack:
            pass
        return found[0], found[1]

    by_writer, by_core = server.call(both)
    assert by_writer[2] == sent["seq"] and by_core[3] == "c" * 24
    differing = {
        c.name: (a, b)
        for c, a, b in zip(MESSAGES.columns, by_writer, by_core, strict=True)
        if c.name not in ("id", "seq") and a != b
    }
    assert differing == {}
