"""Live sessions: committed events, the turn in flight and presence, per session,
whichever replica a client or a turn is on.

The event store is the source of truth: a live client replays events from it and
then takes them from this replica's feed, which a hub signal wakes after every
commit. A turn's stream events go from its handle (same process) or through the
hub (another replica); cancels go through the hub to the replica that runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field

from taleweaver.domain.errors import Conflict, NotFound
from taleweaver.domain.events import JSON, RecordedEvent
from taleweaver.engine.outcome import new_id
from taleweaver.engine.table import Tables
from taleweaver.engine.turns import StreamEvent, TurnHandle, TurnRunner
from taleweaver.realtime import Hub, Presence
from taleweaver.realtime.feed import EventFeed
from taleweaver.store.repository import SessionRepository

log = logging.getLogger(__name__)

ENDS = frozenset({"done", "error"})
CANCEL_REPLY_S = 5.0
FOLLOW_BLOCK_MS = 1000


def stream_frame(event: StreamEvent) -> JSON:
    return {"seq": event.seq, "name": event.name, "data": event.data}


@dataclass(eq=False)  # each watch is its own, kept in sets
class SessionWatch:
    """What one live client of a session is told about."""

    events: asyncio.Queue[RecordedEvent]
    turns: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    presence: asyncio.Event = field(default_factory=asyncio.Event)


class LiveSessions:
    def __init__(
        self, repository: SessionRepository, runner: TurnRunner, hub: Hub, *, poll_s: float = 1.0
    ) -> None:
        self.store = repository.store
        self.runner = runner
        self.hub = hub
        self.feed = EventFeed(self.store, poll_s=poll_s)
        self._watches: dict[str, set[SessionWatch]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        hub.listen(self._on_signal)
        runner.on_start = self._turn_started
        repository.committed.append(self._committed)
        self.tables = Tables(self.store, runner, self._committed, self.exclusive)

    def watching(self) -> dict[str, int]:
        """Open live connections on this server, by session (for the metrics)."""
        return {session: len(watches) for session, watches in self._watches.items() if watches}

    async def start(self) -> None:
        if not self._started:
            self._started = True
            await self.hub.start()
            self.feed.start()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.feed.close()
        await self.hub.close()

    def _spawn(self, coro: Coroutine[object, object, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- signals --------------------------------------------------------------------------

    async def _committed(self, recorded: Sequence[RecordedEvent]) -> None:
        if recorded:
            await self._broadcast({"kind": "position", "position": recorded[-1].position})

    async def _broadcast(self, message: JSON) -> None:
        try:
            await self.hub.broadcast(message)
        # The store poll still delivers; a commit never fails here.
        except self.hub.errors as exc:
            log.warning("live signal %s not sent: %s", message.get("kind"), exc)

    def _on_signal(self, message: JSON) -> None:
        kind = message.get("kind")
        session_id = str(message.get("session_id", ""))
        if kind == "position":
            self.feed.wake()
        elif kind == "turn":
            for watch in self._watches.get(session_id, ()):
                watch.turns.put_nowait(str(message["turn_id"]))
        elif kind == "presence":
            for watch in self._watches.get(session_id, ()):
                watch.presence.set()
        elif kind == "cancel":
            handle = self.runner.local(session_id, str(message["turn_id"]))
            if handle is not None:  # the replica that runs the turn answers
                answer = "cancelled" if handle.cancel() else "late"
                self._spawn(self.hub.reply(str(message["reply"]), answer), "live-cancel-reply")

    @contextlib.contextmanager
    def watch(self, session_id: str) -> Iterator[SessionWatch]:
        with self.feed.watch(session_id) as events:
            watch = SessionWatch(events)
            self._watches.setdefault(session_id, set()).add(watch)
            try:
                yield watch
            finally:
                watches = self._watches.get(session_id, set())
                watches.discard(watch)
                if not watches:
                    self._watches.pop(session_id, None)

    async def replay(self, session_id: str, after: int, limit: int = 500) -> list[RecordedEvent]:
        return await self.store.read_stream_since(session_id, position=after, limit=limit)

    # --- turns in flight ------------------------------------------------------------------

    async def _turn_started(self, handle: TurnHandle) -> None:
        await self.start()  # this replica must hear cancels for the turn from now on
        if self.hub.shared_turns:
            self._spawn(self._relay(handle), f"live-relay-{handle.turn_id}")
        await self._broadcast(
            {"kind": "turn", "session_id": handle.session_id, "turn_id": handle.turn_id}
        )

    async def _relay(self, handle: TurnHandle) -> None:
        """Copy a turn's stream into the hub, for clients on other replicas: what
        was emitted while the last batch was on its way goes in one round trip, so
        a busy replica sends fewer, larger batches instead of falling behind."""
        session_id, turn_id = handle.session_id, handle.turn_id
        sent = 0
        keeper = asyncio.create_task(self._keep_alive(session_id, turn_id))
        try:
            await self.hub.turn_begin(session_id, turn_id)
            async for _ in handle.subscribe():
                batch = handle.events[sent:]  # this event and any emitted since
                if batch:
                    await self.hub.turn_append(
                        session_id, turn_id, [stream_frame(e) for e in batch]
                    )
                    sent += len(batch)
            await self.hub.turn_end(session_id, turn_id)
        except self.hub.errors as exc:  # clients on this replica still get every token
            log.warning("turn %s not relayed to other replicas: %s", turn_id, exc)
        finally:
            keeper.cancel()

    async def _keep_alive(self, session_id: str, turn_id: str) -> None:
        """Keep the session held for this turn while it runs, tokens or not (a model
        may think a while before its first one)."""
        while True:
            await asyncio.sleep(self.hub.keep_alive_s)
            with contextlib.suppress(*self.hub.errors):
                await self.hub.turn_alive(session_id, turn_id)

    async def exclusive(
        self, session_id: str, start: Callable[[], Awaitable[TurnHandle]]
    ) -> TurnHandle:
        """Start a turn only if no replica runs one in the session: without this a
        second replica would generate a whole turn and fail only at its commit."""
        token = new_id()
        try:
            claimed = await self.hub.claim(session_id, token)
        except self.hub.errors as exc:  # Redis away: each replica still checks its own turns
            log.warning("session %s not claimed across replicas: %s", session_id, exc)
            return await start()
        if not claimed:
            raise Conflict(f"a turn is already running in session {session_id}")
        try:
            return await start()
        except BaseException:
            with contextlib.suppress(*self.hub.errors):
                await self.hub.release(session_id, token)
            raise

    async def current_turn(self, session_id: str) -> str | None:
        handle = self.runner.running(session_id)
        if handle is not None:
            return handle.turn_id
        return await self.hub.current_turn(session_id)

    async def follow_turn(
        self, session_id: str, turn_id: str, after: int = 0
    ) -> AsyncIterator[JSON]:
        """The turn's stream events after seq `after`, until it ends (or its replica died)."""
        handle = self.runner.local(session_id, turn_id)
        if handle is not None:
            async for stream_event in handle.subscribe(after):
                yield stream_frame(stream_event)
            return
        if not self.hub.shared_turns:
            return
        while True:
            batch = await self.hub.turn_read(session_id, turn_id, after, block_ms=FOLLOW_BLOCK_MS)
            if batch is None:
                return
            for event in batch:
                yield event
                after = int(event["seq"])
                if event["name"] in ENDS:
                    return

    async def cancel(self, workspace_id: str, session_id: str, turn_id: str) -> JSON:
        """Stop a running turn on whichever replica runs it; the finished turn's view."""
        late = f"turn {turn_id} has already finished or is committing"
        handle = self.runner.find(workspace_id, session_id, turn_id)
        if handle is not None:
            if not handle.cancel():
                raise Conflict(late)
            return await handle.wait()
        missing = NotFound(f"turn {turn_id} is not running or recent in session {session_id}")
        if not self.hub.shared_turns:
            raise missing
        await self.start()
        if await self.hub.current_turn(session_id) != turn_id:
            if await self.hub.turn_read(session_id, turn_id, 0, block_ms=None):
                raise Conflict(late)
            raise missing
        reply = new_id()
        await self.hub.broadcast(
            {"kind": "cancel", "session_id": session_id, "turn_id": turn_id, "reply": reply}
        )
        answer = await self.hub.wait_reply(reply, CANCEL_REPLY_S)
        if answer is None:
            raise missing  # no replica holds it any more
        if answer != "cancelled":
            raise Conflict(late)
        async for event in self.follow_turn(session_id, turn_id):
            if event["name"] == "done":
                turn: JSON = event["data"]["turn"]
                return turn
        raise Conflict(f"turn {turn_id} stopped without an outcome")

    # --- presence -------------------------------------------------------------------------

    async def here(self, session_id: str, entry: Presence, *, changed: bool = True) -> None:
        """Say that a connection is here, typing or not; `changed=False` only keeps
        it alive (a heartbeat), without telling everyone."""
        await self.hub.presence_put(session_id, entry)
        if changed:
            await self._broadcast({"kind": "presence", "session_id": session_id})

    async def gone(self, session_id: str, connection: str) -> None:
        await self.hub.presence_drop(session_id, connection)
        await self._broadcast({"kind": "presence", "session_id": session_id})

    async def presence(self, session_id: str) -> list[Presence]:
        return await self.hub.presence(session_id)


def seen_until(alive_s: float) -> float:
    return time.time() + alive_s
