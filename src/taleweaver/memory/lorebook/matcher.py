"""One Aho-Corasick automaton per book over every plain key, cached per version.

Scanning a window is then one pass over its text, however many entries the
book holds. A second, small automaton holds the required literals of the
book's regex keys, so that only the regexes that may match are searched. An
edit revises the cached book: its base automaton stays, the edited entries'
old keys are masked and their new keys go into a small overlay automaton;
once the overlay grows past OVERLAY_KEYS the book is prepared whole again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace

import ahocorasick

from taleweaver.domain.lorebook import (
    BookSettings,
    Entry,
    PlainKey,
    PreparedBook,
    accepts,
    prepare,
)
from taleweaver.domain.lorebook.literals import Requirement
from taleweaver.domain.lorebook.prepare import Change, KeyIndex, LayeredLiterals, revise

# How the occurrences of one lower-cased key text are checked.
ANYWHERE, WHOLE_WORD, CHECKED = 0, 1, 2
# Prepared books kept per process; a book's new version replaces its old one.
CACHE_SIZE = 64
# Keys in an overlay before a revision prepares the book whole (an overlay is
# rebuilt on every edit, so it must stay small; masking costs nothing per key).
OVERLAY_KEYS = 5_000


class AutomatonIndex:
    """Finds plain keys in text, with each key's case and whole-word rules applied."""

    def __init__(self, keys: Sequence[PlainKey]) -> None:
        self.keys = {key.key_id: key for key in keys}
        self._automaton: ahocorasick.Automaton | None = None
        if not self.keys:
            return
        by_text: dict[str, list[int]] = {}
        for key in keys:
            by_text.setdefault(key.folded, []).append(key.key_id)
        automaton = ahocorasick.Automaton()
        for folded, ids in by_text.items():
            entries = tuple({self.keys[i].entry for i in ids if not self.keys[i].secondary})
            automaton.add_word(folded, (len(folded), tuple(ids), entries, self._mode(ids)))
        automaton.make_automaton()
        self._automaton = automaton

    def revise(
        self, added: Sequence[PlainKey], removed: frozenset[int], entries: frozenset[int]
    ) -> KeyIndex:
        return OverlaidIndex(self, (), frozenset(), frozenset()).revise(added, removed, entries)

    def _mode(self, ids: list[int]) -> int:
        keys = [self.keys[i] for i in ids]
        if any(k.case_sensitive for k in keys):
            return CHECKED
        if not any(k.whole_words for k in keys):
            return ANYWHERE
        if all(k.whole_words and " " not in k.folded for k in keys):
            return WHOLE_WORD
        return CHECKED

    def find(self, text: str) -> tuple[set[int], set[int]]:
        found: set[int] = set()
        entries: set[int] = set()
        if self._automaton is None or not text:
            return found, entries
        folded = text.lower()
        keys = self.keys
        last = len(folded) - 1
        for end, (length, ids, primary, mode) in self._automaton.iter(folded):
            if mode == ANYWHERE:
                found.update(ids)
                entries.update(primary)
                continue
            start = end + 1 - length
            if mode == WHOLE_WORD:
                # Inlined `accepts` for the common case: one word, any case.
                before = folded[start - 1] if start else " "
                after = folded[end + 1] if end < last else " "
                if not (before.isalnum() or before == "_" or after.isalnum() or after == "_"):
                    found.update(ids)
                    entries.update(primary)
                continue
            for key_id in ids:
                key = keys[key_id]
                if key_id not in found and accepts(text, folded, start, end + 1, key):
                    found.add(key_id)
                    if not key.secondary:
                        entries.add(key.entry)
        return found, entries


class OverlaidIndex:
    """A base automaton with some keys masked, plus an overlay of keys added since."""

    def __init__(
        self,
        base: AutomatonIndex,
        overlay: Sequence[PlainKey],
        masked: frozenset[int],
        masked_entries: frozenset[int],
    ) -> None:
        self.base = base
        self.overlay_keys = tuple(overlay)
        self.overlay = AutomatonIndex(overlay)
        self.masked = masked  # key ids of the base's that are gone
        self.masked_entries = masked_entries  # entries all of whose base keys are gone

    def find(self, text: str) -> tuple[set[int], set[int]]:
        found, entries = self.base.find(text)
        if self.masked and found:
            found -= self.masked
            entries -= self.masked_entries
        more, more_entries = self.overlay.find(text)
        found |= more
        entries |= more_entries
        return found, entries

    def revise(
        self, added: Sequence[PlainKey], removed: frozenset[int], entries: frozenset[int]
    ) -> KeyIndex:
        kept = [key for key in self.overlay_keys if key.key_id not in removed]
        return OverlaidIndex(
            self.base,
            kept + list(added),
            self.masked | (removed & self.base.keys.keys()),
            self.masked_entries | entries,
        )


class AutomatonLiterals:
    """Which regex keys' required literals occur in a text, in one automaton pass."""

    def __init__(self, literals: Sequence[tuple[int, Requirement]]) -> None:
        self._automaton: ahocorasick.Automaton | None = None
        # Literal -> the (regex id, part) pairs it meets; a regex with one part needs
        # no counting.
        by_text: dict[str, list[tuple[int, int]]] = {}
        self._parts = {regex_id: len(req) for regex_id, req in literals if len(req) > 1}
        for regex_id, requirement in literals:
            for part, options in enumerate(requirement):
                for option in options:
                    by_text.setdefault(option, []).append((regex_id, part))
        if not by_text:
            return
        automaton = ahocorasick.Automaton()
        for text, pairs in by_text.items():
            automaton.add_word(text, tuple(pairs))
        automaton.make_automaton()
        self._automaton = automaton

    def find(self, folded: str) -> set[int]:
        if self._automaton is None or not folded:
            return set()
        met: set[tuple[int, int]] = set()
        for _, pairs in self._automaton.iter(folded):
            met.update(pairs)
        found = {regex_id for regex_id, _ in met}
        parts = self._parts
        if parts:
            counts: dict[int, int] = {}
            for regex_id, _ in met:
                counts[regex_id] = counts.get(regex_id, 0) + 1
            found = {i for i in found if counts[i] >= parts.get(i, 1)}
        return found


class PreparedBooks:
    """Prepared books by (book id, version): the automaton is built once per version."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._books: OrderedDict[str, tuple[int, PreparedBook]] = OrderedDict()

    def get(self, book_id: str, version: int) -> PreparedBook | None:
        cached = self._books.get(book_id)
        if cached is None or cached[0] != version:
            return None
        self._books.move_to_end(book_id)
        return cached[1]

    def build(
        self,
        book_id: str,
        version: int,
        name: str,
        settings: BookSettings,
        entries: Sequence[Entry],
    ) -> PreparedBook:
        prepared = prepare(book_id, name, settings, entries, AutomatonIndex, AutomatonLiterals)
        self._keep(book_id, version, prepared)
        return prepared

    def revise(self, book_id: str, version: int, changes: Sequence[Change]) -> bool:
        """Apply one edit (the change from `version - 1` to `version`) to the cached
        book, if that is the version cached; whether it was. Otherwise the next
        activation prepares the book whole, from what is stored."""
        cached = self._books.get(book_id)
        if cached is None or cached[0] != version - 1:
            return False
        book = cached[1]
        index = book.index
        overlay = index.overlay_keys if isinstance(index, OverlaidIndex) else ()
        revised = revise(book, changes)
        literals = revised.literal_index
        added_regexes = len(literals.added) if isinstance(literals, LayeredLiterals) else 0
        if len(overlay) + len(revised.keys) - len(book.keys) + added_regexes > OVERLAY_KEYS:
            # Prepared whole again, in the edit's own time (decorators are already
            # applied, and applying them again changes nothing).
            live = [e for p, e in enumerate(revised.entries) if revised.positions.get(e.uid) == p]
            revised = prepare(
                book_id, book.name, book.settings, live, AutomatonIndex, AutomatonLiterals
            )
        self._keep(book_id, version, revised)
        return True

    def rename(self, book_id: str, version: int, name: str) -> None:
        """Carry the cached book to `version` when the edit only renamed it."""
        cached = self._books.get(book_id)
        if cached is not None and cached[0] == version - 1:
            self._keep(book_id, version, replace(cached[1], name=name))

    def _keep(self, book_id: str, version: int, prepared: PreparedBook) -> None:
        self._books[book_id] = (version, prepared)
        self._books.move_to_end(book_id)
        while len(self._books) > self.size:
            self._books.popitem(last=False)

    def forget(self, book_id: str) -> None:
        self._books.pop(book_id, None)
