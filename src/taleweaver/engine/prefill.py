"""A new session's prompt, evaluated by a local narrator before the first turn.

A companion's card can make a prompt of 2,000 tokens, which the bundled model on
two cores reads for tens of seconds. That prompt's opening (the system message,
the greeting) is known as soon as the session exists, so the narrator's model
evaluates it then, in the background, while the player reads the greeting; the
first turn then reads only the player's words. Recall builds the opening exactly
as the turn will, so the model's prefix cache matches it byte for byte.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from taleweaver.domain.events import EventMetadata, RecordedEvent
from taleweaver.domain.sessions import EventType
from taleweaver.domain.turns import TurnAction, TurnRequest
from taleweaver.engine.context import TurnContext
from taleweaver.engine.pipeline import Capabilities, build_pipeline
from taleweaver.engine.stages import Narrate, Recall
from taleweaver.llm import ModelRouter
from taleweaver.llm.base import Prefillable
from taleweaver.memory.summaries import SummarySource
from taleweaver.store.repository import SessionRepository

__all__ = ["Prefills"]

log = logging.getLogger(__name__)

_REQUEST = TurnRequest.build(action=TurnAction.CONTINUE, text=None, choice=None)


class Prefills:
    """Starts a prefill for each session created (a commit listener); only the newest
    runs, since one local model holds one prompt and the player is at the newest."""

    def __init__(self, caps: Capabilities, repository: SessionRepository) -> None:
        self.caps = caps
        self.repository = repository
        self._task: asyncio.Task[None] | None = None

    @property
    def useful(self) -> bool:
        model = self.caps.model
        if isinstance(model, ModelRouter):
            return model.prefills
        return isinstance(model, Prefillable)

    async def committed(self, recorded: Sequence[RecordedEvent]) -> None:
        for event in recorded:
            if event.type == EventType.SESSION_CREATED:
                actor = str(event.metadata.get("actor") or "system")
                self.start(event.workspace_id, event.stream_id, actor)

    def start(self, workspace_id: str, session_id: str, player: str) -> None:
        """Prefill this session's prompt in the background, instead of any other's.

        `player`: who will speak (the session's creator); recall gives the prompt
        their name and relationship, as it will in their turn.
        """
        if not self.useful:
            return
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.create_task(
            self._prefill(workspace_id, session_id, EventMetadata(player)),
            name=f"prefill {session_id}",
        )

    async def settle(self) -> None:
        """Wait for the prefill under way, if any (tests and benchmarks)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _prefill(self, workspace_id: str, session_id: str, player: EventMetadata) -> None:
        try:
            state = await self.repository.open(workspace_id, session_id)
            ctx = TurnContext(
                turn_id="prefill", session=state, request=_REQUEST, metadata=player, emit=_quiet
            )
            stages = build_pipeline(state.kind, self.caps).stages
            recall = next(s for s in stages if isinstance(s, Recall))
            narrate = next(s for s in stages if isinstance(s, Narrate))
            # Summaries note each turn they are asked about, to schedule their passes;
            # a session this new has nothing summarised, so they are left out.
            recall.sources = [s for s in recall.sources if not isinstance(s, SummarySource)]
            await recall.run(ctx)
            await narrate.prefill(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a warm-up only: the turn builds and reads its own prompt
            log.warning("prefilling session %s failed: %s", session_id, exc)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _quiet(name: str, data: object) -> None:
    return None
