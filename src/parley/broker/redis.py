"""The Redis broker: Redis pub/sub between the nodes of a cluster.

One connection publishes, one subscribes. When the subscription breaks (Redis restarted,
network cut) it reconnects with backoff, resubscribes every channel and runs the
``on_reconnect`` callbacks so nodes can catch up on what they missed from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from parley.background import cancel_and_wait
from parley.broker._handlers import HandlerTable
from parley.broker.base import Handler, Unsubscribe

log = logging.getLogger("parley.broker.redis")
PREFIX = "parley:"
PUBLISH_ATTEMPTS = 3  # a dead pooled connection costs one; in an outage all fail


class RedisBroker:
    def __init__(self, url: str) -> None:
        self.url = url
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10
        )
        self._table = HandlerTable()
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._subscribed: set[str] = set()
        self._ready = asyncio.Event()
        self.outage_began_ms = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever())
        try:
            await asyncio.wait_for(self._ready.wait(), timeout=5)
        except TimeoutError:
            log.warning(
                "Redis at %s not reachable yet; retrying in the background",
                _without_password(self.url),
            )

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        await self.client.aclose()

    async def publish(self, channel: str, data: bytes) -> bool:
        # A pooled connection may have died with a Redis restart that the subscribers
        # have already recovered from (their replay of the outage included): a publish
        # failing on it would be lost to them. Tried again, it goes out on a fresh one.
        for _ in range(PUBLISH_ATTEMPTS):
            with contextlib.suppress(RedisError, OSError):
                await self.client.publish(PREFIX + channel, data)
                return True
        log.warning("publish to Redis failed; the message reaches this node only")
        await self._table.dispatch(channel, data)
        return False

    def subscribe(self, channel: str, handler: Handler) -> Unsubscribe:
        unsubscribe = self._table.add(channel, handler)
        if self._pubsub is not None and channel not in self._subscribed:
            self._subscribed.add(channel)
            asyncio.get_running_loop().create_task(self._safe_subscribe(channel))
        return unsubscribe

    def on_reconnect(self, callback: Callable[[], Awaitable[None] | None]) -> None:
        self._table.add_reconnect(callback)

    async def _safe_subscribe(self, channel: str) -> None:
        try:
            await self._pubsub.subscribe(PREFIX + channel)
        except (RedisError, OSError):
            log.warning("subscribe failed; it is retried on reconnect")

    async def _listen_forever(self) -> None:
        backoff = 0.1
        first = True
        reconnecting = False  # between losing the subscription and getting it back
        while True:
            try:
                self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                self._subscribed = set(self._table.channels) | {"_ping"}
                await self._pubsub.subscribe(*(PREFIX + c for c in self._subscribed))
                self._ready.set()
                if not first:
                    log.info("reconnected to Redis")
                    await self._table.reconnected()
                first = reconnecting = False
                backoff = 0.1
                async for message in self._pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    channel = message["channel"].decode()[len(PREFIX) :]
                    await self._table.dispatch(channel, message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("Redis subscription lost (%s); reconnecting", exc.__class__.__name__)
                if not first and not reconnecting:
                    self.outage_began_ms = int(time.time() * 1000)
                    reconnecting = True
            finally:
                if self._pubsub is not None:
                    with contextlib.suppress(RedisError, OSError):
                        await self._pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)


def _without_password(url: str) -> str:
    """The URL as it may be logged."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
