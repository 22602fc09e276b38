"""The typed context one turn carries through the pipeline's stages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from taleweaver.domain.events import JSON, EventMetadata
from taleweaver.domain.flags import DEFAULT_FLAGS, FlagSet
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.sessions import SessionState
from taleweaver.domain.turns import SAFE, ResolvedInput, SafetyVerdict, TurnRequest

Emit = Callable[[str, JSON], None]


@dataclass(slots=True)
class TurnContext:
    turn_id: str
    session: SessionState
    request: TurnRequest
    metadata: EventMetadata
    emit: Emit
    # The workspace's feature flags, read once when the turn started.
    flags: FlagSet = DEFAULT_FLAGS
    input: ResolvedInput = field(default_factory=lambda: ResolvedInput(None))
    prompt: list[ChatMessage] = field(default_factory=list)
    context_trace: list[JSON] = field(default_factory=list)
    reply_text: str = ""
    choices: list[str] = field(default_factory=list)
    # Per choice, the annotation a kind asked for (None where there was none).
    choice_tags: list[str | None] = field(default_factory=list)
    tokens: int = 0
    model_name: str = ""
    safety_in: SafetyVerdict = SAFE
    safety_out: SafetyVerdict = SAFE
    artifacts: list[JSON] = field(default_factory=list)
    findings: list[JSON] = field(default_factory=list)
    # Set when a stage decided the narrator must not run (a blocked input).
    halted: bool = False

    @property
    def safety(self) -> SafetyVerdict:
        """The verdict the player sees: the more severe of input and output."""
        order = {"safe": 0, "warning": 1, "blocked": 2}
        if order[self.safety_out.level] > order[self.safety_in.level]:
            return self.safety_out
        return self.safety_in

    @property
    def number(self) -> int:
        """The turn number this turn writes (regenerate and edit rewrite the last one)."""
        last = self.session.last_turn
        if self.request.action in ("regenerate", "edit") and last is not None:
            return last.number
        return self.session.turn_count + 1
