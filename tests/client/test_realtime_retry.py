"""A send retried after its socket closed waits for the reader to let the socket go.

A send on a WebSocket that has just closed fails at once, without suspending. Before the
reader task had seen the close, ``Realtime.send`` (with a client message id, so retried)
used to try the same socket again straight away, for ever, never letting the reader run:
the whole event loop spun (found by the kill -9 scenario of tests/faults)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed

from parley.client import ParleyAPIError
from parley.client.realtime import Realtime


class JustClosed:
    """A socket whose every send fails at once, as one that has just closed does."""

    def __init__(self) -> None:
        self.sends = 0

    async def send(self, _frame: str) -> None:
        self.sends += 1
        raise ConnectionClosed(None, None)


def test_a_retried_send_lets_the_reader_see_the_close_and_then_times_out() -> None:
    async def scenario() -> tuple[int, float]:
        rt = Realtime("http://127.0.0.1:9", "key", "token", ack_timeout=0.5)
        socket = JustClosed()
        rt._ws = socket  # type: ignore[assignment]
        rt._state.set()
        rt._supervisor = asyncio.create_task(asyncio.sleep(30))  # "open"

        async def reader_sees_the_close() -> None:
            await asyncio.sleep(0.05)
            rt._ws = None
            rt._state.clear()

        reader = asyncio.create_task(reader_sees_the_close())
        started = time.monotonic()
        with pytest.raises(ParleyAPIError) as refused:
            await rt.send("room", "hi", client_message_id="m-1")
        assert refused.value.error == "CONNECTION_ERROR"
        await reader
        rt._supervisor.cancel()
        return socket.sends, time.monotonic() - started

    # In a thread of its own: a loop that spins cannot be interrupted from inside it.
    outcome: list[tuple[int, float]] = []
    runner = threading.Thread(target=lambda: outcome.append(asyncio.run(scenario())), daemon=True)
    runner.start()
    runner.join(5)
    assert outcome, "send() spun on the closed socket and never returned"
    sends, took = outcome[0]
    assert sends == 1  # not tried again on the same dead socket
    assert 0.4 < took < 3  # waited for a new socket until the ack timeout, then gave up
