"""One Aho-Corasick automaton per book over every plain key, cached per version.

Scanning a window is then one pass over its text, however many entries the
book holds. A second, small automaton holds the required literals of the
book's regex keys, so that only the regexes that may match are searched. An
edit revises the cached book: its base automaton stays, the edited entries'
old keys are masked and their new keys go into a small overlay automaton;
once the overlay grows past OVERLAY_KEYS the book is prepared whole again.

Preparing a whole book (a cache miss: the first use after start, an import, a
replace, a settings change) never runs on the event loop: `PreparedBooks.ready`
and `PreparedBooks.start` read the book through a loader and prepare it on a
builder thread, one build per book at a time shared by every caller that wants
it. The automaton is built in shards of SHARD_KEYS key texts, so that no single
C call holds the GIL (and so the event loop) for long while the thread builds.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

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
# Distinct key texts per automaton: building one (`make_automaton`, a single C call
# that holds the GIL) then takes tens of milliseconds even at 100,000 entries, and a
# scan pays one more pass over the text per shard (a few microseconds each).
SHARD_KEYS = 20_000
# Keys in an overlay before a revision prepares the book whole (an overlay is
# rebuilt on every edit, so it must stay small; masking costs nothing per key).
OVERLAY_KEYS = 5_000


class AutomatonIndex:
    """Finds plain keys in text, with each key's case and whole-word rules applied."""

    def __init__(self, keys: Sequence[PlainKey]) -> None:
        self.keys = {key.key_id: key for key in keys}
        self._automata: tuple[ahocorasick.Automaton, ...] = ()
        if not self.keys:
            return
        by_text: dict[str, list[int]] = {}
        for key in keys:
            by_text.setdefault(key.folded, []).append(key.key_id)
        texts = list(by_text.items())
        automata: list[ahocorasick.Automaton] = []
        for start in range(0, len(texts), SHARD_KEYS):
            automaton = ahocorasick.Automaton()
            for folded, ids in texts[start : start + SHARD_KEYS]:
                entries = tuple({self.keys[i].entry for i in ids if not self.keys[i].secondary})
                automaton.add_word(folded, (len(folded), tuple(ids), entries, self._mode(ids)))
            automaton.make_automaton()
            automata.append(automaton)
        self._automata = tuple(automata)

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
        if not self._automata or not text:
            return found, entries
        folded = text.lower()
        for automaton in self._automata:
            self._find(automaton, text, folded, found, entries)
        return found, entries

    def _find(
        self,
        automaton: ahocorasick.Automaton,
        text: str,
        folded: str,
        found: set[int],
        entries: set[int],
    ) -> None:
        keys = self.keys
        last = len(folded) - 1
        for end, (length, ids, primary, mode) in automaton.iter(folded):
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


log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Source:
    """A stored book as a loader read it: its version, and what preparing it needs.
    `entries` decodes the stored entries; it runs on the builder thread."""

    version: int
    name: str
    settings: BookSettings
    entries: Callable[[], Sequence[Entry]]
    size: int = 0  # how many entries (0: not known)


# Reads a book as it is stored now (None: it is gone). It runs on the event loop, so
# it should only await the database and leave decoding to `Source.entries`.
Loader = Callable[[str], Awaitable[Source | None]]


class PreparedBooks:
    """Prepared books by (book id, version): the automaton is built once per version.

    Whole builds run on one builder thread, one at a time; `ready` waits for the
    version wanted (or a newer one), `start` only sets a build going, and a build
    under way for a version is shared by everyone who wants that version. A build
    keeps its result only if nothing newer is cached by then (an edit may have
    revised the cached book past it meanwhile).
    """

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._books: OrderedDict[str, tuple[int, PreparedBook]] = OrderedDict()
        # Per book: the build under way and the version it was asked for (it may
        # deliver a newer one: the loader reads what is stored when it runs).
        self._building: dict[str, tuple[int, asyncio.Task[PreparedBook | None]]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[PreparedBook | None]] = set()  # every build under way
        self._forgotten: dict[str, int] = {}  # per deleted book: how often it was forgotten
        self.builds = 0  # whole builds started, for tests and the benchmark

    def get(self, book_id: str, version: int) -> PreparedBook | None:
        cached = self._books.get(book_id)
        if cached is None or cached[0] != version:
            return None
        self._books.move_to_end(book_id)
        return cached[1]

    def newest(self, book_id: str) -> tuple[int, PreparedBook] | None:
        """The cached version of a book, whichever it is."""
        return self._books.get(book_id)

    def build(
        self,
        book_id: str,
        version: int,
        name: str,
        settings: BookSettings,
        entries: Sequence[Entry],
    ) -> PreparedBook:
        """Prepare a book here and now, on the calling thread (tests, benchmarks)."""
        prepared = prepare(book_id, name, settings, entries, AutomatonIndex, AutomatonLiterals)
        self._keep(book_id, version, prepared)
        return prepared

    def start(
        self, book_id: str, version: int, load: Loader
    ) -> asyncio.Task[PreparedBook | None]:
        """The build that gives `version` of the book (or a newer one): the one under
        way if it will, else a new one, started now in the background."""
        under_way = self._building.get(book_id)
        if under_way is not None and under_way[0] >= version:
            return under_way[1]
        task = asyncio.create_task(self._build(book_id, version, load), name=f"lorebook {book_id}")
        self._building[book_id] = (version, task)
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(book_id, done))
        return task

    def building(self, book_id: str) -> asyncio.Task[PreparedBook | None] | None:
        under_way = self._building.get(book_id)
        return under_way[1] if under_way else None

    async def ready(self, book_id: str, version: int, load: Loader) -> PreparedBook | None:
        """`version` of the book or a newer one, built if need be (off the event loop);
        None if the book is gone."""
        cached = self._books.get(book_id)
        if cached is not None and cached[0] >= version:
            return cached[1]
        # Shielded: one caller giving up (a cancelled turn) leaves the build to the rest.
        return await asyncio.shield(self.start(book_id, version, load))

    async def _build(self, book_id: str, version: int, load: Loader) -> PreparedBook | None:
        forgotten = self._forgotten.get(book_id, 0)
        source = await load(book_id)
        if source is None:
            return None
        cached = self._books.get(book_id)
        if cached is not None and cached[0] >= source.version:
            return cached[1]  # an edit revised the cached book this far meanwhile
        self.builds += 1
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="lorebook-build")
        loop = asyncio.get_running_loop()
        prepared = await loop.run_in_executor(
            self._executor, _prepare_source, book_id, source
        )
        cached = self._books.get(book_id)
        if cached is not None and cached[0] >= source.version:
            return cached[1]
        if self._forgotten.get(book_id, 0) == forgotten:  # not deleted while it was built
            self._keep(book_id, source.version, prepared, release=True)
        return prepared

    def _finished(self, book_id: str, task: asyncio.Task[PreparedBook | None]) -> None:
        self._tasks.discard(task)
        under_way = self._building.get(book_id)
        if under_way is not None and under_way[1] is task:
            del self._building[book_id]
        if not task.cancelled() and task.exception() is not None:
            # Whoever awaits it gets the error; a background build only logs it.
            log.warning("preparing lorebook %s failed: %r", book_id, task.exception())

    async def settle(self) -> None:
        """Wait for the builds under way (tests; closing)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Stop the builds under way (their thread finishes the one it is on, unused)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._building.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

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

    def _keep(
        self, book_id: str, version: int, prepared: PreparedBook, *, release: bool = False
    ) -> None:
        """Cache `prepared`; with `release`, a version it replaces (not a revision of it,
        which shares most of its parts) is freed a slice at a time on the builder thread."""
        old = self._books.get(book_id)
        self._books[book_id] = (version, prepared)
        self._books.move_to_end(book_id)
        if release and old is not None:
            self._release(old[1])
        del old
        while len(self._books) > self.size:
            self._release(self._books.popitem(last=False)[1][1])

    def _release(self, book: PreparedBook) -> None:
        if self._executor is not None:
            self._executor.submit(_free, [book])

    def forget(self, book_id: str) -> None:
        """Drop the book (deleted): what a build under way gives is not kept."""
        gone = self._books.pop(book_id, None)
        if gone is not None:
            self._release(gone[1])
        del gone
        self._building.pop(book_id, None)
        self._forgotten[book_id] = self._forgotten.get(book_id, 0) + 1


FREE_SLICE = 200
FREEZE_ENTRIES = 5_000
BUILD_SWITCH_S = 0.0005
FREE_WAIT_S = 5.0


def _free(holder: list[PreparedBook]) -> None:
    """Free a prepared book a slice of entries and keys at a time (on the builder
    thread). Dropped at once, a 100,000-entry book is one cascade of deallocations
    that holds the GIL, and so the event loop, for a few hundred milliseconds; this
    way the GIL changes hands between slices. A turn under way may still hold the
    book: it is waited for (a while), so that its letting go frees nothing."""
    book = holder.pop()
    waited = 0.0
    while sys.getrefcount(book) > 2 and waited < FREE_WAIT_S:  # this frame's and the call's
        time.sleep(0.01)
        waited += 0.01
    index = book.index
    pieces: list[list[object]] = [
        list(book.entries),
        list(book.keys),
        list(book.primary.values()),
        list(book.secondary.values()),
        list(book.positions.items()),
        list(book.regexes),
    ]
    if isinstance(index, AutomatonIndex):
        pieces.append(list(index.keys.values()))
        pieces += [[automaton] for automaton in index._automata]  # one shard at a time
    interval = sys.getswitchinterval()
    sys.setswitchinterval(BUILD_SWITCH_S)  # as for a build: see `_prepare_source`
    try:
        del book, index
        for piece in pieces:
            while piece:
                del piece[-FREE_SLICE:]
    finally:
        sys.setswitchinterval(interval)


def _prepare_source(book_id: str, source: Source) -> PreparedBook:
    """On the builder thread: decode the entries and prepare the book.

    For a big book (FREEZE_ENTRIES entries or more) the GIL changes hands every
    BUILD_SWITCH_S rather than every 5 ms, and the cyclic garbage collector is
    off meanwhile: such a book is millions of new objects, and each collection that
    ran over them would hold the GIL, and so the event loop, for up to a second.
    What is alive once the book is built is then frozen (`gc.freeze`: moved out of
    the generations collections traverse): a prepared book lives until its next
    version, holds no reference cycles, and is freed by reference counting all the
    same; the cost is that cyclic garbage alive at that moment waits for
    `gc.unfreeze` to be collected."""
    if source.size < FREEZE_ENTRIES:
        return prepare(
            book_id,
            source.name,
            source.settings,
            source.entries(),
            AutomatonIndex,
            AutomatonLiterals,
        )
    enabled = gc.isenabled()
    gc.disable()
    # Other threads (the event loop, the database driver's) wait at most this long for
    # the GIL while the build holds it; at the default 5 ms, a turn's dozen database
    # round trips, each a couple of handovers, wait about 100 ms in all.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(BUILD_SWITCH_S)
    try:
        entries = source.entries()
        return prepare(
            book_id, source.name, source.settings, entries, AutomatonIndex, AutomatonLiterals
        )
    finally:
        sys.setswitchinterval(interval)
        gc.freeze()
        if enabled:
            gc.enable()
