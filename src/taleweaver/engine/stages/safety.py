"""safety(in) and safety(out): the pipeline's two checkpoints.

Input: every turn is checked, a "continue" too (with no words), so that a session
the crisis protocol paused answers every kind of turn with support, not story.
When input is blocked, the response is streamed as the reply's text.

Output: a reply that broke a content rule is written again once, by the same
narrate route with the rule named; if that fails too, or no narrator is at hand,
a safe scene replaces it. The verdict's action says which.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from taleweaver.domain.choices import parse_choices
from taleweaver.domain.errors import ModelError, TaleweaverError
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.turns import SafetyVerdict
from taleweaver.engine.context import TurnContext
from taleweaver.engine.models import call_scope
from taleweaver.llm import ChatModel, task_model
from taleweaver.safety import SafetyChecker, SafetySubject

log = logging.getLogger(__name__)

BLOCKED_FALLBACK = "This part of the story cannot continue as written. Let's take another path."
SAFE_SCENE = (
    "The scene softens and shifts. The moment passes, and the story turns down a gentler "
    "path, where the way ahead is quiet and open."
)
REGENERATE_MAX_TOKENS = 600


def _with_choices(ctx: TurnContext) -> bool:
    from taleweaver.engine.kinds import KINDS  # kinds imports the stages

    return KINDS[ctx.session.kind].with_choices


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
    )


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

    def __init__(self, checker: SafetyChecker) -> None:
        self.checker = checker

    async def run(self, ctx: TurnContext) -> None:
        verdict = await self.checker.check(_subject(ctx, ctx.reply_text, "output"))
        if verdict.level == "blocked" and not verdict.crisis:
            verdict = await self._repair(ctx, verdict)
        ctx.safety_out = verdict
        if verdict.level != "safe":
            ctx.emit("safety", verdict.to_dict())

    async def _repair(self, ctx: TurnContext, verdict: SafetyVerdict) -> SafetyVerdict:
        """Ask the narrator once more with the broken rules named; else a safe scene."""
        narrator = self.checker.narrator if isinstance(self.checker, Regenerating) else None
        if narrator is not None:
            try:
                text, choices = await self._regenerate(ctx, narrator, verdict.violations)
            except TaleweaverError as exc:
                log.warning("turn %s: regenerating an unsafe reply failed: %s", ctx.turn_id, exc)
            else:
                again = await self.checker.check(_subject(ctx, text, "output"))
                if again.level != "blocked":
                    ctx.reply_text, ctx.choices = text, choices
                    return SafetyVerdict(
                        "warning",
                        categories=verdict.categories,
                        action="regenerated",
                        violations=verdict.violations,
                    )
        ctx.reply_text = verdict.response or SAFE_SCENE
        ctx.choices = []
        return SafetyVerdict(
            "blocked",
            categories=verdict.categories,
            action="replaced",
            violations=verdict.violations,
        )

    async def _regenerate(
        self, ctx: TurnContext, narrator: ChatModel, violations: tuple[str, ...]
    ) -> tuple[str, list[str]]:
        note = ChatMessage(
            "system",
            "Your last reply broke this story's content rules ("
            + "; ".join(violations or ("unsafe content",))
            + "). Write the reply again without any of that, and keep the story going.",
        )
        model = task_model(narrator, "narrate", call_scope(ctx))
        pieces: list[str] = []
        async for piece in model.stream([*ctx.prompt, note], max_tokens=REGENERATE_MAX_TOKENS):
            pieces.append(piece)
            ctx.tokens += 1
        raw = "".join(pieces).strip()
        if not raw:
            raise ModelError(f"{model.name} returned an empty reply")
        if not _with_choices(ctx):
            return raw, []
        parsed = parse_choices(raw)
        return parsed.prose, parsed.choices
