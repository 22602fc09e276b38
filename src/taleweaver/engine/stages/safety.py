"""safety(in) and safety(out): the pipeline's two checkpoints."""

from __future__ import annotations

from taleweaver.engine.context import TurnContext
from taleweaver.safety import SafetyChecker, SafetySubject

BLOCKED_FALLBACK = "This part of the story cannot continue as written. Let's take another path."


def _subject(ctx: TurnContext, text: str, direction: str) -> SafetySubject:
    return SafetySubject(
        text=text,
        direction="input" if direction == "input" else "output",
        session_id=ctx.session.id,
        workspace_id=ctx.session.workspace_id,
        kind=ctx.session.kind,
    )


class InputSafety:
    name = "safety_in"
    runs_when_halted = False

    def __init__(self, checker: SafetyChecker) -> None:
        self.checker = checker

    async def run(self, ctx: TurnContext) -> None:
        if ctx.input.text is None:
            return
        verdict = await self.checker.check(_subject(ctx, ctx.input.text, "input"))
        ctx.safety_in = verdict
        if verdict.level != "safe":
            ctx.emit("safety", verdict.to_dict())
        if verdict.level == "blocked":
            ctx.halted = True
            ctx.reply_text = verdict.response or BLOCKED_FALLBACK
            ctx.choices = []


class OutputSafety:
    name = "safety_out"
    runs_when_halted = False

    def __init__(self, checker: SafetyChecker) -> None:
        self.checker = checker

    async def run(self, ctx: TurnContext) -> None:
        verdict = await self.checker.check(_subject(ctx, ctx.reply_text, "output"))
        ctx.safety_out = verdict
        if verdict.level != "safe":
            ctx.emit("safety", verdict.to_dict())
        if verdict.level == "blocked":
            ctx.reply_text = verdict.response or BLOCKED_FALLBACK
            ctx.choices = []
