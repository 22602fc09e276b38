"""The one turn pipeline: every kind of turn, from every transport, runs through here."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from taleweaver.domain.pipeline import (
    ContextSource,
    ContinuityChecker,
    Extractor,
    NoContinuityCheck,
    NoExtraction,
)
from taleweaver.domain.sessions import SessionKind
from taleweaver.engine.context import TurnContext
from taleweaver.engine.kinds import kind_spec
from taleweaver.engine.stages import (
    Continuity,
    Extract,
    InputSafety,
    Narrate,
    OutputSafety,
    Recall,
    Stage,
    Understand,
)
from taleweaver.llm import ChatModel
from taleweaver.observability import observe_stage
from taleweaver.observability.tracing import span
from taleweaver.safety import AllowAll, SafetyChecker
from taleweaver.store.queries import Queries


@dataclass(slots=True)
class Capabilities:
    """What the stages call; each has a pass-through default until its issue lands.

    `model` is the model router in production (`Engine.open` builds it from the
    settings): each task's calls go to its own chain of models. Any bare
    `ChatModel` may stand in its place (tests put a `ScriptedModel` here); it then
    serves every task, with no fallbacks and no accounting.
    """

    model: ChatModel
    queries: Queries
    safety: SafetyChecker = field(default_factory=AllowAll)
    extractor: Extractor = field(default_factory=NoExtraction)
    continuity: ContinuityChecker = field(default_factory=NoContinuityCheck)
    # What recall asks for pieces of the context pack (world, lorebooks, characters...).
    context_sources: list[ContextSource] = field(default_factory=list)
    max_reply_tokens: int = 400
    history_messages: int = 40


class Pipeline:
    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = list(stages)

    async def run(self, ctx: TurnContext) -> None:
        """Run every stage in order; commit is the caller's, after this returns."""
        kind = str(ctx.session.kind)
        for stage in self.stages:
            if ctx.halted and not stage.runs_when_halted:
                continue
            started = time.perf_counter()
            with span(f"stage {stage.name}", {"taleweaver.stage": stage.name}):
                await stage.run(ctx)
            observe_stage(stage.name, kind, time.perf_counter() - started)


def build_pipeline(kind: SessionKind, caps: Capabilities) -> Pipeline:
    spec = kind_spec(kind)
    narrate = Narrate(
        caps.model,
        max_tokens=spec.max_reply_tokens or caps.max_reply_tokens,
        with_choices=spec.with_choices,
        tagged_choices=spec.tagged_choices,
        brief=spec.brief,
    )
    # understand runs before safety(in) so that a chosen option is checked as the
    # words it stands for, not as a bare number.
    return Pipeline(
        [
            Understand(),
            InputSafety(caps.safety),
            Recall(
                caps.queries,
                spec.system_prompt,
                sources=caps.context_sources,
                history_messages=caps.history_messages,
            ),
            narrate,
            OutputSafety(caps.safety, narrate),
            Extract(caps.extractor),
            Continuity(caps.continuity),
        ]
    )
