"""Rate limits per principal (or client address) and route, via the `limits` library:
counters in memory by default, in Redis when configured so replicas share them."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from taleweaver.domain.errors import TooManyRequests

LOGIN_PATHS = frozenset({"/api/v1/auth/login", "/api/v1/auth/setup"})


class RateLimits:
    def __init__(self, default: str, login: str, redis_url: str | None = None) -> None:
        storage: Storage = RedisStorage(f"async+{redis_url}") if redis_url else MemoryStorage()
        self._limiter = MovingWindowRateLimiter(storage)
        self._default: RateLimitItem = parse(default)
        self._login: RateLimitItem = parse(login)

    async def check(self, who: str, path: str) -> None:
        item = self._login if path in LOGIN_PATHS else self._default
        if await self._limiter.hit(item, who, path):
            return
        stats = await self._limiter.get_window_stats(item, who, path)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise TooManyRequests(f"rate limit of {item} exceeded; slow down", retry_after)
