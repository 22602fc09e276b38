"""The turn pipeline's contracts with the capabilities that feed it.

Recall asks every context source for pieces of the narrator's context pack
(world memory, lorebooks, characters, safety preferences, therapy...). A piece
says why it is there, so that the pack's trace can answer "why did the narrator
see this?"; the recall stage alone decides what fits the budget and where each
piece goes in the prompt.

After the narrator replies, an extractor proposes structured artifacts for review
and a continuity checker compares them with canon. Artifacts and findings are
plain JSON objects so that they can be stored with the turn as they are; the
do-nothing defaults stand in until a capability is wired.

Capabilities implement these protocols and the engine calls them: they meet here,
and neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from taleweaver.domain.events import JSON

__all__ = [
    "ContextPiece",
    "ContextSource",
    "ContinuityChecker",
    "Extractor",
    "NoContinuityCheck",
    "NoExtraction",
    "Placement",
    "RecallQuery",
    "ReplyUnderReview",
]

Placement = Literal["system", "before_history", "after_history", "depth"]


# --- recall -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecallQuery:
    """The turn as recall sees it."""

    session_id: str
    workspace_id: str
    kind: str
    # The session's settings (world_id, character_ids, premise...).
    settings: JSON
    turn_number: int
    # Who plays the session (its owner); None for system-driven turns.
    player_id: str | None
    # The player's words this turn (None for "continue").
    current_text: str | None
    # The most recent messages, oldest first, as (role, text), role "player" or
    # "narrator"; sources scan the tail of this window.
    recent: list[tuple[str, str]] = field(default_factory=list)
    # The annotation of the option the player chose last turn (kinds that tag
    # their options: see KindSpec.tagged_choices), if any.
    last_choice_tag: str | None = None
    # What the player did: "say", "choose", "continue", "regenerate" or "edit" (a
    # lorebook entry's triggers act on it); a query built without it is a "say".
    action: str = "say"

    @property
    def world_id(self) -> str | None:
        value = self.settings.get("world_id")
        return str(value) if value else None


@dataclass(frozen=True, slots=True)
class ContextPiece:
    text: str
    # Which source produced it ("lorebook", "entity", "summary", "character"...).
    source: str
    # What it is (an entry or entity id, a summary range...).
    ref: str
    # Why it is there (the key that matched, the retrieval that found it...).
    reason: str
    # Higher goes in first when the budget is short.
    priority: int = 0
    placement: Placement = "before_history"
    # For placement "depth": how many messages from the end it goes in.
    depth: int = 0
    role: Literal["system", "user", "assistant"] = "system"
    # Ordering among pieces in the same place (lower first).
    order: int = 0
    # Always included, whatever the budget (a lorebook's ignoreBudget entries).
    ignore_budget: bool = False
    # Anything else the trace should carry (scores, matched keys...).
    detail: JSON = field(default_factory=dict)


class ContextSource(Protocol):
    name: str

    async def gather(self, query: RecallQuery) -> list[ContextPiece]:
        """The pieces this source proposes for the turn (recall decides what fits)."""
        ...


# --- extraction and continuity ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplyUnderReview:
    session_id: str
    workspace_id: str
    turn_id: str
    player_text: str | None
    reply_text: str
    # The world the session plays in (its settings' world_id), if any.
    world_id: str | None = None


class Extractor(Protocol):
    async def extract(self, reply: ReplyUnderReview) -> list[JSON]:
        """Structured artifacts (entities, facts...) proposed for review."""
        ...


class ContinuityChecker(Protocol):
    async def check(self, reply: ReplyUnderReview, artifacts: list[JSON]) -> list[JSON]:
        """Findings (contradictions, duplicates, drift) against canon."""
        ...


class NoExtraction:
    async def extract(self, reply: ReplyUnderReview) -> list[JSON]:
        return []


class NoContinuityCheck:
    async def check(self, reply: ReplyUnderReview, artifacts: list[JSON]) -> list[JSON]:
        return []
