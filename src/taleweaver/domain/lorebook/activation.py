"""Which lorebook entries activate for a scan window, and why (SillyTavern's rules).

One scan: constant and sticky entries, then entries whose primary key occurs in
the window (and whose secondary keys satisfy their logic); inclusion groups keep
one entry each; a probability roll (stable for a given seed) may drop an entry;
the token budget (counted by the caller's `count_tokens`: the model's own
tokenizer where it has one) admits constant entries first, then by order, and
always admits `ignore_budget` entries. Character filters and triggers keep an
entry out of turns that are not for it (see `filters`). With recursion on, the
content of what activated is scanned again, step by step, until nothing new
activates or the step limit is reached; entries found directly always come
before those found by recursion.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from taleweaver.domain.events import JSON
from taleweaver.domain.lorebook import timed
from taleweaver.domain.lorebook.filters import (
    NORMAL,
    ActiveCharacter,
    character_block,
    trigger_block,
)
from taleweaver.domain.lorebook.model import DEFAULT_BUDGET_TOKENS, Entry, Logic
from taleweaver.domain.lorebook.prepare import KeyRef, PreparedBook

# However a book is set, recursion stops here (each step scans only new text, but a
# long chain of entries would still cost a step each).
HARD_STEP_LIMIT = 64
MATCHER = "\x01"
JOINER = "\n" + MATCHER
NOWHERE = 2**62  # a depth past any window


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of the scan window: the player's words, or one recent message."""

    label: str
    text: str


@dataclass(frozen=True, slots=True)
class Activated:
    book_id: str
    entry: Entry
    reason: str
    step: int  # 1: found directly; more: found by recursion
    matched: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Skipped:
    book_id: str
    uid: str
    why: str

    @property
    def ref(self) -> str:
        return f"{self.book_id}/{self.uid}"


@dataclass(slots=True)
class Outcome:
    activated: list[Activated] = field(default_factory=list)
    cut: list[Skipped] = field(default_factory=list)  # over the token budget
    rejected: list[Skipped] = field(default_factory=list)  # matched, then turned down
    timed: JSON = field(default_factory=dict)
    steps: int = 0


def estimate_tokens(text: str) -> int:
    """About four characters a token: close enough for a budget, and needs no tokenizer."""
    return (len(text) + 3) // 4


TokenCounter = Callable[[str], int]


def roll(seed: str, *parts: object) -> float:
    """A number in [0, 100), the same every time for the same seed and parts."""
    digest = hashlib.sha256("\x1f".join([seed, *map(str, parts)]).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


EntryRef = tuple[int, int]  # (book, entry position)


@dataclass(slots=True)
class _Match:
    reason: str
    matched: tuple[str, ...]
    score: int


class _Joined:
    """Segments joined as SillyTavern joins its scan buffer, to search a regex once:
    each one prefixed with "\x01" (so `^` without the m flag never matches, and with
    it matches only at the start of a line within a message), joined by newlines."""

    def __init__(self, segments: Sequence[Segment]) -> None:
        self.starts: list[int] = []
        parts: list[str] = []
        at = len(MATCHER)
        for segment in segments:
            self.starts.append(at)
            parts.append(segment.text)
            at += len(segment.text) + len(JOINER)
        self.text = MATCHER + JOINER.join(parts)

    def first(self, pattern: re.Pattern[str]) -> int | None:
        """The index of the first segment the pattern matches in, if any."""
        found = pattern.search(self.text)
        if found is None:
            return None
        return max(0, bisect.bisect_right(self.starts, found.start()) - 1)


class _Scan:
    """The state of one activation: hits so far, what activated, the recursion buffer."""

    def __init__(self, books: Sequence[PreparedBook], window: Sequence[Segment]) -> None:
        self.books = books
        self.window = window
        # Per book: plain key id -> (depth into the window, label of where it occurs).
        self.window_hits: list[dict[int, int]] = []
        self.recursion_hits: list[dict[int, str]] = [{} for _ in books]
        self.recursion_chunks: list[Segment] = []
        self.candidates: set[EntryRef] = set()
        # Per regex key: the first window segment it occurs in (NOWHERE: none), and
        # how many recursion chunks it was searched in, with the first that matched.
        self.regex_window: dict[re.Pattern[str], int] = {}
        self.regex_recursion: dict[re.Pattern[str], tuple[int, str | None]] = {}
        # Per book: the regex keys that may match the window, and recursion text so far.
        self.window_possible: list[set[int]] = []
        self.recursion_possible: list[set[int]] = [set() for _ in books]
        self.recursion_joined = ""
        self.max_depth = max((book.max_depth for book in books), default=0)
        self.window_text = _Joined(window[: self.max_depth])
        self.recursion_text: dict[tuple[int, int], _Joined] = {}
        self.span_possible: dict[tuple[int, int, int], set[int]] = {}  # (book, span)
        for b, book in enumerate(books):
            hits: dict[int, int] = {}
            # Deepest first, so that a key seen at several depths keeps the shallowest.
            scanned = list(enumerate(window[: book.max_depth]))
            for depth, segment in reversed(scanned):
                if segment.text:
                    found, entries = book.index.find(segment.text)
                    hits.update(dict.fromkeys(found, depth))
                    self._add_candidates(b, entries)
            self.window_hits.append(hits)
            self._add_candidates(b, book.constants)
            # Regex keys whose required literals are not in the window cannot match it.
            possible = book.possible(self.window_text.text)
            self.window_possible.append(possible)
            self._add_regex_candidates(b, possible)

    def _add_candidates(self, b: int, entries: Iterable[int]) -> None:
        self.candidates.update((b, e) for e in entries)

    def _add_regex_candidates(self, b: int, regex_ids: Iterable[int]) -> None:
        owners = self.books[b].regex_owner
        self._add_candidates(b, (owner for i in regex_ids if (owner := owners[i]) >= 0))

    def add_recursion(self, label: str, text: str) -> None:
        chunk = Segment(label, text)
        self.recursion_chunks.append(chunk)
        self.recursion_joined = (
            f"{self.recursion_joined}{JOINER}{text}" if len(self.recursion_chunks) > 1 else text
        )
        for b, book in enumerate(self.books):
            found, entries = book.index.find(text)
            hits = self.recursion_hits[b]
            for key_id in found:  # (`found - hits.keys()` would copy every key so far)
                hits.setdefault(key_id, label)
            self._add_candidates(b, entries)

    def recursion_added(self) -> None:
        """After a step's text is added: which regex keys may match recursion text.
        Looked for over all of it, since a match may run across chunks."""
        for b, book in enumerate(self.books):
            if book.regexes:
                possible = book.possible(self.recursion_joined)
                self.recursion_possible[b] = possible
                self._add_regex_candidates(b, possible)

    def where(self, b: int, depth_limit: int, ref: KeyRef, recursion: bool) -> str | None:
        """Where key `ref` occurs for an entry that scans the `depth_limit` newest
        messages (the player's words are the newest). As in SillyTavern, an entry that
        scans none (depth 0) is not matched by its keys at all, recursion included."""
        if depth_limit <= 0:
            return None
        if ref.pattern is None:
            depth = self.window_hits[b].get(ref.key_id)
            if depth is not None and depth < depth_limit:
                return f"in {self.window[depth].label}"
            label = self.recursion_hits[b].get(ref.key_id) if recursion else None
            return label
        # A regex is searched once over the window, and once over each stretch of
        # recursion text added since it was last searched; not at all where its
        # required literals are absent (what is cached then holds for every book).
        pattern = ref.pattern
        first = self.regex_window.get(pattern)
        if first is None:
            found_at = None
            if ref.regex_id in self.window_possible[b]:
                found_at = self.window_text.first(pattern)
            first = self.regex_window[pattern] = NOWHERE if found_at is None else found_at
        if first < depth_limit:
            return f"in {self.window[first].label}"
        if not recursion:
            return None
        searched, label = self.regex_recursion.get(pattern, (0, None))
        if label is None and ref.regex_id not in self.recursion_possible[b]:
            self.regex_recursion[pattern] = (len(self.recursion_chunks), None)
        elif label is None and searched < len(self.recursion_chunks):
            span = (searched, len(self.recursion_chunks))
            joined = self.recursion_text.get(span)
            if joined is None:
                joined = self.recursion_text[span] = _Joined(self.recursion_chunks[searched:])
            possible = self.span_possible.get((b, *span))
            if possible is None:
                possible = self.span_possible[(b, *span)] = self.books[b].possible(joined.text)
            found = joined.first(pattern) if ref.regex_id in possible else None
            label = None if found is None else self.recursion_chunks[searched + found].label
            self.regex_recursion[pattern] = (len(self.recursion_chunks), label)
        return label

    def match(self, b: int, e: int, recursion: bool) -> _Match | None:
        """Whether entry e's keys activate it, with the reason and its group score."""
        book = self.books[b]
        entry = book.entries[e]
        depth = book.scan_depth[e]
        first: tuple[KeyRef, str] | None = None
        primary_score = 0
        matched: list[str] = []
        for ref in book.primary.get(e, ()):
            found = self.where(b, depth, ref, recursion)
            if found is not None:
                primary_score += 1
                matched.append(ref.text)
                if first is None:
                    first = (ref, found)
        if first is None:
            return None
        ref, found = first
        if found.startswith("in "):
            reason = f"key '{ref.text}' {found}"
        else:
            reason = f"{found} (key '{ref.text}')"
        secondary = book.secondary.get(e, ())
        if not secondary:
            return _Match(reason, tuple(matched), primary_score)
        hits = [self.where(b, depth, s, recursion) is not None for s in secondary]
        count = sum(hits)
        ok = {
            Logic.AND_ANY: count > 0,
            Logic.NOT_ALL: count < len(secondary),
            Logic.NOT_ANY: count == 0,
            Logic.AND_ALL: count == len(secondary),
        }[entry.logic]
        if not ok:
            return None
        matched += [s.text for s, hit in zip(secondary, hits, strict=True) if hit]
        score = primary_score
        if entry.logic == Logic.AND_ANY or (
            entry.logic == Logic.AND_ALL and count == len(secondary)
        ):
            score += count
        return _Match(f"{reason}, {entry.logic.value} secondary keys", tuple(matched), score)


Found = tuple[EntryRef, str, tuple[str, ...], int]  # (entry, reason, keys matched, score)


class _Run:
    """One activation's bookkeeping: what was found, admitted, cut or turned down."""

    def __init__(
        self,
        books: Sequence[PreparedBook],
        scan: _Scan,
        outcome: Outcome,
        seed: str,
        turn: _Turn,
    ) -> None:
        self.books = books
        self.scan = scan
        self.outcome = outcome
        self.seed = seed
        self.turn = turn
        self.done: set[EntryRef] = set()  # activated, cut, or failed a roll: never retried
        self.activated: set[EntryRef] = set()
        self.rejected: dict[EntryRef, str] = {}
        self.groups_won: set[str] = set()
        self.used = 0
        self.overflowed = False

    def entry(self, ref: EntryRef) -> Entry:
        return self.books[ref[0]].entries[ref[1]]

    def candidates(
        self, sticky: set[EntryRef], cooling: set[EntryRef], recursion: bool, level: int, clock: int
    ) -> list[Found]:
        """This step's matches, constant entries first, then sticky ones, then by order."""
        found: list[Found] = []
        for ref in sorted(self.scan.candidates - self.done):
            entry = self.entry(ref)
            is_sticky = ref in sticky
            hit: _Match | None
            if entry.constant or is_sticky:
                hit = _Match("constant" if entry.constant else "sticky", (), 0)
            else:
                hit = self.scan.match(ref[0], ref[1], recursion)
            if hit is None:
                continue
            why = _blocked(entry, ref, is_sticky, recursion, level, clock, cooling)
            if why is None and (
                entry.triggers or entry.character_filter_names or entry.character_filter_tags
            ):
                why = self.turn.blocked(entry)
            if why is not None:
                self.rejected[ref] = why
                continue
            found.append((ref, hit.reason, hit.matched, hit.score))
        found.sort(
            key=lambda f: (
                not self.entry(f[0]).constant,
                f[0] not in sticky,
                -self.entry(f[0]).order,
                f[0],
            )
        )
        return found

    def admit(self, found: list[Found], sticky: set[EntryRef], budget: int) -> list[Entry]:
        """Roll, then fit the budget; the entries this step activated."""
        winners = _inclusion_groups(
            self.books, found, sticky, self.groups_won, self.seed, self.outcome.steps, self.rejected
        )
        new: list[Entry] = []
        for ref, reason, matched, _ in found:
            if ref not in winners:
                continue
            book = self.books[ref[0]]
            entry = book.entries[ref[1]]
            self.done.add(ref)
            if (
                entry.use_probability
                and entry.probability < 100
                and ref not in sticky
                and roll(self.seed, book.state_key(ref[1])) >= entry.probability
            ):
                self.rejected[ref] = f"probability roll failed ({entry.probability}%)"
                continue
            if not entry.ignore_budget:
                # Once full, nothing more is counted (a tokenizer's count costs more).
                cost = 0 if self.overflowed else self.turn.count_tokens(entry.content)
                if self.overflowed or self.used + cost > budget:
                    # As in SillyTavern, once the budget is full only ignore-budget
                    # entries still go in.
                    self.overflowed = True
                    self.outcome.cut.append(Skipped(book.book_id, entry.uid, "lorebook budget"))
                    continue
                self.used += cost
            self.activated.add(ref)
            self.groups_won.update(entry.groups)
            self.outcome.activated.append(
                Activated(book.book_id, entry, reason, self.outcome.steps, matched)
            )
            new.append(entry)
        return new


@dataclass(frozen=True, slots=True)
class _Turn:
    """What the turn is, beyond its text: who speaks, what kind of generation, and how
    tokens are counted."""

    character: ActiveCharacter | None
    generation: frozenset[str]
    count_tokens: TokenCounter

    def blocked(self, entry: Entry) -> str | None:
        if entry.triggers:
            why = trigger_block(entry, self.generation)
            if why is not None:
                return why
        if entry.character_filter_names or entry.character_filter_tags:
            return character_block(entry, self.character)
        return None


def activate(
    books: Sequence[PreparedBook],
    window: Sequence[Segment],
    *,
    clock: int,
    timed_state: JSON | None = None,
    seed: str = "",
    budget_tokens: int | None = None,
    character: ActiveCharacter | None = None,
    generation: frozenset[str] = NORMAL,
    count_tokens: TokenCounter = estimate_tokens,
) -> Outcome:
    """Run one activation. `window` is newest first: the player's words (if any), then
    recent messages; an entry with scan depth N reads the N newest (SillyTavern's rule);
    `clock` is the chat's length in messages, for timed effects. `character` is who
    speaks (None: no character, as in a story), `generation` the turn's generation
    types (`filters.generation_types`), `count_tokens` how the budget is counted."""
    book_index = {book.book_id: b for b, book in enumerate(books)}

    def locate(key: str) -> EntryRef | None:
        book_id, _, uid = key.partition(".")
        b = book_index.get(book_id)
        e = books[b].positions.get(uid) if b is not None else None
        return (b, e) if b is not None and e is not None else None

    def lookup(key: str) -> Entry | None:
        found = locate(key)
        return books[found[0]].entries[found[1]] if found else None

    check = timed.check(timed_state or {}, clock, lookup)
    outcome = Outcome(timed=check.state)
    if not books:
        return outcome
    scan = _Scan(books, window)
    sticky = {ref for ref in map(locate, check.sticky) if ref is not None}
    cooling = {ref for ref in map(locate, check.cooldown) if ref is not None}
    scan.candidates |= sticky
    run = _Run(books, scan, outcome, seed, _Turn(character, generation, count_tokens))

    recursive = any(book.settings.recursive for book in books)
    step_limits = [b.settings.max_recursion_steps for b in books if b.settings.max_recursion_steps]
    max_steps = min(max(step_limits, default=HARD_STEP_LIMIT), HARD_STEP_LIMIT)
    # Delay-until-recursion levels open one by one; the first is open from the start.
    levels = sorted(set().union(*(book.delay_levels for book in books)))
    level = levels.pop(0) if levels else 0
    budget = budget_tokens if budget_tokens is not None else DEFAULT_BUDGET_TOKENS
    recursion = False
    while outcome.steps < max_steps:
        outcome.steps += 1
        found = run.candidates(sticky, cooling, recursion, level, clock)
        feed = [e for e in run.admit(found, sticky, budget) if not e.prevent_recursion]
        again = recursive and not run.overflowed and bool(feed)
        if not again and levels:
            again, level = True, levels.pop(0)
        if not again:
            break
        recursion = True
        for entry in feed:
            scan.add_recursion(f"recursion from entry {entry.uid}", entry.content)
        scan.recursion_added()

    outcome.rejected = [
        Skipped(books[b].book_id, books[b].entries[e].uid, why)
        for (b, e), why in sorted(run.rejected.items())
        if (b, e) not in run.activated
    ]
    activated = [(f"{a.book_id}.{a.entry.uid}", a.entry) for a in outcome.activated]
    outcome.timed = timed.record(check.state, clock, activated)
    return outcome


def _blocked(
    entry: Entry,
    ref: EntryRef,
    is_sticky: bool,
    recursion: bool,
    level: int,
    clock: int,
    cooling: set[EntryRef],
) -> str | None:
    """Why an entry may not activate in this step, or None."""
    if not entry.enabled:
        return "disabled"
    if timed.delayed(entry, clock):
        return f"delayed until the chat has {entry.delay} messages"
    if ref in cooling and not is_sticky:
        return "on cooldown"
    if is_sticky:
        return None
    if entry.delay_until_recursion and (not recursion or entry.delay_until_recursion > level):
        return "waits for recursion"
    if recursion and entry.exclude_recursion:
        return "excluded from recursion"
    return None


def _inclusion_groups(
    books: Sequence[PreparedBook],
    found: list[tuple[EntryRef, str, tuple[str, ...], int]],
    sticky: set[EntryRef],
    groups_won: set[str],
    seed: str,
    step: int,
    rejected: dict[EntryRef, str],
) -> set[EntryRef]:
    """The entries that survive their inclusion groups: one per group at most."""
    keep = {f[0] for f in found}
    members: dict[str, list[tuple[EntryRef, int]]] = {}
    for ref, _, _, score in found:
        for group in books[ref[0]].entries[ref[1]].groups:
            members.setdefault(group, []).append((ref, score))

    def drop(ref: EntryRef, why: str, *, first: bool = False) -> None:
        if ref in keep:
            keep.discard(ref)
            # A loser found again in a later step keeps the reason it first lost for.
            if first:
                rejected.setdefault(ref, why)
            else:
                rejected[ref] = why

    for group, listed in members.items():
        entries = {ref: books[ref[0]].entries[ref[1]] for ref, _ in listed}
        stuck = [ref for ref, _ in listed if ref in sticky]
        if stuck:
            for ref, _ in listed:
                if ref not in stuck:
                    drop(ref, f"group '{group}' has a sticky entry")
            continue
        if group in groups_won:
            for ref, _ in listed:
                drop(ref, f"group '{group}' already has an entry", first=True)
            continue
        scoring = any(_scored(books[r[0]], entries[r]) for r, _ in listed)
        alive = [(ref, score) for ref, score in listed if ref in keep]
        if scoring and alive:
            best = max(score for _, score in alive)
            for ref, score in alive:
                if score < best and _scored(books[ref[0]], entries[ref]):
                    drop(ref, f"lost group '{group}' on score")
            alive = [(ref, score) for ref, score in alive if ref in keep]
        if len(alive) <= 1:
            continue
        overrides = [ref for ref, _ in alive if entries[ref].group_override]
        if overrides:
            winner = max(overrides, key=lambda r: entries[r].order)
        else:
            total = sum(entries[ref].group_weight for ref, _ in alive)
            point = roll(seed, "group", group, step) / 100 * total
            winner, running = alive[-1][0], 0.0
            for ref, _ in alive:
                running += entries[ref].group_weight
                if point < running:
                    winner = ref
                    break
        for ref, _ in alive:
            if ref != winner:
                drop(ref, f"lost group '{group}' to entry {entries[winner].uid}")
    return keep


def _scored(book: PreparedBook, entry: Entry) -> bool:
    if entry.use_group_scoring is not None:
        return entry.use_group_scoring
    return book.settings.use_group_scoring
