"""The lorebook's part of the narrator's context: activated entries, placed as they ask.

An entry in an outlet is not placed: its piece carries the outlet's name (detail
`OUTLET`) and recall puts its content where `{{outlet::name}}` is written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from taleweaver.domain.events import JSON
from taleweaver.domain.lorebook import Activated, ActiveCharacter, Entry, Outcome, Position
from taleweaver.domain.macros import OUTLET
from taleweaver.domain.pipeline import ContextPiece, Placement, RecallQuery
from taleweaver.memory.lorebook.service import Lorebooks

# Who speaks in a turn (the character filters' active character); None: no character.
SpeakerOf = Callable[[RecallQuery], Awaitable[ActiveCharacter | None]]

# Pieces in one place are ordered by `order`, lower first; "after" positions are
# pushed past every "before" one.
AFTER = 1_000_000
# At most this many turned-down entries are named in the trace.
TRACE_REJECTED = 20

_PLACES: dict[Position, tuple[Placement, int]] = {
    Position.BEFORE_CHAR: ("system", 0),
    Position.AFTER_CHAR: ("system", AFTER),
    Position.EM_TOP: ("before_history", 0),
    Position.EM_BOTTOM: ("before_history", AFTER),
    Position.AN_TOP: ("after_history", 0),
    Position.AN_BOTTOM: ("after_history", AFTER),
    Position.AT_DEPTH: ("depth", 0),
}


def _priority(item: Activated) -> int:
    """Constant entries first, then direct matches, then each recursion step after."""
    return 100 if item.entry.constant else max(0, 50 - item.step)


def piece_for(item: Activated, book_name: str) -> ContextPiece | None:
    entry: Entry = item.entry
    if not entry.content.strip():
        return None  # nothing to say
    detail: JSON = {
        "book": book_name,
        "entry": entry.comment,
        "matched": list(item.matched),
        "step": item.step,
    }
    place = _PLACES.get(entry.position)
    if place is None:
        if not entry.outlet_name.strip():
            return None  # an outlet with no name: nowhere to go
        # Counted in the lorebook's own budget already; recall puts it in its outlet.
        return ContextPiece(
            text=entry.content,
            source="lorebook",
            ref=f"{item.book_id}/{entry.uid}",
            reason=item.reason,
            priority=_priority(item),
            order=entry.order,
            ignore_budget=True,
            detail=detail | {OUTLET: entry.outlet_name.strip()},
        )
    placement, offset = place
    return ContextPiece(
        text=entry.content,
        source="lorebook",
        ref=f"{item.book_id}/{entry.uid}",
        reason=item.reason,
        priority=_priority(item),
        placement=placement,
        depth=entry.depth if placement == "depth" else 0,
        role=entry.role.value,
        order=offset + entry.order,
        ignore_budget=entry.ignore_budget,
        detail=detail,
    )


class LorebookSource:
    name = "lorebook"

    def __init__(self, lorebooks: Lorebooks, *, speaker: SpeakerOf | None = None) -> None:
        self.lorebooks = lorebooks
        self.speaker = speaker

    async def gather(self, query: RecallQuery) -> list[ContextPiece]:
        speaker = self.speaker
        found = await self.lorebooks.activate_for_session(
            query, (lambda: speaker(query)) if speaker is not None else None
        )
        if found is None:
            return []
        books, outcome = found
        names = {book.book_id: book.name for book in books}
        pieces = [
            piece
            for item in outcome.activated
            if (piece := piece_for(item, names[item.book_id])) is not None
        ]
        if pieces:
            pieces[0] = _with_trace(pieces[0], outcome)
        return pieces


def _with_trace(piece: ContextPiece, outcome: Outcome) -> ContextPiece:
    """The first piece also carries what the lorebook's own budget cut, and what it turned down."""
    extra: JSON = {}
    if outcome.cut:
        extra["cut"] = [s.ref for s in outcome.cut]
    if outcome.rejected:
        extra["rejected"] = [
            {"ref": s.ref, "why": s.why} for s in outcome.rejected[:TRACE_REJECTED]
        ]
    if not extra:
        return piece
    return replace(piece, detail=piece.detail | extra)
