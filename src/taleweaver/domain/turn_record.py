"""A recorded turn: the one typed value every writer of turn events builds.

The pipeline's commit, a companion's greeting and chat imports all describe a turn
as a `TurnRecord`; `to_event` is the one place the payloads of `turn.committed`,
`turn.regenerated` and `turn.edited` are spelled out, so every writer stores the
same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from taleweaver.domain.events import JSON, NewEvent
from taleweaver.domain.sessions import EventType, Reply
from taleweaver.domain.turns import SafetyVerdict

__all__ = ["NOT_CHECKED", "MessageIds", "TurnInput", "TurnRecord", "reply_payload"]

# What an imported turn says about safety: nothing ran on it here.
NOT_CHECKED = SafetyVerdict(action="not_checked")


@dataclass(frozen=True, slots=True)
class TurnInput:
    """The player's side of a turn (`text` None: the narrator went on alone)."""

    text: str | None
    choice: int | None = None
    tag: str | None = None  # the chosen option's annotation, when the kind tags options


@dataclass(frozen=True, slots=True)
class MessageIds:
    """The ids of the two messages a `turn.committed` writes to the read model."""

    player: str
    narrator: str


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One turn as the log records it.

    `action` says which event it is: `regenerate` and `edit` rewrite turn `number`'s
    reply (an edit replaces its input with `input.text`); any other action commits a
    new turn, whose two messages take `message_ids`. `details` carries what only its
    writer knows (a greeting's character, an import's original fields), kept as given.
    """

    turn_id: str
    number: int
    action: str
    reply: Reply
    input: TurnInput = TurnInput(None)
    message_ids: MessageIds | None = None
    model: str = ""
    tokens: int = 0
    safety_input: SafetyVerdict = NOT_CHECKED
    safety_output: SafetyVerdict = NOT_CHECKED
    context: list[JSON] = field(default_factory=list)
    artifacts: list[JSON] = field(default_factory=list)
    findings: list[JSON] = field(default_factory=list)
    details: JSON = field(default_factory=dict)

    @property
    def event_type(self) -> EventType:
        if self.action == "regenerate":
            return EventType.TURN_REGENERATED
        if self.action == "edit":
            return EventType.TURN_EDITED
        return EventType.TURN_COMMITTED

    def to_event(self) -> NewEvent:
        payload: JSON = {
            "turn_id": self.turn_id,
            "number": self.number,
            "action": self.action,
            "reply": reply_payload(self.reply),
            "model": self.model,
            "tokens": self.tokens,
            "safety": {
                "input": self.safety_input.to_dict(),
                "output": self.safety_output.to_dict(),
            },
            "context": list(self.context),
            "artifacts": list(self.artifacts),
            "findings": list(self.findings),
        }
        kind = self.event_type
        if kind == EventType.TURN_EDITED:
            payload["input_text"] = self.input.text
        elif kind == EventType.TURN_COMMITTED:
            given: JSON = {"text": self.input.text, "choice": self.input.choice}
            if self.input.tag is not None:
                given["tag"] = self.input.tag
            if self.message_ids is None:
                raise ValueError("a committed turn needs its message ids")
            payload["input"] = given
            payload["message_ids"] = {
                "player": self.message_ids.player,
                "narrator": self.message_ids.narrator,
            }
        return NewEvent(kind, self.details | payload)


def reply_payload(reply: Reply) -> JSON:
    """A reply as events and the messages read model store it (tags only when any)."""
    data: JSON = {"text": reply.text, "choices": list(reply.choices)}
    if any(reply.choice_tags):
        data["choice_tags"] = list(reply.choice_tags)
    return data
