"""understand: what the player means this turn (choices resolved to their words)."""

from __future__ import annotations

from taleweaver.domain.turns import resolve_input
from taleweaver.engine.context import TurnContext


class Understand:
    name = "understand"
    runs_when_halted = False

    async def run(self, ctx: TurnContext) -> None:
        ctx.input = resolve_input(ctx.session, ctx.request)
