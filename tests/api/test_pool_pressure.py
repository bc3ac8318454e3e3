"""Under load with cold caches, no request may hold a database connection while it waits
for another: with every connection held that way, the pool deadlocks."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import AppKeys, Server, issue_token, ok


def test_cold_cache_listing_under_concurrency(
    server: Server, app_keys: AppKeys, admin: httpx.Client
) -> None:
    tokens = [issue_token(admin, f"p{n}") for n in range(4)]
    for n in range(4):
        ok(admin.post("/rooms", json={"members": [f"p{n}", f"p{(n + 1) % 4}"]}))

    def list_rooms(n: int) -> int:
        headers = {"IM-CLIENT-KEY": app_keys.client_key, "IM-Authorization": tokens[n % 4]}
        with server.client(**headers) as c:
            return c.get("/rooms", timeout=20).status_code

    for _ in range(3):  # each round starts with every profile evicted
        server.services.users.forget_all_profiles()
        with ThreadPoolExecutor(24) as pool:
            assert set(pool.map(list_rooms, range(24))) == {200}
