"""What a turn asks for and what the safety layer says about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.sessions import SessionState

MAX_INPUT_CHARS = 8_000


class TurnAction(StrEnum):
    SAY = "say"  # free text from the player
    CHOOSE = "choose"  # pick one of the choices the last reply offered
    CONTINUE = "continue"  # the narrator goes on without player input
    REGENERATE = "regenerate"  # a new alternative for the last reply
    EDIT = "edit"  # replace the last player input, then regenerate


@dataclass(frozen=True, slots=True)
class TurnRequest:
    action: TurnAction
    text: str | None = None
    choice: int | None = None  # 1-based, as the player sees the list

    @classmethod
    def build(
        cls, *, action: TurnAction | None, text: str | None, choice: int | None
    ) -> TurnRequest:
        """Validate the combination of fields and infer the action when omitted."""
        if action is None:
            if text is not None and choice is not None:
                raise InvalidInput("send either 'text' or 'choice', not both")
            if text is not None:
                action = TurnAction.SAY
            elif choice is not None:
                action = TurnAction.CHOOSE
            else:
                raise InvalidInput("a turn needs 'text', 'choice' or an 'action'")
        if action in (TurnAction.SAY, TurnAction.EDIT):
            if text is None or not text.strip():
                raise InvalidInput(f"action '{action}' needs non-empty 'text'")
            if len(text) > MAX_INPUT_CHARS:
                raise InvalidInput(f"'text' must be at most {MAX_INPUT_CHARS} characters")
            if choice is not None:
                raise InvalidInput(f"action '{action}' takes no 'choice'")
            return cls(action, text=text.strip())
        if action == TurnAction.CHOOSE:
            if choice is None:
                raise InvalidInput("action 'choose' needs 'choice'")
            if choice < 1:
                raise InvalidInput("choices are numbered from 1")
            if text is not None:
                raise InvalidInput("action 'choose' takes no 'text'")
            return cls(action, choice=choice)
        if text is not None or choice is not None:
            raise InvalidInput(f"action '{action}' takes neither 'text' nor 'choice'")
        return cls(action)


@dataclass(frozen=True, slots=True)
class ResolvedInput:
    """The player's words for this turn, after choices and edits are resolved."""

    text: str | None
    choice: int | None = None
    # The chosen option's annotation, when the reply's kind tags its options.
    tag: str | None = None


def resolve_input(state: SessionState, request: TurnRequest) -> ResolvedInput:
    """Turn a request into the player's words, checked against the session's state."""
    if state.deleted:
        raise InvalidInput("the session is deleted")
    last = state.last_turn
    if request.action == TurnAction.SAY:
        return ResolvedInput(request.text)
    if request.action == TurnAction.CONTINUE:
        return ResolvedInput(None)
    if last is None:
        raise InvalidInput(f"action '{request.action}' needs an earlier turn")
    if request.action == TurnAction.CHOOSE:
        choices = last.reply.choices
        assert request.choice is not None
        if not choices:
            raise InvalidInput("the last reply offered no choices")
        if request.choice > len(choices):
            raise InvalidInput(
                f"choice {request.choice} does not exist; the last reply offered "
                f"{len(choices)} (numbered from 1)"
            )
        tags = last.reply.choice_tags
        tag = tags[request.choice - 1] if len(tags) >= request.choice else None
        return ResolvedInput(choices[request.choice - 1], choice=request.choice, tag=tag)
    if request.action == TurnAction.REGENERATE:
        return ResolvedInput(last.input_text)
    return ResolvedInput(request.text)  # EDIT


SafetyLevel = Literal["safe", "warning", "blocked"]
CrisisLevel = Literal["none", "low", "moderate", "high", "critical"]


@dataclass(frozen=True, slots=True)
class SafetyVerdict:
    """What a safety check concluded; carried on every turn."""

    level: SafetyLevel = "safe"
    crisis: bool = False
    crisis_level: CrisisLevel = "none"
    categories: tuple[str, ...] = field(default_factory=tuple)
    # What the safety layer did: none, crisis_protocol, paused, support_offered,
    # content_warning, regenerated, replaced.
    action: str = "none"
    response: str | None = None  # shown instead of the narrator when blocked
    # Which content rules an output broke (named to the model when it is asked again).
    violations: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, object]:
        return {
            "level": self.level,
            "crisis": self.crisis,
            "crisis_level": self.crisis_level,
            "categories": list(self.categories),
            "action": self.action,
        }


SAFE = SafetyVerdict()
