"""A finished turn as events to commit and as the view clients receive."""

from __future__ import annotations

import uuid

from taleweaver.domain.errors import TaleweaverError
from taleweaver.domain.events import JSON, NewEvent
from taleweaver.domain.sessions import EventType
from taleweaver.domain.turns import TurnAction
from taleweaver.engine.context import TurnContext


def _reply(ctx: TurnContext) -> JSON:
    reply: JSON = {"text": ctx.reply_text, "choices": list(ctx.choices)}
    if any(ctx.choice_tags):
        reply["choice_tags"] = list(ctx.choice_tags)
    return reply


def _input(ctx: TurnContext) -> JSON:
    given: JSON = {"text": ctx.input.text, "choice": ctx.input.choice}
    if ctx.input.tag is not None:
        given["tag"] = ctx.input.tag
    return given


def completed_events(ctx: TurnContext) -> list[NewEvent]:
    common: JSON = {
        "turn_id": ctx.turn_id,
        "number": ctx.number,
        "action": str(ctx.request.action),
        "reply": _reply(ctx),
        "model": ctx.model_name,
        "tokens": ctx.tokens,
        "safety": {"input": ctx.safety_in.to_dict(), "output": ctx.safety_out.to_dict()},
        "context": ctx.context_trace,
        "artifacts": ctx.artifacts,
        "findings": ctx.findings,
    }
    if ctx.request.action == TurnAction.REGENERATE:
        return [NewEvent(EventType.TURN_REGENERATED, common)]
    if ctx.request.action == TurnAction.EDIT:
        return [NewEvent(EventType.TURN_EDITED, common | {"input_text": ctx.input.text})]
    payload = common | {
        "input": _input(ctx),
        "message_ids": {"player": new_id(), "narrator": new_id()},
    }
    return [NewEvent(EventType.TURN_COMMITTED, payload)]


def cancelled_event(ctx: TurnContext) -> NewEvent:
    return NewEvent(
        EventType.TURN_CANCELLED,
        {"turn_id": ctx.turn_id, "action": str(ctx.request.action), "tokens": ctx.tokens},
    )


def failed_event(ctx: TurnContext, error: TaleweaverError) -> NewEvent:
    return NewEvent(
        EventType.TURN_FAILED,
        {
            "turn_id": ctx.turn_id,
            "action": str(ctx.request.action),
            "error": {"type": type(error).__name__, "detail": error.detail},
        },
    )


def turn_view(ctx: TurnContext, status: str, version: int | None) -> JSON:
    """The turn as the API and CLI show it."""
    cancelled = status != "completed"
    return {
        "id": ctx.turn_id,
        "session_id": ctx.session.id,
        "number": ctx.number,
        "action": str(ctx.request.action),
        "status": status,
        "input": {"text": ctx.input.text, "choice": ctx.input.choice},
        "reply": None
        if cancelled
        else {
            "text": ctx.reply_text,
            "choices": [{"number": i, "text": c} for i, c in enumerate(ctx.choices, 1)],
        },
        "safety": ctx.safety.to_dict(),
        "tokens": ctx.tokens,
        "model": ctx.model_name,
        "version": version,
    }


def new_id() -> str:
    return uuid.uuid4().hex
