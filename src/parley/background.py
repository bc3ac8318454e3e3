"""Background tasks: how the long-lived loops of services and brokers are stopped."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(*tasks: asyncio.Task[object] | None) -> None:
    """Cancel the tasks and wait until each has finished, so nothing they hold (a
    connection, a half-written batch) outlives the caller's ``close``. A task's own
    failure is not re-raised here: it was the loop's to report while it ran."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
