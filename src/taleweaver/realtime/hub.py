"""The hub: signals broadcast to every replica, and the state replicas share.

Signals are small JSON messages (`kind` plus ids and positions, never event
payloads: events are read from the store). The in-process hub delivers them to
its own listeners and keeps presence in a dict; it shares no turn streams,
because every turn runs in this one process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from taleweaver.domain.events import JSON

log = logging.getLogger(__name__)

Listener = Callable[[JSON], None]


@dataclass(frozen=True, slots=True)
class Presence:
    """One live connection to a session: who, and whether they are typing."""

    connection: str
    user_id: str
    typing: bool
    seen_until: float  # a connection not refreshed by then is gone (its replica died)

    def to_dict(self) -> JSON:
        return {
            "connection": self.connection,
            "user_id": self.user_id,
            "typing": self.typing,
            "seen_until": self.seen_until,
        }

    @classmethod
    def from_dict(cls, data: JSON) -> Presence:
        return cls(
            str(data["connection"]),
            str(data["user_id"]),
            bool(data["typing"]),
            float(data["seen_until"]),
        )


class Hub:
    """The in-process hub; `RedisHub` overrides every method to share across replicas."""

    shared_turns = False  # whether turn streams, cancels and replies cross processes
    keep_alive_s = 2.0  # how often a replica says its running turns are still running
    # What a failing hub raises, for callers that carry on without it (they name no
    # Redis class, so the in-process hub never imports Redis).
    errors: tuple[type[Exception], ...] = (OSError,)

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._presence: dict[str, dict[str, Presence]] = {}

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _deliver(self, message: JSON) -> None:
        for listener in self._listeners:
            try:
                listener(message)
            except Exception:  # one faulty listener must not starve the rest
                log.exception("live signal listener failed on %s", message.get("kind"))

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def broadcast(self, message: JSON) -> None:
        """Deliver `message` to every replica's listeners, this one's included."""
        self._deliver(message)

    # --- turns in flight (shared only across replicas) ------------------------------------

    async def turn_begin(self, session_id: str, turn_id: str) -> None:
        return None

    async def turn_append(self, session_id: str, turn_id: str, events: list[JSON]) -> None:
        return None

    async def turn_alive(self, session_id: str, turn_id: str) -> None:
        return None

    async def turn_end(self, session_id: str, turn_id: str) -> None:
        return None

    async def current_turn(self, session_id: str) -> str | None:
        return None

    async def claim(self, session_id: str, token: str) -> bool:
        """Hold the session for a turn about to start on this replica; False when a
        turn runs (or is starting) there on any replica. In one process the turn
        runner's own check is enough."""
        return True

    async def release(self, session_id: str, token: str) -> None:
        """Give up a claim whose turn did not start."""
        return None

    async def turn_read(
        self, session_id: str, turn_id: str, after: int, *, block_ms: int | None
    ) -> list[JSON] | None:
        """Stream events after seq `after` (waiting up to `block_ms` for one, when
        given);
        None when no replica holds that turn."""
        return None

    async def reply(self, key: str, value: str) -> None:
        return None

    async def wait_reply(self, key: str, within_s: float) -> str | None:
        return None

    # --- presence -------------------------------------------------------------------------

    async def presence_put(self, session_id: str, entry: Presence) -> None:
        self._presence.setdefault(session_id, {})[entry.connection] = entry

    async def presence_drop(self, session_id: str, connection: str) -> None:
        here = self._presence.get(session_id, {})
        here.pop(connection, None)
        if not here:
            self._presence.pop(session_id, None)

    async def presence(self, session_id: str) -> list[Presence]:
        now = time.time()
        return [p for p in self._presence.get(session_id, {}).values() if p.seen_until > now]
