"""Fixed-window request limits (per API Key: N requests per minute).

With Redis every node counts in one Redis key per window, so the cluster shares one limit;
without it each node counts in memory. If Redis cannot be reached the node falls back to
its own count rather than refusing or waving through every request.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("parley.ratelimit")


class MemoryRateLimiter:
    def __init__(self) -> None:
        self._windows: dict[str, tuple[int, int]] = {}

    async def hit(self, key: str, limit: int, window_seconds: int = 60) -> int:
        """Count one request. Returns 0 if allowed, else the seconds until the window ends."""
        now = time.time()
        window = int(now // window_seconds)
        start, count = self._windows.get(key, (window, 0))
        if start != window:
            count = 0
            if len(self._windows) > 100_000:  # drop stale windows now and then
                self._windows = {k: v for k, v in self._windows.items() if v[0] == window}
        count += 1
        self._windows[key] = (window, count)
        if count > limit:
            return max(1, int((window + 1) * window_seconds - now + 0.999))
        return 0


class RedisRateLimiter:
    def __init__(self, client: Any) -> None:
        self._client = client
        self._fallback = MemoryRateLimiter()

    async def hit(self, key: str, limit: int, window_seconds: int = 60) -> int:
        now = time.time()
        window = int(now // window_seconds)
        redis_key = f"parley:rl:{key}:{window}"
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.incr(redis_key)
                pipe.expire(redis_key, window_seconds + 5)
                count, _ = await pipe.execute()
        except Exception as exc:
            log.warning("rate limit counter in Redis unavailable (%s)", exc.__class__.__name__)
            return await self._fallback.hit(key, limit, window_seconds)
        if int(count) > limit:
            return max(1, int((window + 1) * window_seconds - now + 0.999))
        return 0
