"""Terminal sessions: a command on a pseudo-terminal on this server, in the
workspace's folder. Attaching (SSE) replays the kept screen, then streams the output
as it comes; input, resizing, signals and closing are events of the terminal's log.

`GET .../terminals/{id}/live` is the same over the live channel (a WebSocket:
api/terminal_live.py): the kept screen, then output frames; input, resize and signal
frames; pings as a session's live channel sends them.

Off unless the server is configured for them (`terminal_enabled`, and on a bind
other than loopback `terminal_allow_remote`); workspace owners and admins only,
and instance administrators only unless `terminal_workspace_admins` is set.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import Field
from starlette.responses import StreamingResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from taleweaver.api.deps import EngineDep, metadata_for
from taleweaver.api.routes.live import MAX_ID_LENGTH, deny
from taleweaver.api.schemas import Strict
from taleweaver.api.security import Access, authorize_websocket, requires
from taleweaver.api.terminal_live import TerminalConnection
from taleweaver.auth import Action
from taleweaver.domain.errors import InvalidInput, NotFound, TaleweaverError
from taleweaver.domain.events import JSON
from taleweaver.domain.terminals import Frame, TerminalSignal
from taleweaver.engine import Engine

router = APIRouter(prefix="/api/v1", tags=["terminals"])

Cols = Annotated[int, Field(ge=2, le=1000)]
Rows = Annotated[int, Field(ge=2, le=1000)]


async def _terminal_access(
    engine: EngineDep, access: Annotated[Access, requires(Action.TERMINAL_USE)]
) -> Access:
    engine.terminals.check(instance_admin=access.principal.is_instance_admin)
    return access


Use = Annotated[Access, Depends(_terminal_access)]


class TerminalOpen(Strict):
    cols: Cols = 80
    rows: Rows = 24


class TerminalInput(Strict):
    data: str = Field(min_length=1, max_length=65536, description="Text as typed.")


class TerminalResize(Strict):
    cols: Cols
    rows: Rows


class TerminalSignalled(Strict):
    signal: TerminalSignal = Field(
        description="interrupt (^C, to the program in the foreground), terminate, hangup, kill."
    )


@router.post("/terminals", status_code=201)
async def open_terminal(body: TerminalOpen, engine: EngineDep, access: Use) -> JSON:
    """Start the configured command (`terminal.opened`)."""
    meta = metadata_for(access.principal.user_id)
    return await engine.terminals.open(access.workspace_id, meta, cols=body.cols, rows=body.rows)


@router.get("/terminals")
async def list_terminals(engine: EngineDep, access: Use) -> list[JSON]:
    return await engine.terminals.all(access.workspace_id)


@router.get("/terminals/{terminal_id}")
async def get_terminal(terminal_id: str, engine: EngineDep, access: Use) -> JSON:
    """Its state, and how much of its output is kept for replay."""
    return await engine.terminals.get(access.workspace_id, terminal_id)


@router.get("/terminals/{terminal_id}/events")
async def terminal_events(terminal_id: str, engine: EngineDep, access: Use) -> list[JSON]:
    """Its log: opened, input, resized, signalled, closed."""
    return await engine.terminals.events(access.workspace_id, terminal_id)


def _encode(frame: Frame) -> bytes:
    data: JSON = {"seq": frame.seq}
    if frame.kind == "output":
        data["data"] = frame.data
    elif frame.kind == "exit":
        data |= {"exit_code": frame.exit_code, "reason": frame.data}
    payload = json.dumps(data, separators=(",", ":"))
    return f"id: {frame.seq}\nevent: {frame.kind}\ndata: {payload}\n\n".encode()


async def _sse(frames: AsyncIterator[Frame]) -> AsyncIterator[bytes]:
    yield b"retry: 1000\n\n"
    async for frame in frames:
        yield _encode(frame)


@router.get("/terminals/{terminal_id}/stream", response_class=StreamingResponse)
async def attach_terminal(
    terminal_id: str,
    engine: EngineDep,
    access: Use,
    follow: Annotated[bool, Query(description="false: the kept screen only.")] = True,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[int | None, Query(ge=0, description="Resume after this chunk.")] = None,
) -> StreamingResponse:
    """Server-Sent Events: `output` ({seq, data}) for each chunk kept, then those that
    come; `truncated` ({seq}) where the retention window dropped earlier chunks;
    `exit` ({exit_code, reason}) once it has ended. Resume with Last-Event-ID."""
    resume = last_event_id if last_event_id and last_event_id.isdigit() else "0"
    start = after if after is not None else int(resume)
    frames = await engine.terminals.attach(
        access.workspace_id, terminal_id, after=start, follow=follow
    )
    return StreamingResponse(
        _sse(frames),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/terminals/{terminal_id}/input", status_code=204)
async def terminal_input(
    terminal_id: str, body: TerminalInput, engine: EngineDep, access: Use
) -> Response:
    """Type into it (`terminal.input`)."""
    meta = metadata_for(access.principal.user_id)
    await engine.terminals.write(access.workspace_id, terminal_id, body.data, meta)
    return Response(status_code=204)


@router.post("/terminals/{terminal_id}/resize")
async def resize_terminal(
    terminal_id: str, body: TerminalResize, engine: EngineDep, access: Use
) -> JSON:
    """Its new size in columns and rows (`terminal.resized`)."""
    meta = metadata_for(access.principal.user_id)
    return await engine.terminals.resize(
        access.workspace_id, terminal_id, body.cols, body.rows, meta
    )


@router.post("/terminals/{terminal_id}/signal", status_code=204)
async def signal_terminal(
    terminal_id: str, body: TerminalSignalled, engine: EngineDep, access: Use
) -> Response:
    """Send a signal (`terminal.signalled`)."""
    meta = metadata_for(access.principal.user_id)
    await engine.terminals.signal(access.workspace_id, terminal_id, body.signal, meta)
    return Response(status_code=204)


@router.delete("/terminals/{terminal_id}")
async def close_terminal(terminal_id: str, engine: EngineDep, access: Use) -> JSON:
    """Hang up, and answer once it has ended (`terminal.closed`)."""
    meta = metadata_for(access.principal.user_id)
    return await engine.terminals.close(access.workspace_id, terminal_id, meta)


async def terminal_live(websocket: WebSocket) -> None:
    """The terminal over the live channel (a plain Starlette route, authorized as the
    session's live channel is: the same policy as the terminal's HTTP routes)."""
    engine: Engine = websocket.app.state.engine
    terminal_id = str(websocket.path_params["terminal_id"])
    try:
        if not 0 < len(terminal_id) <= MAX_ID_LENGTH or not terminal_id.isprintable():
            raise NotFound("no such terminal: not a valid id")
        access = await authorize_websocket(websocket, engine, Action.TERMINAL_USE)
        engine.terminals.check(instance_admin=access.principal.is_instance_admin)
        raw_after = websocket.query_params.get("after", "0")
        if not raw_after.isdigit():
            raise InvalidInput("after must be a non-negative chunk number")
        await engine.terminals.get(access.workspace_id, terminal_id)
    except TaleweaverError as exc:
        await deny(websocket, exc)
        return
    await websocket.accept()
    connection = TerminalConnection(
        websocket,
        engine,
        websocket.app.state.settings,
        terminal_id=terminal_id,
        workspace_id=access.workspace_id,
        meta=metadata_for(access.principal.user_id),
    )
    await connection.run(int(raw_after))


router.routes.append(
    WebSocketRoute("/api/v1/terminals/{terminal_id}/live", terminal_live, name="terminal_live")
)
