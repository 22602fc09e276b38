"""Sessions: create, list, read, update, delete, fork, messages, raw events, search."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from taleweaver.api.dates import DATE_RANGE, UtcDateTime
from taleweaver.api.deps import EngineDep, metadata_for
from taleweaver.api.interop_schemas import SearchContext, SearchResult
from taleweaver.api.schemas import (
    EventPublic,
    MessagePublic,
    MessageUpdate,
    SessionCreate,
    SessionFork,
    SessionPage,
    SessionPublic,
    SessionUpdate,
)
from taleweaver.api.security import Access, requires
from taleweaver.auth import Action
from taleweaver.domain.errors import Conflict
from taleweaver.domain.sessions import SessionFilter, SessionKind

router = APIRouter(prefix="/api/v1", tags=["sessions"])


# Turn numbers and versions are 32-bit columns; a larger cursor would overflow the query.
MAX_CURSOR = 2**31 - 1


@router.post("/sessions", status_code=201)
async def create_session(
    body: SessionCreate,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SESSION_CREATE)],
) -> SessionPublic:
    created = await engine.sessions.create(
        access.workspace_id,
        kind=body.kind,
        title=body.title,
        settings=body.settings,
        owner_id=access.principal.user_id,
        metadata=metadata_for(access.principal.user_id),
    )
    return SessionPublic.model_validate(created)


@router.get("/sessions")
async def list_sessions(
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SESSION_LIST)],
    kind: SessionKind | None = None,
    archived: bool | None = None,
    pinned: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_CURSOR)] = 0,
) -> SessionPage:
    rows, total = await engine.sessions.list_page(
        access.workspace_id,
        SessionFilter(kind=kind, archived=archived, pinned=pinned, owners=access.owners),
        limit=limit,
        offset=offset,
    )
    return SessionPage(
        items=[SessionPublic.model_validate(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
        next_offset=offset + limit if offset + limit < total else None,
    )


@router.get("/sessions/{session_id}")
async def get_session(
    session_id: str, engine: EngineDep, access: Annotated[Access, requires(Action.SESSION_READ)]
) -> SessionPublic:
    return SessionPublic.model_validate(await engine.sessions.get(access.workspace_id, session_id))


@router.patch("/sessions/{session_id}")
async def update_session(
    session_id: str,
    body: SessionUpdate,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SESSION_UPDATE)],
) -> SessionPublic:
    updated = await engine.sessions.update(
        access.workspace_id,
        session_id,
        title=body.title,
        pinned=body.pinned,
        archived=body.archived,
        settings=body.settings,
        metadata=metadata_for(access.principal.user_id),
    )
    return SessionPublic.model_validate(updated)


@router.delete("/sessions/{session_id}", status_code=204)
async def delete_session(
    session_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SESSION_DELETE)],
) -> Response:
    user = access.principal.user_id
    await engine.sessions.delete(access.workspace_id, session_id, metadata=metadata_for(user))
    await engine.audit.record(
        user, "session.deleted", workspace_id=access.workspace_id, target=session_id
    )
    return Response(status_code=204)


@router.post("/sessions/{session_id}/fork", status_code=201)
async def fork_session(
    session_id: str,
    body: SessionFork,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SESSION_PLAY)],
) -> SessionPublic:
    user = access.principal.user_id
    forked = await engine.sessions.fork(
        access.workspace_id,
        session_id,
        at_turn=body.at_turn,
        title=body.title,
        owner_id=user,
        metadata=metadata_for(user),
    )
    return SessionPublic.model_validate(forked)


@router.get("/sessions/{session_id}/messages")
async def list_messages(
    session_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SESSION_READ)],
    after_turn: Annotated[int, Query(ge=0, le=MAX_CURSOR)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    around: Annotated[
        int | None,
        Query(ge=1, le=MAX_CURSOR, description="Show the two turns on each side of this one."),
    ] = None,
) -> list[MessagePublic]:
    if around is not None:  # where a search hit links to
        after_turn, limit = max(around - 3, 0), 10
    rows = await engine.sessions.messages(
        access.workspace_id, session_id, after_turn=after_turn, limit=limit
    )
    return [MessagePublic.model_validate(r) for r in rows]


@router.patch("/sessions/{session_id}/messages/{message_id}")
async def choose_telling(
    session_id: str,
    message_id: str,
    body: MessageUpdate,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SESSION_PLAY)],
) -> MessagePublic:
    """Choose which telling of the last reply the story goes on from: the narrator
    reads it next, exports carry it, and every device shows it."""
    if await engine.live.current_turn(session_id) is not None:  # on any replica
        raise Conflict("a reply is being written: choose a telling once it is done")
    chosen = await engine.sessions.select_telling(
        access.workspace_id,
        session_id,
        message_id,
        body.active,
        metadata=metadata_for(access.principal.user_id),
    )
    return MessagePublic.model_validate(chosen)


@router.get("/sessions/{session_id}/events")
async def list_events(
    session_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SESSION_READ)],
    after: Annotated[
        int, Query(ge=0, le=MAX_CURSOR, description="Return events after this version.")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> list[EventPublic]:
    events = await engine.sessions.events(access.workspace_id, session_id, after=after, limit=limit)
    return [EventPublic.model_validate(e.to_dict()) for e in events]


@router.get("/search")
async def search(
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SEARCH)],
    q: Annotated[str, Query(min_length=1, max_length=500)],
    session_id: str | None = None,
    character: Annotated[
        str | None, Query(max_length=200, description="A character's name or id.")
    ] = None,
    kind: SessionKind | None = None,
    since: Annotated[
        UtcDateTime | None, Query(description=f"Messages written from then on ({DATE_RANGE}).")
    ] = None,
    until: Annotated[
        UtcDateTime | None, Query(description=f"Messages written until then ({DATE_RANGE}).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[SearchResult]:
    """Full-text search over every message in the workspace (or one session), filtered
    by character, session kind and when the message was written; each hit comes with
    its neighbouring messages and a link to the conversation around it."""
    rows = await engine.interop.search(
        access.workspace_id,
        q,
        session_id=session_id,
        owners=access.owners,
        limit=limit,
        character=character,
        kind=kind,
        since=since,
        until=until,
    )
    return [
        SearchResult(
            message_id=r["id"],
            session_id=r["session_id"],
            session_title=r["session_title"],
            session_kind=r["session_kind"],
            turn_id=r["turn_id"],
            turn_number=r["turn_number"],
            role=r["role"],
            snippet=r["snippet"],
            created_at=r["created_at"],
            context=[SearchContext.model_validate(m) for m in r.get("context", [])],
            link=f"/api/v1/sessions/{r['session_id']}/messages?around={r['turn_number']}",
        )
        for r in rows
    ]
