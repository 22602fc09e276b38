"""One Aho-Corasick automaton per book version over every plain key, cached.

Scanning a window is then one pass over its text, however many entries the
book holds; only regex keys are tried one by one (in the activation itself).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import ahocorasick

from taleweaver.domain.lorebook import (
    BookSettings,
    Entry,
    PlainKey,
    PreparedBook,
    accepts,
    prepare,
)

# How the occurrences of one lower-cased key text are checked.
ANYWHERE, WHOLE_WORD, CHECKED = 0, 1, 2
# Prepared books kept per process; a book's new version replaces its old one.
CACHE_SIZE = 64


class AutomatonIndex:
    """Finds plain keys in text, with each key's case and whole-word rules applied."""

    def __init__(self, keys: Sequence[PlainKey]) -> None:
        self.keys = tuple(keys)
        self._automaton: ahocorasick.Automaton | None = None
        if not self.keys:
            return
        by_text: dict[str, list[int]] = {}
        for key in self.keys:
            by_text.setdefault(key.folded, []).append(key.key_id)
        automaton = ahocorasick.Automaton()
        for folded, ids in by_text.items():
            entries = tuple({self.keys[i].entry for i in ids if not self.keys[i].secondary})
            automaton.add_word(folded, (len(folded), tuple(ids), entries, self._mode(ids)))
        automaton.make_automaton()
        self._automaton = automaton

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
        prepared = prepare(book_id, name, settings, entries, AutomatonIndex)
        self._books[book_id] = (version, prepared)
        self._books.move_to_end(book_id)
        while len(self._books) > self.size:
            self._books.popitem(last=False)
        return prepared

    def forget(self, book_id: str) -> None:
        self._books.pop(book_id, None)
