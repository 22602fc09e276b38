"""A deliberately simple reference for SillyTavern's World Info activation.

Written from SillyTavern's rules (its World Info documentation and the JSON it
writes, see REFERENCE.md), not from Taleweaver's code, and imports none of it:
it reads a World Info file's entries as they are and checks every entry against
the whole scan text with plain string searches and `re`, step by step, the slow
obvious way. `compare.py`-style callers run it beside the engine and count the
activations that differ.

The rules, as SillyTavern applies them:

- The scan text: the `depth` newest messages (the player's words count as the
  newest message), each prefixed with "\\x01" and joined by "\\n"; with recursion,
  the content of entries activated in earlier steps follows, one chunk per step.
  Depth 0 scans nothing (only constant and sticky entries activate).
- A key `/pattern/flags` is a regex (unless the pattern holds an unescaped "/"
  or does not compile) searched in the text as it is; any other key is searched
  lower-cased unless the entry (else the book) is case-sensitive; with whole
  words, a one-word key needs a non-word character (JavaScript's \\W: not
  [A-Za-z0-9_]) or an edge on each side, a key of several words matches anywhere.
- A primary key must match; then secondary keys (when `selective` and present)
  by selectiveLogic: 0 AND ANY (one matches), 1 NOT ALL (one does not), 2 NOT ANY
  (none does), 3 AND ALL (all do).
- Constant entries (and `@@activate` ones, which count as constant) activate
  without keys; disabled ones (and
  `@@dont_activate`) never do. A leading run of `@@...` lines is taken off the
  content.
- Triggers: an entry with triggers activates only for those generation types.
  A character filter with names activates its entry only for a listed character
  (with isExclude, only for others); no character is never listed. A tag filter
  applies only when there is a character (SillyTavern skips it otherwise).
- Timed effects, counted in chat messages: `delay` N keeps an entry out until the
  chat has N messages; `sticky` N keeps it active for N messages after it
  activates (no keys, no probability roll needed); `cooldown` N keeps it out for N
  messages after it activates or after its sticky period ends.
- Recursion (when on): what a step activated (but `preventRecursion` entries) is
  scanned in the next step; `excludeRecursion` entries do not activate in
  recursion steps; `delayUntilRecursion` entries (level N, `true` = 1) only in
  recursion steps once level N is open (levels open one at a time when a step
  finds nothing new to recurse on). A maximum number of steps stops it.
- Each step's new entries, in order (constant first, then sticky, then higher
  `order`, then the book's order), go through inclusion groups (a group with a
  sticky entry keeps only those; a group that already has an entry from an
  earlier step takes no more; group scoring drops scored entries with fewer
  matching keys; groupOverride picks the highest order; else a weighted roll),
  then the probability roll (a failure is final), then the token budget (the
  first entry that does not fit fills it: after that only `ignoreBudget` entries
  go in, and recursion stops).

Rolls are not random here: both sides take the same fixed roll (`fixed_roll`), so
that their results can be compared.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

JSONDict = dict[str, Any]
MATCHER = "\x01"
JOINER = "\n" + MATCHER
_JS_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _js_word(char: str) -> bool:
    """A word character as JavaScript's word class sees one (ASCII only)."""
    return char in _JS_WORD


def fixed_roll(seed: str, *parts: object) -> float:
    """The roll both sides are given: a number in [0, 100) fixed by seed and parts."""
    digest = hashlib.sha256("\x1f".join([seed, *map(str, parts)]).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def count_tokens(text: str) -> int:
    """The tokenizer both sides are given: about four characters a token."""
    return (len(text) + 3) // 4


@dataclass(frozen=True)
class Settings:
    """World Info's global settings, as SillyTavern names them."""

    depth: int = 2
    recursive: bool = False
    case_sensitive: bool = False
    match_whole_words: bool = False
    use_group_scoring: bool = False
    max_recursion_steps: int = 0
    budget: int = 1024


@dataclass
class Turn:
    messages: Sequence[str]  # newest first: the player's words, then older messages
    clock: int  # the chat's length in messages
    seed: str = ""
    character: tuple[Sequence[str], Sequence[str]] | None = None  # (names, tags)
    generation: str = "normal"
    timed: JSONDict = field(default_factory=dict)  # carried from turn to turn


@dataclass
class Result:
    activated: list[tuple[str, int]] = field(default_factory=list)  # (uid, step)
    cut: list[str] = field(default_factory=list)
    timed: JSONDict = field(default_factory=dict)


def parse_regex(key: str) -> re.Pattern[str] | None:
    found = re.match(r"^/([\s\S]+?)/([gimsuy]*)$", key)
    if found is None:
        return None
    pattern, flags = found.groups()
    if re.search(r"(^|[^\\])/", pattern):
        return None
    pattern = pattern.replace("\\/", "/")
    compiled = 0
    for flag in flags:
        compiled |= {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}.get(flag, 0)
    try:
        return re.compile(pattern, compiled)
    except re.error:
        return None


class _Entry:
    """One World Info entry, read straight from its JSON."""

    def __init__(self, raw: JSONDict, position: int) -> None:
        self.uid = str(raw.get("uid", position))
        self.position = position
        self.keys = [str(k) for k in raw.get("key") or []]
        self.secondary = [str(k) for k in raw.get("keysecondary") or []]
        self.selective = raw.get("selective", True)
        self.logic = int(raw.get("selectiveLogic") or 0)
        self.constant = bool(raw.get("constant"))
        self.disabled = bool(raw.get("disable"))
        self.order = int(raw.get("order", 100) or 0)
        self.probability = raw.get("probability", 100)
        self.use_probability = raw.get("useProbability", True)
        self.group = str(raw.get("group") or "")
        self.group_override = bool(raw.get("groupOverride"))
        self.group_weight = raw.get("groupWeight", 100)
        self.group_scoring = raw.get("useGroupScoring")
        self.scan_depth = raw.get("scanDepth")
        self.case_sensitive = raw.get("caseSensitive")
        self.whole_words = raw.get("matchWholeWords")
        self.exclude_recursion = bool(raw.get("excludeRecursion"))
        self.prevent_recursion = bool(raw.get("preventRecursion"))
        delay = raw.get("delayUntilRecursion") or 0
        self.delay_until_recursion = 1 if delay is True else int(delay)
        self.sticky = int(raw.get("sticky") or 0)
        self.cooldown = int(raw.get("cooldown") or 0)
        self.delay = int(raw.get("delay") or 0)
        self.ignore_budget = bool(raw.get("ignoreBudget"))
        where = raw.get("characterFilter") or {}
        self.filter_names = list(where.get("names") or raw.get("characterFilterNames") or [])
        self.filter_tags = list(where.get("tags") or raw.get("characterFilterTags") or [])
        self.filter_exclude = bool(
            where.get("isExclude", raw.get("characterFilterExclude", False))
        )
        self.triggers = list(raw.get("triggers") or [])
        self.content = str(raw.get("content") or "")
        self.decorators: list[str] = []
        if self.content.startswith("@@"):
            self._decorators()

    def _decorators(self) -> None:
        """Leading `@@` lines are decorators; only activate and dont_activate act."""
        lines = self.content.split("\n")
        fallback = False
        for at, line in enumerate(lines):
            if not line.startswith("@@"):
                self.content = "\n".join(lines[at:])
                break
            if line.startswith("@@@") and not fallback:
                continue
            name = line[1:] if line.startswith("@@@") else line
            if name.startswith(("@@activate", "@@dont_activate")):
                self.decorators.append(name)
                fallback = False
            else:
                fallback = True
        else:
            self.content = ""


class _Book:
    def __init__(self, entries: Sequence[JSONDict], settings: Settings) -> None:
        self.entries = [_Entry(raw, p) for p, raw in enumerate(entries)]
        self.settings = settings
        self._texts: dict[tuple[int, int, int], str] = {}
        self._lowered: dict[str, str] = {}

    def text(self, entry: _Entry, turn: Turn, recursed: list[str]) -> str:
        depth = entry.scan_depth if entry.scan_depth is not None else self.settings.depth
        if depth <= 0:
            return ""
        # The same few texts for every entry: joined once per depth and step.
        known = (depth, len(recursed), id(turn))
        if known not in self._texts:
            text = MATCHER + JOINER.join(turn.messages[:depth])
            if recursed:
                text += JOINER + JOINER.join(recursed)
            self._texts[known] = text
        return self._texts[known]

    def lower(self, text: str) -> str:
        if text not in self._lowered:
            self._lowered[text] = text.lower()
        return self._lowered[text]

    def matches(self, text: str, key: str, entry: _Entry) -> bool:
        key = key.strip()
        if not key:
            return False
        pattern = parse_regex(key)
        if pattern is not None:
            return pattern.search(text) is not None
        case = entry.case_sensitive
        if case is None:
            case = self.settings.case_sensitive
        if not case:
            text, key = self.lower(text), key.lower()
        whole = entry.whole_words
        if whole is None:
            whole = self.settings.match_whole_words
        if whole and len(key.split()) == 1:
            # SillyTavern's /(?:^|\W)key(?:$|\W)/, with JavaScript's (ASCII) \W.
            at = text.find(key)
            while at >= 0:
                end = at + len(key)
                if (at == 0 or not _js_word(text[at - 1])) and (
                    end == len(text) or not _js_word(text[end])
                ):
                    return True
                at = text.find(key, at + 1)
            return False
        return key in text

    def score(self, entry: _Entry, text: str) -> int:
        if not entry.keys:
            return 0
        primary = sum(self.matches(text, k, entry) for k in entry.keys)
        secondary = sum(self.matches(text, k, entry) for k in entry.secondary)
        if entry.secondary and entry.logic == 0:
            return primary + secondary
        if entry.secondary and entry.logic == 3 and secondary == len(entry.secondary):
            return primary + secondary
        return primary


def _keyed(book: _Book, entry: _Entry, text: str) -> bool:
    if not any(book.matches(text, key, entry) for key in entry.keys):
        return False
    if not (entry.selective and entry.secondary):
        return True
    hits = [book.matches(text, key, entry) for key in entry.secondary]
    return {
        0: any(hits),
        1: not all(hits),
        2: not any(hits),
        3: all(hits),
    }.get(entry.logic, any(hits))


def _constant(entry: _Entry) -> bool:
    """Constant, or made to activate by `@@activate`: the Character Card V3 spec has
    that decorator make the entry constant, so it goes first as constant entries do."""
    return entry.constant or "@@activate" in entry.decorators


def _filtered_out(entry: _Entry, turn: Turn) -> bool:
    if entry.triggers and turn.generation not in entry.triggers:
        return True
    character = turn.character
    if entry.filter_names:
        names = {n.strip().casefold() for n in character[0]} if character else set()
        listed = any(n.strip().casefold() in names for n in entry.filter_names)
        if listed == entry.filter_exclude:
            return True
    if entry.filter_tags and character is not None:
        tags = {t.strip().casefold() for t in character[1]}
        listed = any(t.strip().casefold() in tags for t in entry.filter_tags)
        if listed == entry.filter_exclude:
            return True
    return False


def _timed(book: _Book, turn: Turn) -> tuple[JSONDict, set[str], set[str]]:
    """Effects after expiring those that ended by now: (state, sticky, cooling)."""
    by_uid = {e.uid: e for e in book.entries}
    state: JSONDict = {"sticky": {}, "cooldown": {}}
    for kind in ("sticky", "cooldown"):
        for uid, (start, end, protected) in (turn.timed.get(kind) or {}).items():
            entry = by_uid.get(uid)
            if turn.clock <= start and not protected:
                continue  # set by a turn that was discarded
            if entry is None or not getattr(entry, kind):
                continue
            if turn.clock >= end:
                if kind == "sticky" and entry.cooldown:
                    state["cooldown"][uid] = (turn.clock, turn.clock + entry.cooldown, True)
                continue
            state[kind].setdefault(uid, (start, end, protected))
    return state, set(state["sticky"]), set(state["cooldown"])


def activate(entries: Sequence[JSONDict], settings: Settings, turn: Turn) -> Result:
    book = _Book(entries, settings)
    state, sticky, cooling = _timed(book, turn)
    result = Result(timed=state)
    levels = sorted({e.delay_until_recursion for e in book.entries if e.delay_until_recursion})
    level = levels.pop(0) if levels else 0
    recursed: list[str] = []
    done: set[int] = set()  # activated, cut or failed their roll
    groups_won: set[str] = set()
    used, overflowed, step = 0, False, 0
    while True:
        step += 1
        recursion = step > 1
        now: list[_Entry] = []
        for entry in book.entries:
            if entry.position in done or entry.disabled or "@@dont_activate" in entry.decorators:
                continue
            if _filtered_out(entry, turn):
                continue
            is_sticky = entry.uid in sticky
            if entry.delay and turn.clock < entry.delay:
                continue
            if entry.uid in cooling and not is_sticky:
                continue
            if entry.delay_until_recursion and not is_sticky and (
                not recursion or entry.delay_until_recursion > level
            ):
                continue
            if recursion and entry.exclude_recursion and not is_sticky:
                continue
            forced = _constant(entry) or is_sticky
            if forced or _keyed(book, entry, book.text(entry, turn, recursed)):
                now.append(entry)
        now.sort(key=lambda e: (not _constant(e), e.uid not in sticky, -e.order, e.position))
        now = _groups(book, now, sticky, groups_won, turn, recursed, step)
        fed: list[str] = []
        for entry in now:
            done.add(entry.position)
            if (
                entry.use_probability
                and entry.probability < 100
                and entry.uid not in sticky
                and fixed_roll(turn.seed, f"book.{entry.uid}") >= entry.probability
            ):
                continue
            if not entry.ignore_budget:
                cost = count_tokens(entry.content)
                if overflowed or used + cost > settings.budget:
                    overflowed = True
                    result.cut.append(entry.uid)
                    continue
                used += cost
            result.activated.append((entry.uid, step))
            if entry.group:
                groups_won.update(g.strip() for g in entry.group.split(",") if g.strip())
            if not entry.prevent_recursion:
                fed.append(entry.content)
        again = settings.recursive and not overflowed and bool(fed)
        if not again and levels:
            again, level = True, levels.pop(0)
        if settings.max_recursion_steps and step >= settings.max_recursion_steps:
            again = False
        if not again or step >= 1000:
            break
        if fed:
            recursed.append("\n".join(fed))
    for uid, _ in result.activated:
        entry = next(e for e in book.entries if e.uid == uid)
        for kind in ("sticky", "cooldown"):
            length = getattr(entry, kind)
            if length and uid not in state[kind]:
                state[kind][uid] = (turn.clock, turn.clock + length, False)
    return result


def _groups(
    book: _Book,
    now: list[_Entry],
    sticky: set[str],
    groups_won: set[str],
    turn: Turn,
    recursed: list[str],
    step: int,
) -> list[_Entry]:
    """The step's entries that survive their inclusion groups."""
    keep = list(now)
    grouped: dict[str, list[_Entry]] = {}
    for entry in now:
        for name in (g.strip() for g in entry.group.split(",")):
            if name:
                grouped.setdefault(name, []).append(entry)
    for name, members in grouped.items():
        members = [e for e in members if e in keep]
        stuck = [e for e in members if e.uid in sticky]
        if stuck:
            keep = [e for e in keep if e not in members or e in stuck]
            continue
        if name in groups_won:
            keep = [e for e in keep if e not in members]
            continue
        if len(members) <= 1:
            continue

        def scored(entry: _Entry) -> bool:
            own = entry.group_scoring
            return book.settings.use_group_scoring if own is None else bool(own)

        if any(scored(e) for e in members):
            scores = {e.position: book.score(e, book.text(e, turn, recursed)) for e in members}
            best = max(scores.values())
            lost = [e for e in members if scored(e) and scores[e.position] < best]
            members = [e for e in members if e not in lost]
            keep = [e for e in keep if e not in lost]
        if len(members) <= 1:
            continue
        overriding = [e for e in members if e.group_override]
        if overriding:
            winner = max(overriding, key=lambda e: e.order)  # the first of the highest
        else:
            total = sum(e.group_weight for e in members)
            point = fixed_roll(turn.seed, "group", name, step) / 100 * total
            winner, running = members[-1], 0.0
            for entry in members:
                running += entry.group_weight
                if point < running:
                    winner = entry
                    break
        keep = [e for e in keep if e not in members or e is winner]
    return keep


Compare = Callable[[Sequence[JSONDict], Settings, Turn], Result]
