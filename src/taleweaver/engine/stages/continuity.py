"""continuity: check the reply and its artifacts against canon before commit."""

from __future__ import annotations

from taleweaver.domain.flags import WORLD_EXTRACTION
from taleweaver.domain.pipeline import ContinuityChecker
from taleweaver.engine.context import TurnContext
from taleweaver.engine.outcome import continuity_view
from taleweaver.engine.stages.extract import under_review


class Continuity:
    name = "continuity"
    runs_when_halted = False

    def __init__(self, checker: ContinuityChecker) -> None:
        self.checker = checker

    async def run(self, ctx: TurnContext) -> None:
        if not ctx.flags.enabled(WORLD_EXTRACTION):
            return  # goes with extraction: the same flag turns both off
        ctx.findings = await self.checker.check(under_review(ctx), ctx.artifacts)
        if ctx.findings:  # shown as soon as known, before the turn commits
            ctx.emit("continuity", {"findings": continuity_view(ctx.findings)})
