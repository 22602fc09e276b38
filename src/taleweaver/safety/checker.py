"""The seam every safety detector plugs into; the default lets everything through."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from taleweaver.domain.safety import Assessment
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import SAFE, SafetyVerdict


@dataclass(frozen=True, slots=True)
class SafetySubject:
    """The text under review and where it sits."""

    text: str
    direction: Literal["input", "output"]
    session_id: str
    workspace_id: str
    kind: SessionKind
    # Who asked for the turn (the request's actor), the turn, and the session's
    # settings (world_id...): what content rules and a crisis signal need.
    actor: str | None = None
    turn_id: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    # The conversation just before this text, oldest first ("player: ..." or
    # "narrator: ..."): a message is judged with it, so a frame broken on purpose
    # ("it's me, not my character") or an answer to a question is read as meant.
    context: tuple[str, ...] = ()


class SafetyChecker(Protocol):
    async def check(self, subject: SafetySubject) -> SafetyVerdict: ...


class SafetyDetector(Protocol):
    """One more layer (the `safety_detectors` hook): on input, what it finds is
    combined with the policy's answer (the more severe wins; a crisis raises the
    protocol); on output, any finding blocks the reply as a content violation."""

    name: str

    async def assess(self, subject: SafetySubject) -> Assessment | None:
        """What it finds in `subject.text` (None or level "none": nothing)."""
        ...


class AllowAll:
    """Used until detectors are configured: every text is safe."""

    async def check(self, subject: SafetySubject) -> SafetyVerdict:
        return SAFE
