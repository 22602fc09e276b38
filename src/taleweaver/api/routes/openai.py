"""OpenAI's chat completions, spoken by Taleweaver: any OpenAI client gets memory and safety.

A transport over the one pipeline like the REST and SSE routes: the request's
history is matched to a session (`engine.conversations`), its new user line runs
as a turn, and the turn's stream is re-encoded as `chat.completion.chunk` events.
Errors answer in OpenAI's error shape; parameters Taleweaver does not use are
ignored and named in the `X-Taleweaver-Ignored-Parameters` header.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.responses import Response, StreamingResponse

from taleweaver.api.deps import EngineDep, metadata_for
from taleweaver.api.problems import status_of
from taleweaver.api.security import Access, requires
from taleweaver.auth import Action, decide, may_see
from taleweaver.domain.conversation import ClientMessage
from taleweaver.domain.errors import Forbidden, InvalidInput, NotFound, TaleweaverError
from taleweaver.domain.events import JSON
from taleweaver.domain.sessions import SessionFilter
from taleweaver.engine import Engine
from taleweaver.engine.conversations import Conversations, Resolved, Target, render_reply
from taleweaver.engine.turns import TurnHandle

# What Taleweaver reads from a request; anything else is accepted and ignored.
READ = frozenset({"model", "messages", "stream", "user", "stream_options"})
MAX_MESSAGES = 2_000
ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    429: "rate_limit_error",
}


def openai_error(status: int, message: str, kind: str, code: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status)


def _error_for(exc: Exception) -> JSONResponse:
    if isinstance(exc, TaleweaverError):
        status = status_of(exc)
        kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
        return openai_error(status, exc.detail or exc.title, kind, type(exc).__name__)
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return openai_error(
        422, f"{where}: {first.get('msg', 'invalid request')}", "invalid_request_error"
    )


class OpenAIRoute(APIRoute):
    """Every failure of these routes, authentication included, in OpenAI's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except (TaleweaverError, RequestValidationError) as exc:
                return _error_for(exc)

        return handle


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """OpenAI's error shape, which its clients parse."""

    error: ErrorDetail


# A body the server's edge refuses before any route reads it (not JSON, too large)
# answers problem+json, as on every route.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {
        "model": ErrorBody,
        "description": "An error, in OpenAI's shape.",
        "content": {"application/problem+json": {}},
    }
    for code in (400, 401, 402, 403, 404, 409, 413, 422, 429, 500, 502, 503)
}

router = APIRouter(
    prefix="/openai/v1", tags=["openai"], route_class=OpenAIRoute, responses=ERROR_RESPONSES
)


@router.get("/models")
async def list_models(
    engine: EngineDep, access: Annotated[Access, requires(Action.SESSION_LIST)]
) -> JSON:
    """What a client can talk to: characters, worlds, the caller's sessions and the
    configured chat models."""
    workspace = access.workspace_id
    created = int(time.time())
    entries: list[JSON] = []
    for character in await engine.characters.list(workspace):
        entries.append(_model(f"character/{character['id']}", character.get("name"), created))
    for world in await engine.world.bible.worlds(workspace):
        entries.append(_model(f"world/{world['id']}", world.get("name"), created))
    sessions, _ = await engine.sessions.list_page(
        workspace, SessionFilter(owners=access.owners), limit=100, offset=0
    )
    for session in sessions:
        entries.append(_model(f"session/{session['id']}", session.get("title"), created))
    router = engine.router
    if router is not None:  # plain models: a chat on that model, memory and safety on
        for alias, routed in sorted(router.models.items()):
            if routed.chat is not None:
                entries.append(_model(f"model/{alias}", routed.name, created))
    return {"object": "list", "data": entries}


def _chat_model(engine: Engine, alias: str) -> None:
    router = engine.router
    routed = router.models.get(alias) if router is not None else None
    if routed is None or routed.chat is None:
        known = sorted(a for a, m in (router.models.items() if router else ()) if m.chat)
        raise NotFound(f"no chat model is called {alias!r} (configured: {', '.join(known)})")


def _model(ident: str, name: object, created: int) -> JSON:
    return {
        "id": ident,
        "object": "model",
        "created": created,
        "owned_by": "taleweaver",
        "name": name,
    }


@router.post("/chat/completions")
async def chat_completions(
    body: dict[str, Any],
    request: Request,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SESSION_PLAY)],
    x_taleweaver_session: Annotated[str | None, Header()] = None,
) -> Response:
    """A reply from a character, a world's story or a session, as OpenAI's chat
    completion (streamed when `stream` is true)."""
    model, messages, stream, user = _parse(body)
    target = Target.parse(model)
    if target is None:
        raise NotFound(
            f"model {model!r} is not one of this workspace's: use character/ID, world/ID, "
            "session/ID or model/ALIAS from GET /openai/v1/models"
        )
    if x_taleweaver_session:
        target = Target("session", x_taleweaver_session)
    workspace_id = access.workspace_id
    if target.kind == "model":  # checked first: an unknown model starts no session
        _chat_model(engine, target.id)
    if target.kind == "session":  # it acts where that session lives, by its rules
        workspace_id = await _may_play(engine, access, target.id)
    conversations = Conversations(engine.db, engine.sessions, engine.characters, engine.world)
    meta = metadata_for(access.principal.user_id)
    resolved = await conversations.resolve(
        workspace_id,
        access.principal.user_id,
        target,
        messages,
        conversation=user,
        metadata=meta,
    )
    handle = await engine.live.tables.start(
        workspace_id, resolved.session_id, resolved.request, meta
    )
    headers = _headers(body, resolved, handle)
    if stream:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _chunks(handle, model, include_usage),
            media_type="text/event-stream",
            headers=headers | {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    turn = await handle.wait()
    return JSONResponse(_completion(turn, model), headers=headers)


def _parse(body: dict[str, Any]) -> tuple[str, list[ClientMessage], bool, str | None]:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidInput("'model' must be a model id from GET /openai/v1/models")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("'messages' must be a non-empty list")
    if len(raw) > MAX_MESSAGES:
        raise InvalidInput(f"'messages' holds at most {MAX_MESSAGES} messages")
    messages = [_message(i, m) for i, m in enumerate(raw)]
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidInput("'stream' must be true or false")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidInput("'user' must be a string")
    return model, messages, stream, user or None


def _message(index: int, raw: object) -> ClientMessage:
    if not isinstance(raw, dict) or not isinstance(raw.get("role"), str):
        raise InvalidInput(f"messages[{index}] needs a 'role'")
    role = raw["role"]
    role = {"developer": "system", "tool": "user", "function": "user"}.get(role, role)
    if role not in ("system", "user", "assistant"):
        raise InvalidInput(f"messages[{index}].role {role!r} is not system, user or assistant")
    content = raw.get("content")
    if content is None:
        content = ""
    if isinstance(content, list):  # content parts: the text ones are read, images are not
        content = "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    if not isinstance(content, str):
        raise InvalidInput(f"messages[{index}].content must be text or a list of parts")
    return ClientMessage(role, content)


async def _may_play(engine: Engine, access: Access, session_id: str) -> str:
    """The workspace of a session named as the model, which only those who may play
    it play (as on its own routes: a session they may not see does not exist)."""
    principal = access.principal
    found = await engine.accounts.session_access(principal.user_id, session_id)
    if found is None:
        raise NotFound(f"session {session_id} not found")
    workspace_id, owner_id, role, _ = found
    key_elsewhere = principal.key_workspace not in (None, workspace_id)
    if role is None or key_elsewhere:
        raise NotFound(f"session {session_id} not found")
    decision = decide(
        role, Action.SESSION_PLAY, principal_id=principal.user_id, scopes=principal.scopes
    )
    if not decision.allowed:
        raise Forbidden(decision.reason)
    if not may_see(decision, owner_id):
        raise NotFound(f"session {session_id} not found")
    return workspace_id


def _headers(body: dict[str, Any], resolved: Resolved, handle: TurnHandle) -> dict[str, str]:
    headers = {"X-Taleweaver-Session": resolved.session_id, "X-Taleweaver-Turn": handle.turn_id}
    ignored = sorted(k for k in body if k not in READ)
    if ignored:
        headers["X-Taleweaver-Ignored-Parameters"] = ",".join(ignored)[:1000]
    if resolved.branched_from:
        headers["X-Taleweaver-Branched-From"] = resolved.branched_from
    return headers


def _completion(turn: JSON, model: str) -> JSON:
    reply = turn.get("reply") or {"text": "", "choices": []}
    choices = [c["text"] for c in reply.get("choices", [])]
    return {
        "id": f"chatcmpl-{turn['id']}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": render_reply(reply["text"], choices)},
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(turn),
    }


def _usage(turn: JSON) -> JSON:
    # The reply's streamed pieces, and the prompt as the pipeline built it (with the
    # recalled memory, not only what the client sent), estimated from its length.
    completion = int(turn.get("tokens") or 0)
    prompt = int(turn.get("prompt_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def _chunks(handle: TurnHandle, model: str, include_usage: bool) -> AsyncIterator[bytes]:
    created = int(time.time())
    ident = f"chatcmpl-{handle.turn_id}"

    def chunk(delta: JSON, finish: str | None = None, **extra: Any) -> bytes:
        data = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        } | extra
        return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()

    finished = False
    try:
        yield chunk({"role": "assistant", "content": ""})
        async for event in handle.subscribe():
            if event.name == "token":
                yield chunk({"content": event.data["text"]})
            elif event.name == "rewrite":
                # A client cannot take back what it showed: say the reply starts again.
                yield chunk({"content": "\n\n(The narrator rewrote this reply.)\n\n"})
            elif event.name == "choices" and event.data["choices"]:
                listed = "\n".join(f"{c['number']}. {c['text']}" for c in event.data["choices"])
                yield chunk({"content": f"\n\n{listed}"})
            elif event.name == "done":
                finished = True
                turn = event.data["turn"]
                yield chunk({}, "stop" if turn["status"] == "completed" else "length")
                if include_usage:
                    usage = _usage(turn)
                    data = {
                        "id": ident,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage,
                    }
                    yield f"data: {json.dumps(data)}\n\n".encode()
            elif event.name == "error":
                finished = True
                error = handle.error
                message = error.detail if error is not None else "the turn failed"
                body = {
                    "error": {
                        "message": message,
                        "type": "api_error",
                        "param": None,
                        "code": type(error).__name__ if error else None,
                    }
                }
                yield f"data: {json.dumps(body)}\n\n".encode()
        yield b"data: [DONE]\n\n"
    finally:
        if not finished:  # the client went away (its stop button): stop the turn
            handle.cancel()
