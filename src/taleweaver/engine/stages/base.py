"""What every stage is."""

from __future__ import annotations

from typing import Protocol

from taleweaver.engine.context import TurnContext


class Stage(Protocol):
    name: str
    # Whether the stage still runs after an earlier stage halted the turn.
    runs_when_halted: bool

    async def run(self, ctx: TurnContext) -> None: ...
