"""The broker contract (see :mod:`parley.broker.base`), one suite for every implementation.

Each test is a plain function running an async body under ``asyncio.run``; every wait in
it is bounded by ``asyncio.wait_for``. Channel names are unique per test: Redis pub/sub
channels are shared by every database number of a server.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

import pytest
import redis

from parley.broker import Broker, MemoryBroker

WAIT = 5.0  # seconds any single delivery may take before the test fails

NewBroker = Callable[[], Broker]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def new_broker(request: pytest.FixtureRequest) -> NewBroker:
    """Makes a broker of the implementation under test (a "node" each, for Redis)."""
    if request.param == "memory":
        return MemoryBroker
    from parley.broker.redis import RedisBroker

    url: str = request.getfixturevalue("redis_url")
    return lambda: RedisBroker(url)


@pytest.fixture
def new_redis_broker(redis_url: str) -> Callable[..., Broker]:
    from parley.broker.redis import RedisBroker

    def make(client_name: str | None = None) -> Broker:
        url = redis_url
        if client_name:  # names every connection of the broker, so a test can find them
            url += ("&" if "?" in url else "?") + f"client_name={client_name}"
        return RedisBroker(url)

    return make


@pytest.fixture
def channel() -> str:
    return "test-" + secrets.token_hex(6)


@asynccontextmanager
async def running(broker: Broker) -> AsyncIterator[Broker]:
    await asyncio.wait_for(broker.start(), WAIT + 1)
    try:
        yield broker
    finally:
        await asyncio.wait_for(broker.close(), WAIT)


class Inbox:
    """A handler that keeps what it receives and lets a test wait for it."""

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self._changed = asyncio.Event()

    def __call__(self, data: bytes) -> None:
        self.items.append(data)
        self._changed.set()

    async def wait_until(self, done: Callable[[list[bytes]], bool], within: float = WAIT) -> None:
        async def watch() -> None:
            while not done(self.items):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(watch(), within)

    async def wait_for(self, count: int, within: float = WAIT) -> None:
        await self.wait_until(lambda items: len(items) >= count, within)


def run(body: Awaitable[None], timeout: float = 30) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(body, timeout)

    asyncio.run(bounded())


def test_publish_reaches_every_subscriber_of_the_channel_on_the_publishing_node(
    new_broker: NewBroker, channel: str
) -> None:
    async def body() -> None:
        broker = new_broker()
        first, second, elsewhere = Inbox(), Inbox(), Inbox()
        broker.subscribe(channel, first)
        broker.subscribe(channel, second)
        broker.subscribe(channel + "-other", elsewhere)
        async with running(broker):
            assert await broker.publish(channel, b"hello") is True
            await first.wait_for(1)
            await second.wait_for(1)
            # A message on the other channel, published after, is a barrier: once it has
            # arrived, "hello" would have arrived there too if channels leaked.
            await broker.publish(channel + "-other", b"barrier")
            await elsewhere.wait_for(1)
        assert first.items == [b"hello"]
        assert second.items == [b"hello"]
        assert elsewhere.items == [b"barrier"]

    run(body())


def test_async_handlers_are_awaited(new_broker: NewBroker, channel: str) -> None:
    async def body() -> None:
        broker = new_broker()
        inbox = Inbox()

        async def handler(data: bytes) -> None:
            await asyncio.sleep(0)
            inbox(data)

        broker.subscribe(channel, handler)
        async with running(broker):
            await broker.publish(channel, b"async")
            await inbox.wait_for(1)
        assert inbox.items == [b"async"]

    run(body())


@pytest.mark.redis
def test_two_nodes_see_each_others_messages(
    new_redis_broker: Callable[..., Broker], channel: str
) -> None:
    async def body() -> None:
        node_a, node_b = new_redis_broker(), new_redis_broker()
        inbox_a, inbox_b = Inbox(), Inbox()
        node_a.subscribe(channel, inbox_a)
        node_b.subscribe(channel, inbox_b)
        async with running(node_a), running(node_b):
            await node_a.publish(channel, b"from-a")
            await inbox_b.wait_for(1)
            await node_b.publish(channel, b"from-b")
            await inbox_a.wait_for(2)
            await inbox_b.wait_for(2)
        assert inbox_a.items == [b"from-a", b"from-b"]
        assert inbox_b.items == [b"from-a", b"from-b"]

    run(body())


def test_order_is_preserved_per_publisher(new_broker: NewBroker, channel: str) -> None:
    async def body() -> None:
        broker = new_broker()
        inbox = Inbox()
        broker.subscribe(channel, inbox)
        sent = [str(i).encode() for i in range(200)]
        async with running(broker):
            for data in sent:
                await broker.publish(channel, data)
            await inbox.wait_for(len(sent))
        assert inbox.items == sent

    run(body())


@pytest.mark.redis
def test_order_is_preserved_per_publisher_across_nodes(
    new_redis_broker: Callable[..., Broker], channel: str
) -> None:
    async def body() -> None:
        publisher, receiver = new_redis_broker(), new_redis_broker()
        inbox = Inbox()
        receiver.subscribe(channel, inbox)
        sent = [str(i).encode() for i in range(200)]
        async with running(publisher), running(receiver):
            for data in sent:
                await publisher.publish(channel, data)
            await inbox.wait_for(len(sent))
        assert inbox.items == sent

    run(body())


def test_a_handler_that_raises_does_not_stop_the_others(
    new_broker: NewBroker, channel: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def body() -> None:
        broker = new_broker()
        before, after = Inbox(), Inbox()

        def broken(data: bytes) -> None:
            raise RuntimeError("handler bug")

        async def broken_async(data: bytes) -> None:
            raise RuntimeError("async handler bug")

        broker.subscribe(channel, before)
        broker.subscribe(channel, broken)
        broker.subscribe(channel, broken_async)
        broker.subscribe(channel, after)
        async with running(broker):
            await broker.publish(channel, b"one")
            await broker.publish(channel, b"two")  # delivery goes on after a failure
            await after.wait_for(2)
        assert before.items == [b"one", b"two"]
        assert after.items == [b"one", b"two"]

    with caplog.at_level(logging.ERROR, logger="parley.broker"):
        run(body())
    failures = [r for r in caplog.records if r.name == "parley.broker" and r.exc_info]
    assert len(failures) == 4  # two broken handlers, two messages: each one logged


def test_unsubscribe_stops_delivery(new_broker: NewBroker, channel: str) -> None:
    async def body() -> None:
        broker = new_broker()
        leaving, staying = Inbox(), Inbox()
        unsubscribe = broker.subscribe(channel, leaving)
        broker.subscribe(channel, staying)
        async with running(broker):
            await broker.publish(channel, b"before")
            await leaving.wait_for(1)
            await staying.wait_for(1)
            unsubscribe()
            unsubscribe()  # a second call is harmless
            await broker.publish(channel, b"after")
            # "staying" runs after "leaving" for each message: once it has "after",
            # "leaving" would have it too had unsubscribing not worked.
            await staying.wait_for(2)
        assert leaving.items == [b"before"]
        assert staying.items == [b"before", b"after"]

    run(body())


def test_publish_before_start_and_after_close_does_not_raise(
    new_broker: NewBroker, channel: str
) -> None:
    async def body() -> None:
        broker = new_broker()
        inbox = Inbox()
        broker.subscribe(channel, inbox)
        assert isinstance(await asyncio.wait_for(broker.publish(channel, b"early"), WAIT), bool)
        async with running(broker):
            await broker.publish(channel, b"live")
            await inbox.wait_until(lambda items: b"live" in items)
        assert isinstance(await asyncio.wait_for(broker.publish(channel, b"late"), WAIT), bool)
        await asyncio.wait_for(broker.close(), WAIT)  # closing twice is harmless too

    run(body())


# -- Redis only: a lost connection ------------------------------------------------------


def _kill_pubsub_connection(url: str, client_name: str) -> None:
    """``CLIENT KILL TYPE pubsub`` limited to this broker's subscription connection, so
    other processes using the same Redis keep theirs."""
    admin = redis.Redis.from_url(url)
    try:
        mine = [c for c in admin.client_list(_type="pubsub") if c.get("name") == client_name]
        assert len(mine) == 1, mine
        assert admin.client_kill_filter(_id=mine[0]["id"], _type="pubsub") == 1
    finally:
        admin.close()


@pytest.mark.redis
def test_redis_delivery_resumes_after_the_subscription_connection_is_killed(
    new_redis_broker: Callable[..., Broker], redis_url: str, channel: str
) -> None:
    name = "parley-test-" + secrets.token_hex(4)

    async def body() -> None:
        broker = new_redis_broker(name)
        inbox = Inbox()
        reconnected = asyncio.Event()
        broker.subscribe(channel, inbox)
        broker.on_reconnect(reconnected.set)
        async with running(broker):
            await broker.publish(channel, b"before")
            await inbox.wait_for(1)

            await asyncio.to_thread(_kill_pubsub_connection, redis_url, name)
            killed_at = time.monotonic()
            # Messages published while the node is cut off are lost (at most once), so
            # keep publishing until one gets through.
            for i in _bounded_count(deadline=killed_at + 5):
                await broker.publish(channel, f"after-{i}".encode())
                try:
                    await inbox.wait_until(
                        lambda items: any(d.startswith(b"after-") for d in items), 0.1
                    )
                    break
                except TimeoutError:
                    continue
            resumed_after = time.monotonic() - killed_at
            assert any(d.startswith(b"after-") for d in inbox.items), "delivery never resumed"
            assert resumed_after < 5.0
            await asyncio.wait_for(reconnected.wait(), 1)

    run(body())


def _bounded_count(deadline: float, limit: int = 200) -> Iterator[int]:
    for i in range(limit):
        if time.monotonic() > deadline:
            return
        yield i
