"""A finished turn as events to commit and as the view clients receive."""

from __future__ import annotations

import uuid

from taleweaver.domain.errors import TaleweaverError
from taleweaver.domain.events import JSON, NewEvent
from taleweaver.domain.sessions import EventType, Reply
from taleweaver.domain.turn_record import MessageIds, TurnInput, TurnRecord
from taleweaver.domain.turns import TurnAction
from taleweaver.engine.context import TurnContext
from taleweaver.llm.pricing import estimate_prompt_tokens


def turn_record(ctx: TurnContext) -> TurnRecord:
    """The finished turn as the log records it."""
    committed = ctx.request.action not in (TurnAction.REGENERATE, TurnAction.EDIT)
    return TurnRecord(
        turn_id=ctx.turn_id,
        number=ctx.number,
        action=str(ctx.request.action),
        reply=Reply(ctx.reply_text, list(ctx.choices), list(ctx.choice_tags)),
        input=TurnInput(ctx.input.text, ctx.input.choice, ctx.input.tag),
        message_ids=MessageIds(new_id(), new_id()) if committed else None,
        model=ctx.model_name,
        tokens=ctx.tokens,
        safety_input=ctx.safety_in,
        safety_output=ctx.safety_out,
        context=ctx.context_trace,
        artifacts=ctx.artifacts,
        findings=ctx.findings,
    )


def completed_events(ctx: TurnContext) -> list[NewEvent]:
    return [turn_record(ctx).to_event()]


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
        "continuity": continuity_view(ctx.findings),
        "tokens": ctx.tokens,
        # Estimated from the prompt's length, as the usage ledger does when a
        # provider reports nothing.
        "prompt_tokens": estimate_prompt_tokens(ctx.prompt),
        "model": ctx.model_name,
        "version": version,
    }


def continuity_view(findings: list[JSON]) -> list[JSON]:
    """What the player is shown of the continuity check's findings on a reply."""
    return [
        {
            "id": f.get("id"),
            "kind": f.get("kind"),
            "summary": f.get("summary", ""),
            "entity_ids": list(f.get("entity_ids") or []),
        }
        for f in findings
    ]


def new_id() -> str:
    return uuid.uuid4().hex
