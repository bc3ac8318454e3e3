"""Usage counts flushed by several nodes into the same (key, day) rows: every request is
counted once, whichever node inserts the row first."""

from __future__ import annotations

import asyncio
import secrets

from parley.services.container import Services
from parley.services.usage import UsageRecorder, usage_report
from tests.conftest import AppKeys, Server


def test_nodes_flushing_the_same_rows_lose_no_count(server: Server, app_keys: AppKeys) -> None:
    key_id = "k" + secrets.token_hex(6)

    async def go(services: Services) -> None:
        nodes = [UsageRecorder() for _ in range(4)]
        for round_ in range(3):
            for n, node in enumerate(nodes):
                for _ in range(10 + n):
                    node.record("client", key_id, app_keys.id, f"https://o{n}.test", None)
                node.record("client", key_id, app_keys.id, None, "INVALID_TOKEN")
            await asyncio.gather(*(node.flush(services.db) for node in nodes))
            # Nothing was put back for a later retry: each flush went through at once.
            assert all(not node._pending for node in nodes), round_
        (row,) = [r for r in await usage_report(services.db, app_keys.id) if r["keyId"] == key_id]
        assert row["requests"] == 3 * sum(11 + n for n in range(4))
        assert row["rejections"] == {"INVALID_TOKEN": 12}
        assert sorted(row["origins"]) == [f"https://o{n}.test" for n in range(4)]

    server.call(go)
