"""Fixtures shared by the API tests: the events a server publishes, and a cast of users."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from parley.services.container import Services
from parley.services.events import CHANNEL, Event
from tests.conftest import AppKeys, Server, issue_token


class Recorder:
    """Events from the server's broker, as the real-time gateway will receive them."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._seen = threading.Condition()

    def __call__(self, raw: bytes) -> None:
        with self._seen:
            self.events.append(Event.decode(raw))
            self._seen.notify_all()

    def wait_for(
        self, kind: str, room: str | None = None, user: str | None = None, timeout: float = 5.0
    ) -> Event:
        """The first event of ``kind`` for ``room`` (and/or addressed to ``user``)."""

        def found() -> Event | None:
            return next(
                (
                    e
                    for e in self.events
                    if e.kind == kind
                    and (room is None or room in e.rooms)
                    and (user is None or user in e.users)
                ),
                None,
            )

        with self._seen:
            self._seen.wait_for(lambda: found() is not None, timeout)
        event = found()
        assert event is not None, f"no {kind} event for {room or user}: {self.events}"
        return event


@pytest.fixture
def events(server: Server) -> Iterator[Recorder]:
    """Subscribed on the server's own loop, and live before the test starts: with Redis a
    subscription made after start takes effect asynchronously, so a probe must come back."""
    recorder = Recorder()

    async def subscribe(services: Services) -> Callable[[], None]:
        return services.broker.subscribe(CHANNEL, recorder)

    unsubscribe = server.call(subscribe)
    probe = Event("probe", "probe", None, rooms=["probe"])
    deadline = time.monotonic() + 5
    while not any(e.kind == "probe" for e in recorder.events):
        assert time.monotonic() < deadline, "the event subscription never became live"

        async def publish(services: Services) -> bool:
            return await services.broker.publish(CHANNEL, probe.encode())

        server.call(publish)
        time.sleep(0.05)
    yield recorder

    async def stop(_services: Services) -> None:
        unsubscribe()

    server.call(stop)


@pytest.fixture
def people(
    server: Server, app_keys: AppKeys, admin: httpx.Client
) -> Iterator[dict[str, httpx.Client]]:
    clients = {}
    for name in ("alice", "bob", "carol", "dave"):
        token = issue_token(admin, name, nickname=name.title())
        clients[name] = server.client(
            **{"IM-CLIENT-KEY": app_keys.client_key, "IM-Authorization": token}
        )
    yield clients
    for client in clients.values():
        client.close()
