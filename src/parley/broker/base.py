"""The broker interface.

Contract, for every implementation:

- ``publish(channel, data)`` hands ``data`` to every handler subscribed to ``channel`` on
  every node of the cluster, the publishing node included (so one code path serves one
  node and many).
- Delivery is at most once: a message published while a node is cut off from the broker
  is lost to that node. Whatever must survive that (revocations, messages) is also stored
  in the database, and ``on_reconnect`` callbacks run after every reconnection so a node
  can catch up from there; ``outage_began_ms`` tells them since when (epoch ms; 0 when
  the broker never lost its connection).
- Handlers of one channel see that channel's messages in publish order (per publisher).
  A handler that raises is logged and does not stop delivery to the others.
- ``publish`` never raises for a broker outage; it logs and returns ``False``.
- ``subscribe`` before ``start`` is in effect once ``start`` returns; a subscription added
  after ``start`` reaches a remote broker asynchronously, so a message published right
  after it may be missed (nodes subscribe everything they need before starting).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

Handler = Callable[[bytes], Awaitable[None] | None]
Unsubscribe = Callable[[], None]


class Broker(Protocol):
    outage_began_ms: int

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, channel: str, data: bytes) -> bool: ...

    def subscribe(self, channel: str, handler: Handler) -> Unsubscribe: ...

    def on_reconnect(self, callback: Callable[[], Awaitable[None] | None]) -> None: ...
