"""extract: structured artifacts from the reply, proposed for review (never canon)."""

from __future__ import annotations

from taleweaver.domain.flags import WORLD_EXTRACTION
from taleweaver.domain.pipeline import Extractor, ReplyUnderReview
from taleweaver.engine.context import TurnContext


def under_review(ctx: TurnContext) -> ReplyUnderReview:
    return ReplyUnderReview(
        session_id=ctx.session.id,
        workspace_id=ctx.session.workspace_id,
        turn_id=ctx.turn_id,
        player_text=ctx.input.text,
        reply_text=ctx.reply_text,
        world_id=str(world) if (world := ctx.session.settings.get("world_id")) else None,
    )


class Extract:
    name = "extract"
    runs_when_halted = False

    def __init__(self, extractor: Extractor) -> None:
        self.extractor = extractor

    async def run(self, ctx: TurnContext) -> None:
        if not ctx.flags.enabled(WORLD_EXTRACTION):
            return  # the workspace has world extraction off
        ctx.artifacts = await self.extractor.extract(under_review(ctx))
