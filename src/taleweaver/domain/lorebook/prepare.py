"""A book made ready for activation: its keys split into plain and regex, indexed once.

Preparing is the slow part (building the automaton over every plain key); the
matcher caches the result per book version, so activation only scans text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from taleweaver.domain.lorebook.decorators import apply_decorators
from taleweaver.domain.lorebook.keys import PlainKey, parse_regex_key
from taleweaver.domain.lorebook.model import MAX_SCAN_DEPTH, BookSettings, Entry


class KeyIndex(Protocol):
    def find(self, text: str) -> tuple[set[int], set[int]]:
        """The ids of the plain keys that occur in `text` under their own rules, and
        the positions of the entries one of whose primary keys is among them."""
        ...


@dataclass(frozen=True, slots=True)
class KeyRef:
    """A key as its entry lists it: a plain key's id, or a compiled regex."""

    text: str
    key_id: int = -1
    pattern: re.Pattern[str] | None = None


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
    regex_entries: tuple[int, ...]  # entries with a regex primary key: tried every scan
    delay_levels: frozenset[int]
    max_depth: int
    positions: dict[str, int]  # uid -> entry position

    def state_key(self, entry: int) -> str:
        return f"{self.book_id}.{self.entries[entry].uid}"


IndexFactory = Callable[[Sequence[PlainKey]], KeyIndex]


def _refs(
    keys: list[PlainKey],
    texts: Sequence[str],
    entry: int,
    secondary: bool,
    case_sensitive: bool,
    whole_words: bool,
) -> tuple[KeyRef, ...]:
    """An entry's keys as refs; each plain one is appended to `keys`."""
    made: list[KeyRef] = []
    for raw in texts:
        text = raw.strip()
        if not text:
            continue
        pattern = parse_regex_key(text)
        if pattern is not None:
            made.append(KeyRef(text, pattern=pattern))
            continue
        key = PlainKey(len(keys), entry, secondary, text, text.lower(), case_sensitive, whole_words)
        keys.append(key)
        made.append(KeyRef(text, key_id=key.key_id))
    return tuple(made)


def prepare(
    book_id: str,
    name: str,
    settings: BookSettings,
    entries: Sequence[Entry],
    make_index: IndexFactory,
) -> PreparedBook:
    # Decorators shape the entry activation sees; the stored entry keeps them.
    entries = [apply_decorators(entry) for entry in entries]
    keys: list[PlainKey] = []
    primary: dict[int, tuple[KeyRef, ...]] = {}
    secondary: dict[int, tuple[KeyRef, ...]] = {}
    depths: list[int] = []
    constants: list[int] = []
    regex_entries: list[int] = []
    levels: set[int] = set()
    for position, entry in enumerate(entries):
        depth = entry.scan_depth if entry.scan_depth is not None else settings.scan_depth
        depths.append(min(depth, MAX_SCAN_DEPTH))
        if not entry.enabled:
            continue
        case = entry.case_sensitive if entry.case_sensitive is not None else settings.case_sensitive
        whole = (
            entry.match_whole_words
            if entry.match_whole_words is not None
            else settings.match_whole_words
        )

        primary[position] = _refs(keys, entry.keys, position, False, case, whole)
        if entry.selective and entry.secondary_keys:
            secondary[position] = _refs(keys, entry.secondary_keys, position, True, case, whole)
        if entry.constant:
            constants.append(position)
        if any(ref.pattern is not None for ref in primary[position]):
            regex_entries.append(position)
        if entry.delay_until_recursion:
            levels.add(entry.delay_until_recursion)
    return PreparedBook(
        book_id=book_id,
        name=name,
        settings=settings,
        entries=tuple(entries),
        keys=tuple(keys),
        index=make_index(keys),
        primary=primary,
        secondary=secondary,
        scan_depth=tuple(depths),
        constants=tuple(constants),
        regex_entries=tuple(regex_entries),
        delay_levels=frozenset(levels),
        max_depth=max(depths, default=settings.scan_depth),
        positions={entry.uid: position for position, entry in enumerate(entries)},
    )
