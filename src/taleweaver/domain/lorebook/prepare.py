"""A book made ready for activation: its keys split into plain and regex, indexed once.

Preparing is the slow part (building the automaton over every plain key); the
matcher caches the result per book version, so activation only scans text. An
edit of a few entries revises a prepared book instead of preparing it again:
the changed entries' old keys are masked and their new ones indexed on their own
(`KeyIndex.revise`), so an edit costs about what it changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from taleweaver.domain.lorebook.decorators import apply_decorators
from taleweaver.domain.lorebook.filters import has_character_filter
from taleweaver.domain.lorebook.keys import PlainKey, parse_regex_key
from taleweaver.domain.lorebook.literals import Requirement, fold, required_literals
from taleweaver.domain.lorebook.model import MAX_SCAN_DEPTH, BookSettings, Entry

NOT_PRIMARY, GONE = -1, -2  # a regex key's owner when it is secondary, or was removed


class KeyIndex(Protocol):
    def find(self, text: str) -> tuple[set[int], set[int]]:
        """The ids of the plain keys that occur in `text` under their own rules, and
        the positions of the entries one of whose primary keys is among them."""
        ...

    def revise(
        self, added: Sequence[PlainKey], removed: frozenset[int], entries: frozenset[int]
    ) -> KeyIndex:
        """This index with keys `removed` (all keys of entry positions `entries`) gone
        and keys `added` found too."""
        ...


class LiteralIndex(Protocol):
    def find(self, folded: str) -> set[int]:
        """The ids of the regex keys all of whose requirements are met in `folded`."""
        ...


IndexFactory = Callable[[Sequence[PlainKey]], KeyIndex]
LiteralFactory = Callable[[Sequence[tuple[int, Requirement]]], LiteralIndex]


class ScanLiterals:
    """A LiteralIndex without an automaton: each key's literals looked for in turn."""

    def __init__(self, literals: Sequence[tuple[int, Requirement]]) -> None:
        self.literals = tuple(literals)

    def find(self, folded: str) -> set[int]:
        return {
            i
            for i, requirement in self.literals
            if all(any(o in folded for o in options) for options in requirement)
        }


class EveryRegex:
    """A LiteralIndex that lets every regex key through: each is searched on every scan,
    as before the prefilter (the reference the prefilter is measured and tested against)."""

    def __init__(self, literals: Sequence[tuple[int, Requirement]]) -> None:
        self.ids = {i for i, _ in literals}

    def find(self, folded: str) -> set[int]:
        return set(self.ids)


class LayeredLiterals:
    """A book's literal index after edits: the one it was prepared with, less the regex
    keys removed since, plus a small index over those added since."""

    def __init__(
        self,
        base: LiteralIndex,
        added: Sequence[tuple[int, Requirement]],
        gone: frozenset[int],
        make_literals: LiteralFactory,
    ) -> None:
        self.base = base
        self.added = tuple(added)
        self.gone = gone
        self.extra = make_literals(self.added)

    def find(self, folded: str) -> set[int]:
        found = self.base.find(folded)
        if self.gone:
            found -= self.gone
        if self.added:
            found |= self.extra.find(folded)
        return found


@dataclass(frozen=True, slots=True)
class KeyRef:
    """A key as its entry lists it: a plain key's id, or a compiled regex and its id."""

    text: str
    key_id: int = -1
    pattern: re.Pattern[str] | None = None
    regex_id: int = -1


@dataclass(frozen=True, slots=True)
class PreparedBook:
    book_id: str
    name: str
    settings: BookSettings
    entries: tuple[Entry, ...]
    keys: tuple[PlainKey, ...]
    index: KeyIndex
    primary: dict[int, tuple[KeyRef, ...]]
    secondary: dict[int, tuple[KeyRef, ...]]
    scan_depth: tuple[int, ...]  # each entry's, resolved against the book's
    constants: tuple[int, ...]
    # Regex keys by id, with the entry each is a primary key of (or NOT_PRIMARY, GONE)
    # and its required literals (None: searched on every scan).
    regexes: tuple[KeyRef, ...]
    regex_owner: tuple[int, ...]
    regex_literals: tuple[Requirement | None, ...]
    literal_index: LiteralIndex
    unfiltered: frozenset[int]  # live regex ids with no literal: always searched
    delay_levels: frozenset[int]
    max_depth: int
    positions: dict[str, int]  # uid -> entry position
    revisions: int = 0  # edits applied since the book was last prepared whole
    make_literals: LiteralFactory = ScanLiterals
    # Entries with a character filter (activation then needs to know who speaks).
    character_filtered: frozenset[int] = frozenset()

    def state_key(self, entry: int) -> str:
        return f"{self.book_id}.{self.entries[entry].uid}"

    def possible(self, text: str) -> set[int]:
        """The regex keys that may match in `text`; the others cannot."""
        if not self.regexes:
            return set()
        return self.literal_index.find(fold(text)) | self.unfiltered

    @property
    def regex_entries(self) -> tuple[int, ...]:
        """Entries with a regex primary key."""
        return tuple(sorted({owner for owner in self.regex_owner if owner >= 0}))


class _Builder:
    """The mutable parts of a prepared book, filled entry by entry."""

    def __init__(self, settings: BookSettings, book: PreparedBook | None = None) -> None:
        self.settings = settings
        self.entries: list[Entry] = list(book.entries) if book else []
        self.keys: list[PlainKey] = list(book.keys) if book else []
        self.primary = dict(book.primary) if book else {}
        self.secondary = dict(book.secondary) if book else {}
        self.depths: list[int] = list(book.scan_depth) if book else []
        self.constants: set[int] = set(book.constants) if book else set()
        self.regexes: list[KeyRef] = list(book.regexes) if book else []
        self.owners: list[int] = list(book.regex_owner) if book else []
        self.literals: list[Requirement | None] = list(book.regex_literals) if book else []
        self.positions = dict(book.positions) if book else {}
        self.filtered: set[int] = set(book.character_filtered) if book else set()
        self.first_new_key = len(self.keys)
        self.book = book
        # What an edit must redo over the whole book: nothing, unless it touches regex
        # keys (the literal index) or delayed entries (the recursion levels).
        self.regexes_changed = book is None
        self.levels_changed = book is None
        self.new_levels: set[int] = set()
        self._known: dict[re.Pattern[str], Requirement | None] | None = None

    def _literals_of(self, pattern: re.Pattern[str]) -> Requirement | None:
        """Worked out once per pattern: an edit does not parse the book's patterns again."""
        if self._known is None:
            self._known = {
                ref.pattern: literals
                for ref, literals in zip(self.regexes, self.literals, strict=True)
                if ref.pattern is not None
            }
        if pattern not in self._known:
            self._known[pattern] = required_literals(pattern)
        return self._known[pattern]

    def _refs(
        self, texts: Sequence[str], entry: int, secondary: bool, case: bool, whole: bool
    ) -> tuple[KeyRef, ...]:
        made: list[KeyRef] = []
        for raw in texts:
            text = raw.strip()
            if not text:
                continue
            pattern = parse_regex_key(text)
            if pattern is not None:
                ref = KeyRef(text, pattern=pattern, regex_id=len(self.regexes))
                self.literals.append(self._literals_of(pattern))
                self.regexes.append(ref)
                self.owners.append(NOT_PRIMARY if secondary else entry)
                self.regexes_changed = True
                made.append(ref)
                continue
            key = PlainKey(len(self.keys), entry, secondary, text, text.lower(), case, whole)
            self.keys.append(key)
            made.append(KeyRef(text, key_id=key.key_id))
        return tuple(made)

    def put(self, position: int, entry: Entry) -> None:
        """Index `entry` at `position` (a new last one, or one whose old keys are gone)."""
        entry = apply_decorators(entry)  # shapes what activation sees; stored entry keeps them
        settings = self.settings
        depth = entry.scan_depth if entry.scan_depth is not None else settings.scan_depth
        if position == len(self.entries):
            self.entries.append(entry)
            self.depths.append(min(depth, MAX_SCAN_DEPTH))
        else:
            self.entries[position] = entry
            self.depths[position] = min(depth, MAX_SCAN_DEPTH)
        self.positions[entry.uid] = position
        if not entry.enabled:
            return
        case = entry.case_sensitive if entry.case_sensitive is not None else settings.case_sensitive
        whole = entry.match_whole_words
        whole = whole if whole is not None else settings.match_whole_words
        self.primary[position] = self._refs(entry.keys, position, False, case, whole)
        if entry.selective and entry.secondary_keys:
            self.secondary[position] = self._refs(entry.secondary_keys, position, True, case, whole)
        if entry.constant:
            self.constants.add(position)
        if has_character_filter(entry):
            self.filtered.add(position)
        self.new_levels.add(entry.delay_until_recursion)

    def drop(self, position: int) -> set[int]:
        """Unindex the entry at `position`; the ids of the plain keys it had."""
        gone: set[int] = set()
        old = self.entries[position]
        self.levels_changed |= old.enabled and bool(old.delay_until_recursion)
        for refs in (self.primary.pop(position, ()), self.secondary.pop(position, ())):
            for ref in refs:
                if ref.regex_id >= 0:
                    self.owners[ref.regex_id] = GONE
                    self.regexes_changed = True
                else:
                    gone.add(ref.key_id)
        self.constants.discard(position)
        self.filtered.discard(position)
        return gone

    def finish(
        self,
        book_id: str,
        name: str,
        index: KeyIndex,
        make_literals: LiteralFactory,
        revisions: int,
    ) -> PreparedBook:
        book = self.book
        live = [i for i, owner in enumerate(self.owners) if owner != GONE]
        literal_index: LiteralIndex
        if book is None:
            filtered = [(i, lit) for i in live if (lit := self.literals[i]) is not None]
            literal_index = make_literals(filtered)
        elif self.regexes_changed:
            literal_index = self._layered(book, make_literals)
        else:
            literal_index = book.literal_index
        unfiltered = frozenset(i for i in live if self.literals[i] is None)
        if self.levels_changed or book is None:
            levels = frozenset(e.delay_until_recursion for e in self.entries if e.enabled)
        else:
            levels = book.delay_levels | self.new_levels
        return PreparedBook(
            book_id=book_id,
            name=name,
            settings=self.settings,
            entries=tuple(self.entries),
            keys=tuple(self.keys),
            index=index,
            primary=self.primary,
            secondary=self.secondary,
            scan_depth=tuple(self.depths),
            constants=tuple(sorted(self.constants)),
            regexes=tuple(self.regexes),
            regex_owner=tuple(self.owners),
            regex_literals=tuple(self.literals),
            literal_index=literal_index,
            unfiltered=unfiltered,
            delay_levels=frozenset(levels - {0}),
            max_depth=max(self.depths, default=self.settings.scan_depth),
            positions=self.positions,
            revisions=revisions,
            make_literals=make_literals,
            character_filtered=frozenset(self.filtered),
        )

    def _layered(self, book: PreparedBook, make_literals: LiteralFactory) -> LayeredLiterals:
        """The literal index after this edit, without rebuilding the book's own."""
        base = book.literal_index
        earlier: tuple[tuple[int, Requirement], ...] = ()
        if isinstance(base, LayeredLiterals):
            earlier = base.added
            base = base.base
        new = [
            (i, lit)
            for i in range(len(book.regexes), len(self.regexes))
            if (lit := self.literals[i]) is not None
        ]
        gone = frozenset(i for i, owner in enumerate(self.owners) if owner == GONE)
        added = [(i, lit) for i, lit in (*earlier, *new) if i not in gone]
        return LayeredLiterals(base, added, gone, make_literals)


def prepare(
    book_id: str,
    name: str,
    settings: BookSettings,
    entries: Sequence[Entry],
    make_index: IndexFactory,
    make_literals: LiteralFactory = ScanLiterals,
) -> PreparedBook:
    builder = _Builder(settings)
    for position, entry in enumerate(entries):
        builder.put(position, entry)
    return builder.finish(book_id, name, make_index(builder.keys), make_literals, 0)


Change = tuple[str, Entry | None]  # (uid, the entry now, or None: deleted)


def revise(book: PreparedBook, changes: Sequence[Change]) -> PreparedBook:
    """`book` after entries were added, replaced or deleted, in the book's own order:
    a replaced entry keeps its place, a new one goes last, as a new stored entry does.

    A deleted entry leaves a disabled placeholder (so positions stay put) that no
    uid points to; activation never sees it.
    """
    builder = _Builder(book.settings, book)
    removed: set[int] = set()
    touched: set[int] = set()
    for uid, entry in changes:
        position = builder.positions.get(uid)
        if position is not None:
            removed |= builder.drop(position)
            touched.add(position)
        if entry is None:
            if position is not None:
                del builder.positions[uid]
                builder.entries[position] = Entry(uid=uid, enabled=False)
                builder.depths[position] = 0
            continue
        builder.put(len(builder.entries) if position is None else position, entry)
    added = builder.keys[builder.first_new_key :]
    index = book.index.revise(added, frozenset(removed), frozenset(touched))
    return builder.finish(
        book.book_id, book.name, index, book.make_literals, book.revisions + len(changes)
    )
