"""What the replicas of one deployment share for live sessions: wake-ups, the tokens
of turns in flight, cancels and presence. In-process on a laptop; Redis at scale."""

from taleweaver.realtime.hub import Hub, Presence
from taleweaver.realtime.redis_hub import RedisHub

__all__ = ["Hub", "Presence", "RedisHub", "hub_for"]


def hub_for(redis_url: str | None, key_prefix: str) -> Hub:
    """Redis when a URL is configured, else the in-process hub."""
    return RedisHub(redis_url, key_prefix) if redis_url else Hub()
