"""Extraction and continuity interfaces, with the do-nothing defaults used until
the world memory lands. Artifacts and findings are plain JSON objects so that they
can be stored with the turn as they are."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from taleweaver.domain.events import JSON


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
