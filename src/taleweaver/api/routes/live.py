"""The live channel of a session: `GET /api/v1/sessions/{session_id}/live` (WebSocket).

A plain Starlette route: FastAPI's app-wide dependencies are written for HTTP
requests, so this route checks its path and query itself and authorizes through
the same policy as every other route.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from taleweaver.api.live import LiveConnection
from taleweaver.api.problems import problem_body, status_of
from taleweaver.api.security import authorize_websocket
from taleweaver.auth import Action
from taleweaver.domain.errors import InvalidInput, NotFound, TaleweaverError
from taleweaver.engine import Engine

PATH = "/api/v1/sessions/{session_id}/live"
MAX_ID_LENGTH = 128


def parse_query(websocket: WebSocket) -> tuple[int, tuple[str, int] | None]:
    """`after` (a global event position) and `turn` (`turn_id:seq` to resume a
    turn's stream after), both optional."""
    raw_after = websocket.query_params.get("after", "0")
    if not raw_after.isdigit():
        raise InvalidInput("after must be a non-negative event position")
    raw_turn = websocket.query_params.get("turn")
    if raw_turn is None:
        return int(raw_after), None
    turn_id, _, seq = raw_turn.rpartition(":")
    if not turn_id or not seq.isdigit():
        raise InvalidInput("turn must be 'turn_id:seq'")
    return int(raw_after), (turn_id, int(seq))


async def live(websocket: WebSocket) -> None:
    engine: Engine = websocket.app.state.engine
    session_id = str(websocket.path_params["session_id"])
    try:
        if not 0 < len(session_id) <= MAX_ID_LENGTH or not session_id.isprintable():
            raise NotFound("no such session: not a valid id")
        access = await authorize_websocket(websocket, engine, Action.SESSION_READ)
        after, resume = parse_query(websocket)
    except TaleweaverError as exc:
        await deny(websocket, exc)
        return
    await websocket.accept()

    async def may_play() -> None:
        """At the table, acting needs what playing the session over HTTP needs."""
        await authorize_websocket(websocket, engine, Action.SESSION_PLAY)

    async def is_member(user_id: str) -> bool:
        """Whom a game master may seat: people of the session's workspace."""
        members = await engine.accounts.members(access.workspace_id)
        return any(m["user_id"] == user_id for m in members)

    async def names() -> dict[str, str]:
        """What to call the people of the session's workspace: their display names."""
        members = await engine.accounts.members(access.workspace_id)
        return {str(m["user_id"]): str(m["display_name"]) for m in members if m["display_name"]}

    connection = LiveConnection(
        websocket,
        engine.live,
        websocket.app.state.settings,
        session_id=session_id,
        user_id=access.principal.user_id,
        workspace_id=access.workspace_id,
        may_play=may_play,
        is_member=is_member,
        names=names,
    )
    await connection.run(after, resume)


async def deny(websocket: WebSocket, error: TaleweaverError) -> None:
    """Refuse the handshake with the problem as an HTTP response, where the server
    can send one; else close with a policy-violation code."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        body = problem_body(error)
        await websocket.send_denial_response(
            JSONResponse(body, status_of(error), media_type="application/problem+json")
        )
    else:
        await websocket.close(1008, error.detail[:120])


route = WebSocketRoute(PATH, live, name="session_live")
