"""Session lifecycle: create, list, rename, pin, archive, delete, fork, search."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.errors import Conflict, InvalidInput, NotFound
from taleweaver.domain.events import JSON, EventMetadata, NewEvent, RecordedEvent
from taleweaver.domain.session_settings import check_settings
from taleweaver.domain.sessions import (
    HISTORY_EVENTS,
    EventType,
    SessionFilter,
    SessionKind,
    SessionState,
    select_telling,
    validate_title,
)
from taleweaver.engine.outcome import new_id
from taleweaver.store.queries import Queries
from taleweaver.store.repository import SessionRepository

# (conn, workspace id, source session id, fork's session id), run inside the fork's
# transaction: what a capability keeps beside a session and must follow its forks
# (the safety layer's crisis pause) is written with the fork or not at all.
ForkHook = Callable[[AsyncConnection, str, str, str], Awaitable[None]]
# (workspace id, settings): a capability's check of the settings keys it reads
# (the lorebooks feature: every listed book exists); raises InvalidInput.
SettingsCheck = Callable[[str, JSON], Awaitable[None]]
# (workspace id, kind): whether a session of that kind may be created there (a
# plugin's kind in a workspace that turned the plugin off may not); raises Conflict.
KindCheck = Callable[[str, SessionKind], Awaitable[None]]

# The events that record a turn's reply and context (the last one is the turn's now).
_TURN_RECORDS = (EventType.TURN_COMMITTED, EventType.TURN_REGENERATED, EventType.TURN_EDITED)


class Sessions:
    def __init__(self, repository: SessionRepository, queries: Queries) -> None:
        self.repository = repository
        self.queries = queries
        self.fork_hooks: list[ForkHook] = []
        self.settings_checks: list[SettingsCheck] = []
        self.kind_checks: list[KindCheck] = []

    async def check_settings(self, workspace_id: str, settings: JSON) -> JSON:
        """Settings as every writer stores them: bounded, and what the engine reads valid."""
        checked = check_settings(settings)
        for check in self.settings_checks:
            await check(workspace_id, checked)
        return checked

    async def create(
        self,
        workspace_id: str,
        *,
        kind: SessionKind,
        title: str,
        settings: JSON | None = None,
        owner_id: str | None = None,
        metadata: EventMetadata,
    ) -> JSON:
        for check in self.kind_checks:
            await check(workspace_id, kind)
        settings = await self.check_settings(workspace_id, settings or {})
        state = SessionState(id=new_id())
        event = NewEvent(
            EventType.SESSION_CREATED,
            {
                "workspace_id": workspace_id,
                "kind": str(kind),
                "title": validate_title(title),
                "settings": settings,
                "owner_id": owner_id,
            },
        )
        await self.repository.commit(state, [event], metadata, workspace_id=workspace_id)
        return await self.get(workspace_id, state.id)

    async def get(self, workspace_id: str, session_id: str) -> JSON:
        row = await self.queries.session(workspace_id, session_id)
        if row is None:
            raise NotFound(f"session {session_id} not found")
        state = await self.repository.open(workspace_id, session_id)
        return row | {"settings": state.settings}

    async def list_page(
        self, workspace_id: str, where: SessionFilter, *, limit: int, offset: int
    ) -> tuple[list[JSON], int]:
        return await self.queries.sessions(workspace_id, where, limit=limit, offset=offset)

    async def update(
        self,
        workspace_id: str,
        session_id: str,
        *,
        title: str | None = None,
        pinned: bool | None = None,
        archived: bool | None = None,
        settings: JSON | None = None,
        metadata: EventMetadata,
    ) -> JSON:
        """Change what is given. `settings` is merged into the session's at the top
        level, as a JSON merge patch is: a key set to null is removed."""
        state = await self.repository.open(workspace_id, session_id)
        events: list[NewEvent] = []
        if settings is not None:
            merged = {k: v for k, v in (state.settings | settings).items() if v is not None}
            checked = await self.check_settings(workspace_id, merged)
            if checked != state.settings:
                events.append(NewEvent(EventType.SESSION_SETTINGS_CHANGED, {"settings": checked}))
        if title is not None and validate_title(title) != state.title:
            events.append(NewEvent(EventType.SESSION_RENAMED, {"title": validate_title(title)}))
        if pinned is not None and pinned != state.pinned:
            events.append(NewEvent(EventType.SESSION_PINNED, {"pinned": pinned}))
        if archived is not None and archived != state.archived:
            events.append(NewEvent(EventType.SESSION_ARCHIVED, {"archived": archived}))
        if events:
            await self.repository.commit(state, events, metadata)
        return await self.get(workspace_id, session_id)

    async def select_telling(
        self,
        workspace_id: str,
        session_id: str,
        message_id: str,
        active: int,
        *,
        metadata: EventMetadata,
    ) -> JSON:
        """Make telling `active` of the last reply (message `message_id`) the one the
        story goes on from: what the narrator reads next, what exports and every
        device show. Returns the message as it now reads."""
        state = await self.repository.open(workspace_id, session_id)
        last = state.last_turn
        reply = None if last is None else await self._reply(session_id, last.number)
        if reply is None or reply["id"] != message_id:
            raise Conflict(
                f"message {message_id} is not the last reply of session {session_id} "
                "(the story may have moved on): only the last reply's tellings can be chosen"
            )
        event = select_telling(state, active)
        if event is None:
            return reply
        await self.repository.commit(state, [event], metadata)
        return await self._reply(session_id, reply["turn_number"]) or reply

    async def _reply(self, session_id: str, turn_number: int) -> JSON | None:
        """Turn `turn_number`'s narrator message as the read model has it."""
        found = await self.queries.messages(session_id, after_turn=turn_number - 1, limit=2)
        return next((m for m in found if m["role"] == "narrator"), None)

    async def delete(self, workspace_id: str, session_id: str, *, metadata: EventMetadata) -> None:
        state = await self.repository.open(workspace_id, session_id)
        await self.repository.commit(state, [NewEvent(EventType.SESSION_DELETED, {})], metadata)

    async def fork(
        self,
        workspace_id: str,
        session_id: str,
        *,
        at_turn: int,
        title: str | None,
        owner_id: str | None = None,
        metadata: EventMetadata,
    ) -> JSON:
        """A new session whose history is this one's up to and including `at_turn`."""
        source = await self.repository.open(workspace_id, session_id)
        if not 0 <= at_turn <= source.turn_count:
            raise InvalidInput(
                f"at_turn must be between 0 and {source.turn_count} (the session's last turn)"
            )
        history = [
            _copy_for_fork(e)
            for e in await self.repository.store.read_stream(session_id)
            if e.type in HISTORY_EVENTS and e.payload["number"] <= at_turn
        ]
        state = SessionState(id=new_id())
        created = NewEvent(
            EventType.SESSION_CREATED,
            {
                "workspace_id": workspace_id,
                "kind": str(source.kind),
                "title": validate_title(title or f"{source.title} (fork)"),
                "settings": source.settings,
                "forked_from": {"session_id": session_id, "turn": at_turn},
                "owner_id": owner_id,
            },
        )

        async def carry(conn: AsyncConnection) -> None:
            for hook in self.fork_hooks:
                await hook(conn, workspace_id, session_id, state.id)

        await self.repository.commit(
            state, [created, *history], metadata, workspace_id=workspace_id, within=carry
        )
        return await self.get(workspace_id, state.id)

    async def events(
        self, workspace_id: str, session_id: str, *, after: int, limit: int
    ) -> list[RecordedEvent]:
        await self.repository.open(workspace_id, session_id)
        return await self.repository.store.read_stream(session_id, after=after, limit=limit)

    async def turn_event(self, workspace_id: str, session_id: str, turn_id: str) -> RecordedEvent:
        """A turn's latest record (committed, regenerated or edited): its reply and the
        trace of its context, found by the turn's id without reading the stream."""
        await self.repository.open(workspace_id, session_id)
        version = await self.queries.turn_event_version(session_id, turn_id, _TURN_RECORDS)
        if version is not None:
            store = self.repository.store
            found = await store.read_stream(session_id, after=version - 1, limit=1)
            if found:
                return found[0]
        raise NotFound(f"turn {turn_id} not found in session {session_id}")

    async def messages(
        self, workspace_id: str, session_id: str, *, after_turn: int, limit: int
    ) -> list[JSON]:
        await self.repository.open(workspace_id, session_id)
        return await self.queries.messages(session_id, after_turn=after_turn, limit=limit)

    async def search(
        self,
        workspace_id: str,
        text: str,
        *,
        session_id: str | None = None,
        owners: frozenset[str] | None = None,
        limit: int = 20,
    ) -> list[JSON]:
        if session_id is not None:
            await self.repository.open(workspace_id, session_id)
        return await self.queries.search(
            workspace_id, text, session_id=session_id, owners=owners, limit=limit
        )


def _copy_for_fork(event: RecordedEvent) -> NewEvent:
    payload: dict[str, Any] = dict(event.payload)
    if "message_ids" in payload:  # message ids are unique across sessions
        payload["message_ids"] = {role: new_id() for role in payload["message_ids"]}
    return NewEvent(event.type, payload, event.schema_version)
