"""Recall's view of the rolling summaries: the story before the recent history.

Recall fetches the last `history_messages` messages itself; this source covers
the turns before them, coarse summaries for the distant past and finer ones
closer to now, each placed before the history in story order. Together they
are held to the configured share of the prompt (each shortened to its share,
so the distant past stays in, condensed); when recall's own budget is shorter
still, the most recent summaries are kept first. Gathering also tells the
service that a turn has begun, which schedules any summaries now due.
"""

from __future__ import annotations

import logging

from taleweaver.domain.errors import EncryptionError
from taleweaver.domain.pipeline import ContextPiece, RecallQuery
from taleweaver.domain.summaries import fit_texts
from taleweaver.memory.summaries.service import Summaries

__all__ = ["SummarySource"]

log = logging.getLogger(__name__)

# Summaries go after other sources' pieces placed before history (world facts,
# lore), so that the story so far leads straight into the recent messages.
ORDER_BASE = 1000
# The newest summary's priority; each older one is one less.
TOP_PRIORITY = 50


class SummarySource:
    name = "summary"

    def __init__(self, service: Summaries, *, history_messages: int) -> None:
        self.service = service
        self.history_messages = history_messages

    async def gather(self, query: RecallQuery) -> list[ContextPiece]:
        index = await self.service.current_index(query.workspace_id, query.session_id)
        self.service.notice(query.workspace_id, query.session_id, query.turn_number, index)
        if len(query.recent) < self.history_messages or not index.entries:
            return []  # recent history reaches back to the first turn
        # Each turn holds at most two messages, so the window reaches back at least
        # this far; covering up to here leaves no gap (at worst a little overlap).
        before = query.turn_number - (len(query.recent) + 1) // 2
        try:
            found = await self.service.recall(query.workspace_id, before, index)
        except EncryptionError as exc:  # a summary that cannot be opened never stops a turn
            log.warning("summaries of session %s left out: %s", query.session_id, exc.detail)
            return []
        texts = fit_texts([text for _, text in found], self.service.config.recall_chars)
        pieces = []
        for position, ((entry, _), text) in enumerate(zip(found, texts, strict=True)):
            span = entry.span
            pieces.append(
                ContextPiece(
                    text=f"Story so far, turns {span.first}-{span.last}: {text}",
                    source="summary",
                    ref=span.ref,
                    reason=f"covers turns {span.first}-{span.last} (older than recent history)",
                    priority=TOP_PRIORITY - (len(found) - 1 - position),
                    placement="before_history",
                    order=ORDER_BASE + position,
                    detail={
                        "summary_id": entry.id,
                        "level": span.level,
                        "method": entry.method,
                        "model": entry.model,
                        "stale": entry.stale,
                    },
                )
            )
        return pieces
