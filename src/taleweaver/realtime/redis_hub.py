"""The hub on Redis: pub/sub for signals, a Redis Stream per turn in flight.

Signals carry positions and ids only; a replica that misses one (it restarted,
Redis blinked) still catches up, because its feed also polls the event store.
A turn's stream events are appended with the entry id `0-<seq>`, so a reader on
any replica resumes after the sequence number it has, and an entry is never
written twice. The stream outlives its turn by a short TTL; a key per session
names the turn running there and lapses soon after its replica dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import redis.asyncio
import redis.exceptions

from taleweaver.domain.events import JSON
from taleweaver.realtime.hub import Hub, Presence

log = logging.getLogger(__name__)

TURN_TTL_S = 120  # how long a finished turn's tokens stay readable
# A running turn's session key: kept alive by its replica every OWNER_TTL_S / 3, so
# a session whose replica died is free again within OWNER_TTL_S.
OWNER_TTL_S = 6
PRESENCE_TTL_S = 3600
RETRY_S = 1.0
CLAIM = "claim:"  # the running-turn key's value while a turn is starting

# Delete a session's running-turn key only if it still names this turn.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"
# Extend it, likewise.
_KEEP = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then"
    " return redis.call('expire', KEYS[1], ARGV[2]) end"
)


class RedisHub(Hub):
    shared_turns = True
    keep_alive_s = OWNER_TTL_S / 3
    errors = (redis.exceptions.RedisError, OSError)

    def __init__(self, url: str, key_prefix: str) -> None:
        super().__init__()
        self._redis: redis.asyncio.Redis = redis.asyncio.Redis.from_url(url, decode_responses=True)
        self._prefix = f"{key_prefix}:live"
        self._channel = f"{self._prefix}:signals"
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    async def start(self) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="live-redis-signals")
            await self._subscribed.wait()

    async def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._subscribed.set()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._deliver(json.loads(message["data"]))
            except (redis.exceptions.RedisError, OSError) as exc:
                log.warning("live signals from Redis interrupted, retrying: %s", exc)
                self._subscribed.set()  # callers go on; the store poll covers the gap
                await asyncio.sleep(RETRY_S)
            finally:
                with contextlib.suppress(redis.exceptions.RedisError, OSError):
                    await pubsub.aclose()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._redis.aclose()

    async def broadcast(self, message: JSON) -> None:
        try:
            await self._redis.publish(self._channel, json.dumps(message))
        except (redis.exceptions.RedisError, OSError) as exc:
            log.warning("live signal not published, delivered here only: %s", exc)
            self._deliver(message)

    # --- turns in flight ------------------------------------------------------------------

    def _turn_key(self, session_id: str, turn_id: str) -> str:
        return self._key("turn", session_id, turn_id)

    def _owner_key(self, session_id: str) -> str:
        return self._key("running", session_id)

    async def turn_begin(self, session_id: str, turn_id: str) -> None:
        await self._redis.set(self._owner_key(session_id), turn_id, ex=OWNER_TTL_S)

    async def turn_append(self, session_id: str, turn_id: str, events: list[JSON]) -> None:
        key = self._turn_key(session_id, turn_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.xadd(key, {"e": json.dumps(event)}, id=f"0-{event['seq']}")
            pipe.expire(key, TURN_TTL_S)
            pipe.set(self._owner_key(session_id), turn_id, ex=OWNER_TTL_S)
            await pipe.execute()

    async def turn_alive(self, session_id: str, turn_id: str) -> None:
        await self._redis.eval(_KEEP, 1, self._owner_key(session_id), turn_id, OWNER_TTL_S)

    async def turn_end(self, session_id: str, turn_id: str) -> None:
        await self._redis.expire(self._turn_key(session_id, turn_id), TURN_TTL_S)
        await self._redis.eval(_RELEASE, 1, self._owner_key(session_id), turn_id)

    async def current_turn(self, session_id: str) -> str | None:
        value = await self._redis.get(self._owner_key(session_id))
        if not value or str(value).startswith(CLAIM):
            return None  # nothing, or a turn still starting: not one to follow yet
        return str(value)

    async def claim(self, session_id: str, token: str) -> bool:
        # The running-turn key itself: the turn, once started, takes it over.
        claimed = await self._redis.set(
            self._owner_key(session_id), f"{CLAIM}{token}", nx=True, ex=OWNER_TTL_S
        )
        return bool(claimed)

    async def release(self, session_id: str, token: str) -> None:
        await self._redis.eval(_RELEASE, 1, self._owner_key(session_id), f"{CLAIM}{token}")

    async def turn_read(
        self, session_id: str, turn_id: str, after: int, *, block_ms: int | None
    ) -> list[JSON] | None:
        key = self._turn_key(session_id, turn_id)
        found = await self._read(key, after, block_ms)
        if found or await self.current_turn(session_id) == turn_id:
            return found
        # Nothing new and no replica runs it: read once more, for an end written
        # just before the running key went, then report the turn over.
        return await self._read(key, after, None) or None

    async def _read(self, key: str, after: int, block_ms: int | None) -> list[JSON]:
        # RESP2 replies (the client's default): [[key, [(id, fields), ...]]]
        reply: list[tuple[str, list[tuple[str, dict[str, str]]]]] = await self._redis.xread(
            {key: f"0-{after}"}, block=block_ms
        )  # type: ignore[assignment]
        return [json.loads(fields["e"]) for _, entries in reply for _, fields in entries]

    async def reply(self, key: str, value: str) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.lpush(self._key("reply", key), value)
            pipe.expire(self._key("reply", key), 60)
            await pipe.execute()

    async def wait_reply(self, key: str, within_s: float) -> str | None:
        found = await self._redis.blpop([self._key("reply", key)], timeout=within_s)
        return None if found is None else str(found[1])

    # --- presence -------------------------------------------------------------------------

    def _presence_key(self, session_id: str) -> str:
        return self._key("presence", session_id)

    async def presence_put(self, session_id: str, entry: Presence) -> None:
        key = self._presence_key(session_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, entry.connection, json.dumps(entry.to_dict()))
            pipe.expire(key, PRESENCE_TTL_S)
            await pipe.execute()

    async def presence_drop(self, session_id: str, connection: str) -> None:
        await self._redis.hdel(self._presence_key(session_id), connection)

    async def presence(self, session_id: str) -> list[Presence]:
        key = self._presence_key(session_id)
        stored: dict[str, str] = await self._redis.hgetall(key)  # type: ignore[assignment]
        now = time.time()
        entries = [Presence.from_dict(json.loads(v)) for v in stored.values()]
        gone = [p.connection for p in entries if p.seen_until <= now]
        if gone:  # connections of a replica that died without saying goodbye
            await self._redis.hdel(key, *gone)
        return [p for p in entries if p.seen_until > now]
