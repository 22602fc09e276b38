"""Rate limits per principal (or client address) and route, via the `limits` library:
counters in memory by default, in Redis when configured so replicas share them."""

from __future__ import annotations

import logging
import math
import time
from typing import cast

import redis.asyncio
import redis.exceptions
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.aio.strategies import MovingWindowRateLimiter

from taleweaver.domain.errors import TooManyRequests

log = logging.getLogger(__name__)

LOGIN_PATHS = frozenset({"/api/v1/auth/login", "/api/v1/auth/setup"})


class RateLimits:
    def __init__(
        self,
        default: str,
        login: str,
        redis_url: str | None = None,
        *,
        key_prefix: str = "taleweaver",
    ) -> None:
        # redis-py is the Redis client Taleweaver installs; `limits` defaults to coredis.
        self._storage: Storage = (
            RedisStorage(f"async+{redis_url}", implementation="redispy", key_prefix=key_prefix)
            if redis_url
            else MemoryStorage()
        )
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._default: RateLimitItem = parse(default)
        self._login: RateLimitItem = parse(login)

    async def check(self, who: str, path: str) -> None:
        item = self._login if path in LOGIN_PATHS else self._default
        try:
            if await self._limiter.hit(item, who, path):
                return
            stats = await self._limiter.get_window_stats(item, who, path)
        except (redis.exceptions.RedisError, OSError) as exc:
            # Counters unreachable: serve the request rather than fail every one of
            # them; the outage is logged, and login lockout still holds in the database.
            log.warning("rate limiting is off while Redis is unreachable: %s", exc)
            return
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise TooManyRequests(f"rate limit of {item} exceeded; slow down", retry_after)

    async def close(self) -> None:
        """Close the Redis connections, if any."""
        if isinstance(self._storage, RedisStorage) and isinstance(
            self._storage.bridge, RedispyBridge
        ):
            # The redispy bridge's client is a redis.asyncio.Redis (its protocol omits aclose).
            await cast(redis.asyncio.Redis, self._storage.bridge.get_connection()).aclose()
