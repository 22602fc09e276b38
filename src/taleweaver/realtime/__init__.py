"""What the replicas of one deployment share for live sessions: wake-ups, the tokens
of turns in flight, cancels and presence. In-process on a laptop; Redis at scale."""

from __future__ import annotations

import typing as _typing

from taleweaver.realtime.hub import Hub, Presence

if _typing.TYPE_CHECKING:
    from taleweaver.realtime.redis_hub import RedisHub

__all__ = ["Hub", "Presence", "RedisHub", "hub_for"]


def hub_for(redis_url: str | None, key_prefix: str) -> Hub:
    """Redis when a URL is configured, else the in-process hub."""
    if not redis_url:
        return Hub()
    from taleweaver.realtime.redis_hub import RedisHub

    return RedisHub(redis_url, key_prefix)


def __getattr__(name: str) -> object:
    # RedisHub on first use: importing the Redis client costs a process that has
    # no Redis (every CLI command) a noticeable part of its start-up.
    if name == "RedisHub":
        from taleweaver.realtime.redis_hub import RedisHub

        globals()[name] = RedisHub
        return RedisHub
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
