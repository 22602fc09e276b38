"""A recall query that also says what the player did this turn.

Context sources that act differently by action (a lorebook entry's triggers:
only on "continue", only on a regenerate...) read it with `action_of`; a query
built without it (by a plugin, a test) counts as a turn the player said something.
"""

from __future__ import annotations

from dataclasses import dataclass

from taleweaver.domain.pipeline import RecallQuery


@dataclass(frozen=True, slots=True)
class TurnQuery(RecallQuery):
    # The turn's action: "say", "choose", "continue", "regenerate" or "edit".
    action: str = "say"


def action_of(query: RecallQuery) -> str:
    return query.action if isinstance(query, TurnQuery) else "say"
