"""safety(in) and safety(out): the pipeline's two checkpoints.

Input: every turn is checked, a "continue" too (with no words), so that a session
the crisis protocol paused answers every kind of turn with support, not story.
When input is blocked, the response is streamed as the reply's text.

Output: a reply that broke a content rule is written again once by the narrate
stage itself, with the rule named, so the rewrite streams, splits its choices and
tags and is checked again like any reply; if that fails too, or no narrator is at
hand, a safe scene replaces it. The verdict's action says which.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from taleweaver.domain.errors import TaleweaverError
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.turns import SafetyVerdict
from taleweaver.engine.context import TurnContext
from taleweaver.engine.stages.narrate import Narrate
from taleweaver.llm import ChatModel
from taleweaver.safety import SafetyChecker, SafetySubject

log = logging.getLogger(__name__)

BLOCKED_FALLBACK = "This part of the story cannot continue as written. Let's take another path."
SAFE_SCENE = (
    "The scene softens and shifts. The moment passes, and the story turns down a gentler "
    "path, where the way ahead is quiet and open."
)


@runtime_checkable
class Regenerating(Protocol):
    """A checker that knows the narrator to ask again when an output breaks a rule."""

    narrator: ChatModel | None


def _subject(ctx: TurnContext, text: str, direction: str) -> SafetySubject:
    return SafetySubject(
        text=text,
        direction="input" if direction == "input" else "output",
        session_id=ctx.session.id,
        workspace_id=ctx.session.workspace_id,
        kind=ctx.session.kind,
        actor=ctx.metadata.actor,
        turn_id=ctx.turn_id,
        settings=dict(ctx.session.settings),
        context=_conversation(ctx) if direction == "input" else (),
    )


def _conversation(ctx: TurnContext) -> tuple[str, ...]:
    """The last exchange before this turn, as the crisis detector reads context."""
    last = ctx.session.last_turn
    if last is None:
        return ()
    turns = [f"player: {last.input_text}"] if last.input_text else []
    return (*turns, f"narrator: {last.reply.text}")


class InputSafety:
    name = "safety_in"
    runs_when_halted = False

    def __init__(self, checker: SafetyChecker) -> None:
        self.checker = checker

    async def run(self, ctx: TurnContext) -> None:
        verdict = await self.checker.check(_subject(ctx, ctx.input.text or "", "input"))
        ctx.safety_in = verdict
        if verdict.level != "safe":
            ctx.emit("safety", verdict.to_dict())
        if verdict.level == "blocked":
            ctx.halted = True
            ctx.reply_text = verdict.response or BLOCKED_FALLBACK
            ctx.choices = []
            ctx.emit("token", {"text": ctx.reply_text})


class OutputSafety:
    name = "safety_out"
    runs_when_halted = False

    def __init__(self, checker: SafetyChecker, narrate: Narrate | None = None) -> None:
        self.checker = checker
        # The stage that wrote the reply, run again for a rewrite.
        self.narrate = narrate

    async def run(self, ctx: TurnContext) -> None:
        verdict = await self.checker.check(_subject(ctx, ctx.reply_text, "output"))
        if verdict.level == "blocked" and not verdict.crisis:
            verdict = await self._repair(ctx, verdict)
        ctx.safety_out = verdict
        if verdict.level != "safe":
            ctx.emit("safety", verdict.to_dict())

    async def _repair(self, ctx: TurnContext, verdict: SafetyVerdict) -> SafetyVerdict:
        """Have the narrate stage write the reply once more with the broken rules named,
        checked again like any reply; else a safe scene."""
        narrator = self.checker.narrator if isinstance(self.checker, Regenerating) else None
        if narrator is not None and self.narrate is not None:
            note = ChatMessage(
                "system",
                "Your last reply broke this story's content rules ("
                + "; ".join(verdict.violations or ("unsafe content",))
                + "). Write the reply again without any of that, and keep the story going.",
            )
            try:
                await self.narrate.rewrite(ctx, note, narrator)
            except TaleweaverError as exc:
                log.warning("turn %s: rewriting an unsafe reply failed: %s", ctx.turn_id, exc)
            else:
                again = await self.checker.check(_subject(ctx, ctx.reply_text, "output"))
                if again.level != "blocked":
                    return SafetyVerdict(
                        "warning",
                        categories=verdict.categories,
                        action="regenerated",
                        violations=verdict.violations,
                    )
        ctx.reply_text = verdict.response or SAFE_SCENE
        ctx.choices, ctx.choice_tags = [], []
        return SafetyVerdict(
            "blocked",
            categories=verdict.categories,
            action="replaced",
            violations=verdict.violations,
        )
