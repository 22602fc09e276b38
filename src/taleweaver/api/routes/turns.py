"""Turns: post one (JSON or SSE), resume its stream, cancel it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from taleweaver.api import sse
from taleweaver.api.deps import EngineDep, metadata_for
from taleweaver.api.schemas import TurnCreate, TurnPublic
from taleweaver.api.security import Access, requires
from taleweaver.auth import Action
from taleweaver.domain.turns import TurnRequest

router = APIRouter(prefix="/api/v1/sessions/{session_id}/turns", tags=["turns"])

_SSE_DOC = {
    "description": "The finished turn as JSON; with `Accept: text/event-stream`, the turn as "
    "Server-Sent Events `start`, `token`, `choices`, `safety`, `done`, `error`, each with an "
    "id `turn_id:seq` to resume from.",
    "content": {"text/event-stream": {}},
}


def wants_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


@router.post("", status_code=201, response_model=TurnPublic, responses={201: _SSE_DOC})
async def post_turn(
    session_id: str,
    body: TurnCreate,
    request: Request,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SESSION_PLAY)],
) -> Response:
    turn = TurnRequest.build(action=body.action, text=body.text, choice=body.choice)
    meta = metadata_for(access.principal.user_id)
    # Through the session's table, when it has one: its turn-taking policy holds here too.
    handle = await engine.live.tables.start(
        access.workspace_id, session_id, turn, meta, known_version=access.session_version
    )
    if wants_stream(request):
        return sse.stream(handle, status_code=201)  # as documented: the turn was created
    result = await handle.wait()
    return JSONResponse(TurnPublic.model_validate(result).model_dump(mode="json"), 201)


@router.get("/{turn_id}/stream", responses={200: _SSE_DOC})
async def resume_turn_stream(
    session_id: str,
    turn_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SESSION_READ)],
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[int | None, Query(ge=0, description="Resume after this seq.")] = None,
) -> Response:
    """Replay a recent or running turn's events after the last one the client saw."""
    handle = engine.turns.get(access.workspace_id, session_id, turn_id)
    start = after if after is not None else sse.parse_last_event_id(last_event_id, turn_id)
    return sse.stream(handle, start)


@router.post("/{turn_id}/cancel", response_model=TurnPublic)
async def cancel_turn(
    session_id: str,
    turn_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SESSION_PLAY)],
) -> Response:
    """Stop a running turn, on whichever replica runs it: generation stops and the
    turn is recorded as cancelled."""
    result = await engine.live.cancel(access.workspace_id, session_id, turn_id)
    return JSONResponse(TurnPublic.model_validate(result).model_dump(mode="json"))
