"""recall: build the context pack the narrator sees, within a budget, with a trace.

The pack is the kind's system prompt, the pieces the context sources propose
(world memory, lorebooks, characters, safety preferences), recent history and
the player's words. Every piece kept or cut is written to the trace, which is
stored with the turn, so "why did the narrator see this?" always has an answer.
Pieces that fill an outlet (lorebook entries in SillyTavern's outlet position)
are not placed: their content goes where `{{outlet::name}}` is written, in the
system prompt or another piece.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace

from taleweaver.domain.events import JSON
from taleweaver.domain.macros import OUTLET, fill_outlets
from taleweaver.domain.pipeline import ContextPiece, ContextSource, RecallQuery
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.sessions import SessionState
from taleweaver.engine.context import TurnContext
from taleweaver.store.queries import Queries

CONTINUE_PROMPT = "(Continue the story from where it left off.)"

SystemPrompt = Callable[[SessionState], str]

# The share of the budget the sources' pieces may take before history; what they
# leave unused goes to history.
SOURCES_SHARE = 0.5


def _trace(piece: ContextPiece, **outcome: str) -> JSON:
    entry: JSON = {"source": piece.source, "ref": piece.ref, "reason": piece.reason}
    if piece.detail:
        entry["detail"] = piece.detail
    return entry | outcome


def fit_pieces(
    pieces: Sequence[ContextPiece], budget: int
) -> tuple[list[ContextPiece], list[ContextPiece]]:
    """(kept, cut): ignore-budget pieces always, then by priority while they fit."""
    kept = [p for p in pieces if p.ignore_budget]
    left = budget - sum(len(p.text) for p in kept)
    cut: list[ContextPiece] = []
    for piece in sorted(
        (p for p in pieces if not p.ignore_budget), key=lambda p: (-p.priority, p.order)
    ):
        if len(piece.text) <= left:
            kept.append(piece)
            left -= len(piece.text)
        else:
            cut.append(piece)
    return kept, cut


def take_outlets(
    pieces: Sequence[ContextPiece],
) -> tuple[list[ContextPiece], list[ContextPiece], dict[str, str]]:
    """(pieces to place, pieces that fill outlets, each outlet's text): an outlet's
    pieces joined in their order, lower first, as SillyTavern joins an outlet's entries."""
    placed = [p for p in pieces if OUTLET not in p.detail]
    filling = sorted((p for p in pieces if OUTLET in p.detail), key=lambda p: p.order)
    outlets: dict[str, list[str]] = {}
    for piece in filling:
        outlets.setdefault(str(piece.detail[OUTLET]), []).append(piece.text)
    return placed, filling, {name: "\n".join(texts) for name, texts in outlets.items()}


def _filled(piece: ContextPiece, outlets: dict[str, str]) -> ContextPiece:
    text = fill_outlets(piece.text, outlets)
    return piece if text == piece.text else replace(piece, text=text)


class Recall:
    name = "recall"
    runs_when_halted = False

    def __init__(
        self,
        queries: Queries,
        system_prompt: SystemPrompt,
        *,
        sources: Sequence[ContextSource] = (),
        history_messages: int = 40,
        budget_chars: int = 12_000,
    ) -> None:
        self.queries = queries
        self.system_prompt = system_prompt
        self.sources = list(sources)
        self.history_messages = history_messages
        self.budget_chars = budget_chars

    async def run(self, ctx: TurnContext) -> None:
        ctx.context_trace.append({"source": "system", "reason": f"{ctx.session.kind} prompt"})
        history = await self.queries.history(
            ctx.session.id, before_turn=ctx.number, limit=self.history_messages
        )
        pieces, filling, outlets = take_outlets(await self._gather(ctx, history))
        system = fill_outlets(self.system_prompt(ctx.session), outlets)
        pieces = [_filled(p, outlets) for p in pieces]
        for piece in filling:
            ctx.context_trace.append(_trace(piece, outlet=str(piece.detail[OUTLET])))
        current = ctx.input.text if ctx.input.text is not None else CONTINUE_PROMPT
        budget = self.budget_chars - len(system) - len(current)

        kept_pieces, cut_pieces = fit_pieces(pieces, int(budget * SOURCES_SHARE))
        budget -= sum(len(p.text) for p in kept_pieces)
        for piece in sorted(kept_pieces, key=lambda p: (p.placement, p.order, -p.priority)):
            ctx.context_trace.append(_trace(piece))
        for piece in cut_pieces:
            ctx.context_trace.append(_trace(piece, cut="over budget"))

        kept: list[ChatMessage] = []
        # Newest first, so the budget cuts the oldest messages.
        for message in reversed(history):
            cost = len(message["content"])
            ref = f"turn {message['turn_number']} {message['role']}"
            if cost > budget:
                ctx.context_trace.append({"source": "history", "ref": ref, "cut": "over budget"})
                continue
            budget -= cost
            kept.append(
                ChatMessage(
                    "user" if message["role"] == "player" else "assistant", message["content"]
                )
            )
            ctx.context_trace.append({"source": "history", "ref": ref, "reason": "recent"})
        ctx.prompt = assemble(system, kept_pieces, list(reversed(kept)), current)

    async def _gather(self, ctx: TurnContext, history: list[JSON]) -> list[ContextPiece]:
        if not self.sources:
            return []
        actor = ctx.metadata.actor
        query = RecallQuery(
            session_id=ctx.session.id,
            workspace_id=ctx.session.workspace_id,
            kind=str(ctx.session.kind),
            settings=ctx.session.settings,
            turn_number=ctx.number,
            player_id=None if actor == "system" else actor,
            current_text=ctx.input.text,
            recent=[(m["role"], m["content"]) for m in history],
            last_choice_tag=last.input_tag if (last := ctx.session.last_turn) else None,
            action=str(ctx.request.action),
        )
        found = await asyncio.gather(*(source.gather(query) for source in self.sources))
        return [piece for pieces in found for piece in pieces]


def assemble(
    system: str,
    pieces: Sequence[ContextPiece],
    history: list[ChatMessage],
    current: str,
) -> list[ChatMessage]:
    """Place each kept piece where it asked to go, around history and the player's words."""

    def ordered(placement: str) -> list[ContextPiece]:
        return sorted(
            (p for p in pieces if p.placement == placement), key=lambda p: (p.order, -p.priority)
        )

    system_text = "\n\n".join([system, *(p.text for p in ordered("system"))])
    messages = [ChatMessage("system", system_text)]
    messages += [ChatMessage(p.role, p.text) for p in ordered("before_history")]
    body = list(history)
    # Deepest first, so that each insertion counts from the end of the history.
    for piece in sorted(ordered("depth"), key=lambda p: -p.depth):
        at = max(0, len(body) - piece.depth)
        body.insert(at, ChatMessage(piece.role, piece.text))
    messages += body
    messages += [ChatMessage(p.role, p.text) for p in ordered("after_history")]
    messages.append(ChatMessage("user", current))
    return messages
