"""Rolling summaries: which turns each summary covers, which are due, which recall uses.

Level 1 summarises a fixed chunk of turns; level k summarises `FANOUT` summaries
of level k-1. Ranges are fixed by turn numbers alone (level 1: turns 1-20,
21-40...; level 2: 1-200...), so running the rules again always yields the same
ranges, and a replaced turn maps to exactly one summary per level. Pure rules,
no I/O: the service in `memory.summaries` stores and calls the model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from taleweaver.domain.events import JSON
from taleweaver.domain.prompt import ChatMessage

__all__ = [
    "CHUNK_TURNS",
    "FANOUT",
    "MAX_ATTEMPTS",
    "PROMPT_VERSION",
    "Exchange",
    "IndexEntry",
    "Known",
    "Span",
    "SummaryRow",
    "clean_output",
    "complete_spans",
    "cover",
    "due",
    "extractive",
    "extractive_of_summaries",
    "fit_texts",
    "level_prompt",
    "max_chars",
    "retry_delay",
    "span_of",
    "span_turns",
    "turns_prompt",
]

CHUNK_TURNS = 20
FANOUT = 10
# Bumped whenever the summarizer's instructions change, so a summary says how it was made.
PROMPT_VERSION = 1
# How often a summary the model failed to write is tried again before its
# extractive fallback is kept for good.
MAX_ATTEMPTS = 5
# Per message, what the summarizer is shown of a turn (a prompt stays bounded).
_MESSAGE_CHARS = 700
# A sentence ends at . ! ? or an ellipsis, with any closing quotes or brackets.
_SENTENCE = re.compile(r"(.+?[.!?\u2026](?:[\"'\u201d\u2019)\]]*))(?:\s|$)", re.DOTALL)
_PREAMBLE = re.compile(r"^\s*(?:here is |here's )?(?:a |the )?summary\s*[:\-\u2013\u2014]\s*", re.I)


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """The turns one summary covers: level, first and last turn, both inclusive."""

    level: int
    first: int
    last: int

    @property
    def ref(self) -> str:
        return f"L{self.level} turns {self.first}-{self.last}"

    def children(self) -> list[Span]:
        """The spans one level down that this one is made from (none for level 1)."""
        if self.level == 1:
            return []
        size = span_turns(self.level - 1)
        return [
            Span(self.level - 1, first, first + size - 1)
            for first in range(self.first, self.last + 1, size)
        ]

    def contains(self, turn: int) -> bool:
        return self.first <= turn <= self.last


@dataclass(frozen=True, slots=True)
class Known:
    """What the rules need to know of a stored summary."""

    span: Span
    stale: bool = False
    # A fallback summary whose next try with the model is due.
    retry_due: bool = False


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """What is known of a stored summary without reading its text."""

    id: str
    span: Span
    stale: bool
    method: str
    model: str
    retry_at: datetime | None
    # How many times the model failed to write it (a fallback stands in meanwhile).
    attempts: int = 0

    def known(self, now: datetime) -> Known:
        retry = self.retry_at is not None and self.retry_at <= now
        return Known(self.span, stale=self.stale, retry_due=retry)


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """A stored summary as the API shows it, text opened."""

    entry: IndexEntry
    text: str
    prompt_version: int
    sources: list[JSON]
    source_version: int
    fallback_reason: str | None
    created_at: datetime
    sealed: bool


@dataclass(frozen=True, slots=True)
class Exchange:
    """One turn as the summarizer sees it (player words are None for "continue")."""

    number: int
    player: str | None
    narrator: str


def span_turns(level: int) -> int:
    if level < 1:
        raise ValueError("summary levels start at 1")
    return int(CHUNK_TURNS * FANOUT ** (level - 1))


def span_of(level: int, turn: int) -> Span:
    """The span at `level` that contains `turn` (turns count from 1)."""
    size = span_turns(level)
    first = (turn - 1) // size * size + 1
    return Span(level, first, first + size - 1)


def complete_spans(level: int, turn_count: int) -> list[Span]:
    """Every span at `level` whose turns are all committed."""
    size = span_turns(level)
    return [Span(level, first, first + size - 1) for first in range(1, turn_count - size + 2, size)]


def due(level: int, turn_count: int, known: Mapping[Span, Known]) -> list[Span]:
    """The spans at `level` to (re)write now, oldest first.

    A span is due when all its turns are committed and it is missing, stale, or a
    fallback due for another try; above level 1, only once each of its children
    exists and is current (a parent made from stale children would be stale at birth).
    """
    found: list[Span] = []
    for span in complete_spans(level, turn_count):
        have = known.get(span)
        if have is not None and not have.stale and not have.retry_due:
            continue
        if level > 1:
            kids = [known.get(child) for child in span.children()]
            if any(kid is None or kid.stale for kid in kids):
                continue
        found.append(span)
    return found


def cover(known: Iterable[Known], before: int) -> list[Span]:
    """Summaries that together cover turns 1 .. before-1, oldest first.

    The largest summary that ends before `before` wins at each point, so the
    distant past comes in few, coarse pieces and the recent past in finer ones;
    current summaries are preferred to stale ones (a stale one stands in until it
    is redone). The last level-1 summary may run into the recent window rather
    than leave the turns just before it uncovered; turns with no summary yet are
    skipped.
    """
    by_span = {k.span: k for k in known}
    top = max((s.level for s in by_span), default=0)
    chosen: list[Span] = []
    turn = 1
    while turn < before:
        pick = _largest_at(by_span, top, turn, before, fresh_only=True) or _largest_at(
            by_span, top, turn, before, fresh_only=False
        )
        if pick is None:
            turn = span_of(1, turn).last + 1
            continue
        chosen.append(pick)
        turn = pick.last + 1
    return chosen


def _largest_at(
    by_span: Mapping[Span, Known], top: int, turn: int, before: int, *, fresh_only: bool
) -> Span | None:
    for level in range(top, 0, -1):
        span = span_of(level, turn)
        if span.first != turn:
            continue
        have = by_span.get(span)
        if have is None or (fresh_only and have.stale):
            continue
        if span.last < before or level == 1:
            return span
    return None


# --- what the summarizer is asked, and what is kept of its answer ------------------------


def max_chars(level: int) -> int:
    """The longest summary kept at `level` (recall fits many of them in one budget)."""
    return 600 if level == 1 else 900


def _words(level: int) -> int:
    return 60 if level == 1 else 90


def _instructions(level: int) -> str:
    return (
        "You keep the memory of a long interactive story. Summarise the part given "
        f"below in at most {_words(level)} words of plain past-tense prose: what happened, "
        "who was involved, names of people, places and things, promises, secrets and "
        "open threads. Keep every proper name exactly as written. Write only the summary, "
        "with no preamble."
    )


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def turns_prompt(span: Span, exchanges: Sequence[Exchange]) -> list[ChatMessage]:
    """What the summarizer is given for a level-1 summary."""
    lines = [f"Turns {span.first}-{span.last} of the story:"]
    for ex in exchanges:
        if ex.player is not None:
            lines.append(f"[{ex.number}] Player: {_clip(ex.player, _MESSAGE_CHARS)}")
        lines.append(f"[{ex.number}] Narrator: {_clip(ex.narrator, _MESSAGE_CHARS)}")
    return [ChatMessage("system", _instructions(1)), ChatMessage("user", "\n".join(lines))]


def level_prompt(span: Span, parts: Sequence[tuple[Span, str]]) -> list[ChatMessage]:
    """What the summarizer is given to condense summaries into one of `span.level`."""
    lines = [f"Summaries of turns {span.first}-{span.last}, in order:"]
    lines += [f"[turns {s.first}-{s.last}] {text}" for s, text in parts]
    return [
        ChatMessage("system", _instructions(span.level)),
        ChatMessage("user", "\n".join(lines)),
    ]


def clean_output(text: str, level: int) -> str | None:
    """The model's summary, tidied and capped; None when it is empty or unusable."""
    text = _PREAMBLE.sub("", " ".join(text.split())).strip().strip('"').strip()
    if sum(ch.isalpha() for ch in text) < 3:
        return None
    return _cap(text, max_chars(level))


def _cap(text: str, limit: int) -> str:
    """Cut at the last sentence end that fits, else at a word, marking the cut."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    end = max(head.rfind(". "), head.rfind("! "), head.rfind("? "))
    if end >= limit // 2:
        return head[: end + 1]
    return head[: limit - 1].rsplit(" ", 1)[0] + "…"


def fit_texts(texts: Sequence[str], budget: int, *, floor: int = 80) -> list[str]:
    """Shorten texts to fit `budget` characters together, sharing it fairly.

    Short texts keep all they have and leave the rest to the longer ones; a text
    cut is cut at a sentence end where it can be. Each keeps at least `floor`
    characters, so many pieces may still go over (recall's budget decides then).
    """
    if sum(map(len, texts)) <= budget:
        return list(texts)
    allot: dict[int, int] = {}
    left = budget
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for rank, i in enumerate(order):
        share = max(floor, left // (len(texts) - rank))
        allot[i] = min(len(texts[i]), share)
        left -= allot[i]
    return [_cap(text, allot[i]) for i, text in enumerate(texts)]


def first_sentence(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    match = _SENTENCE.match(text)
    sentence = match.group(1) if match else text
    return _clip(sentence, limit)


def extractive(span: Span, exchanges: Sequence[Exchange]) -> str:
    """A summary made without a model: the first sentence of each side of each turn."""
    parts: list[str] = []
    for ex in exchanges:
        said = f"{first_sentence(ex.player, 80)} → " if ex.player else ""
        parts.append(f"[{ex.number}] {said}{first_sentence(ex.narrator, 120)}")
    return _cap(" ".join(parts) or "(nothing happened)", max_chars(span.level))


def extractive_of_summaries(span: Span, parts: Sequence[tuple[Span, str]]) -> str:
    """A higher-level summary made without a model: each part's opening sentence."""
    text = " ".join(f"[{s.first}-{s.last}] {first_sentence(t, 200)}" for s, t in parts)
    return _cap(text or "(nothing happened)", max_chars(span.level))


def retry_delay(attempts: int) -> float:
    """Seconds before a failed summary is tried again: 1, 2, 4... minutes, at most an hour."""
    return float(min(60 * 2 ** max(attempts - 1, 0), 3600))
