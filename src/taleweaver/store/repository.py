"""Sessions as event streams: open (snapshot + tail) and commit (events + read models)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.errors import NotFound
from taleweaver.domain.events import EventMetadata, NewEvent, RecordedEvent
from taleweaver.domain.sessions import SessionState
from taleweaver.store.events import EventStore
from taleweaver.store.projections import project
from taleweaver.store.queries import Queries
from taleweaver.store.sealing import Sealer

# Writes the read models of freshly appended events, in their transaction.
Projector = Callable[[AsyncConnection, Sequence[RecordedEvent], Sealer | None], Awaitable[None]]
# Told of events once their transaction committed (a wake-up for live channels).
CommitListener = Callable[[Sequence[RecordedEvent]], Awaitable[None]]

SNAPSHOT_EVERY = 100
CACHE_SIZE = 256


class SessionRepository:
    def __init__(self, store: EventStore, queries: Queries) -> None:
        self.store = store
        self.queries = queries
        # States this process committed or opened, reused while still current.
        self._cache: OrderedDict[str, SessionState] = OrderedDict()
        self.committed: list[CommitListener] = []

    async def open(
        self, workspace_id: str, session_id: str, *, known_version: int | None = None
    ) -> SessionState:
        """The session's current state, ready to take a turn.

        `known_version`: the stream's version as the caller just read it, which
        spares a read; the commit's expected-version check still guards the rest.
        """
        version = known_version
        if version is None:
            version = await self.queries.session_version(session_id)
        cached = self._cache.get(session_id)
        if cached is not None and cached.version == version:
            self._cache.move_to_end(session_id)
            state = cached
        else:
            state = await self.replay(session_id)
        if state.version == 0 or state.deleted or state.workspace_id != workspace_id:
            raise NotFound(f"session {session_id} not found")
        return state

    async def replay(self, session_id: str) -> SessionState:
        """Fold the stream from its latest snapshot; no cache involved."""
        snapshot = await self.store.load_snapshot(session_id)
        if snapshot is None:
            state = SessionState(id=session_id)
        else:
            state = SessionState.from_snapshot(snapshot[1])
        for event in await self.store.read_stream(session_id, after=state.version):
            state.apply(event)
        self._remember(state)
        return state

    async def commit(
        self,
        state: SessionState,
        new_events: Sequence[NewEvent],
        metadata: EventMetadata,
        *,
        workspace_id: str | None = None,
        within: Callable[[AsyncConnection], Awaitable[None]] | None = None,
    ) -> tuple[SessionState, list[RecordedEvent]]:
        """Append at the state's version and update read models, all in one transaction.

        `within` writes the caller's own rows in that transaction (a fork's carried
        safety pause), so they commit with the events or not at all.
        Raises `ConcurrencyConflict` if anything else was appended since `state`.
        """
        after = state.copy()
        async with self.store.db.write() as conn:
            recorded = await self.store.append(
                conn,
                stream_id=state.id,
                workspace_id=workspace_id or state.workspace_id,
                expected_version=state.version,
                new_events=new_events,
                metadata=metadata,
            )
            for event in recorded:
                after.apply(event)
            await project(conn, recorded, self.store.sealer)
            if within is not None:
                await within(conn)
            if after.version // SNAPSHOT_EVERY > state.version // SNAPSHOT_EVERY:
                await self.store.save_snapshot(conn, state.id, after.version, after.to_snapshot())
        self._remember(after)
        await self._announce(recorded)
        return after, recorded

    async def commit_new(
        self,
        session_id: str,
        workspace_id: str,
        new_events: Sequence[NewEvent],
        metadata: EventMetadata,
        *,
        project_all: Projector = project,
    ) -> SessionState:
        """A new session's whole stream in one transaction: appended, projected by
        `project_all` (an import's batch form of the read models), and snapshotted so
        a long history opens without replaying every event."""
        state = SessionState(id=session_id)
        async with self.store.db.write() as conn:
            recorded = await self.store.append(
                conn,
                stream_id=session_id,
                workspace_id=workspace_id,
                expected_version=0,
                new_events=new_events,
                metadata=metadata,
            )
            await project_all(conn, recorded, self.store.sealer)
            for event in recorded:
                state.apply(event)
            await self.store.save_snapshot(conn, session_id, state.version, state.to_snapshot())
        self._remember(state)
        await self._announce(recorded)
        return state

    async def _announce(self, recorded: Sequence[RecordedEvent]) -> None:
        for listener in self.committed:
            await listener(recorded)

    def _remember(self, state: SessionState) -> None:
        self._cache[state.id] = state
        self._cache.move_to_end(state.id)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
