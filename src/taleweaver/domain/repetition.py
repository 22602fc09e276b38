"""Telling, as a reply streams, that it has started repeating itself.

Small models fall into loops ("I'm going to make it into a waterproof map case."
thirty times over). A loop shows as a sentence said again (word for word, or
nearly: most of its words the same) or as a run of words that keeps coming back
even without sentence breaks. `LoopDetector` is fed the stream piece by piece and
says where the repetition began, so the reply can be cut there.
"""

from __future__ import annotations

import re
from collections import Counter

__all__ = ["LoopDetector", "find_loop"]

# A sentence ends at ., !, ? or an ellipsis (closing quotes kept with it), or at a line break.
_SENTENCE = re.compile(r"[^.!?\u2026\n]*(?:[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s)|\n)")
_WORD = re.compile(r"[\w']+")
# Where a sentence may end: the sentence pattern is only tried once one is in sight
# (tried on every piece, it rescanned the unfinished sentence each time).
_END = re.compile(r"[.!?\u2026\n]")
# Sentences shorter than this ("Yes." "You wait.") may fairly come back.
MIN_SENTENCE_WORDS = 4
# Two sentences sharing this share of their words are the same sentence said again.
NEAR_DUPLICATE = 0.85
# A run of this many words seen this many times is a loop, punctuation or not.
RUN_WORDS = 6
RUN_REPEATS = 3


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _alike(a: frozenset[str], b: frozenset[str]) -> bool:
    return len(a & b) / len(a | b) >= NEAR_DUPLICATE


class LoopDetector:
    """Feed text in as it streams; `loop_at` is set once the text repeats itself.

    `loop_at` is the offset, in everything fed, where the repetition starts: what
    comes before it is the reply worth keeping.
    """

    def __init__(self) -> None:
        self.text = ""
        self.loop_at: int | None = None
        self._checked = 0  # sentences before this offset have been looked at
        self._sentences: list[frozenset[str]] = []
        self._seen_exact: set[tuple[str, ...]] = set()
        self._runs: Counter[tuple[str, ...]] = Counter()
        self._run_starts: dict[tuple[str, ...], list[int]] = {}
        self._words: list[tuple[str, int]] = []  # (word, offset) of complete words
        self._word_scan = 0
        self._end_in_sight = False  # a sentence end after `_checked` has been fed

    @property
    def looping(self) -> bool:
        return self.loop_at is not None

    def feed(self, piece: str) -> bool:
        """Add a piece of the stream; True once the text has started looping."""
        if self.loop_at is not None:
            return True
        self.text += piece
        self._end_in_sight = self._end_in_sight or _END.search(piece) is not None
        if self._end_in_sight:
            self._check_sentences()
            self._end_in_sight = _END.search(self.text, self._checked) is not None
        if self.loop_at is None:
            self._check_runs()
        return self.loop_at is not None

    def kept(self) -> str:
        """The text before the repetition (all of it when there is none)."""
        return self.text if self.loop_at is None else self.text[: self.loop_at].rstrip()

    def _check_sentences(self) -> None:
        for match in _SENTENCE.finditer(self.text, self._checked):
            self._checked = match.end()
            words = _words(match.group())
            if len(words) < MIN_SENTENCE_WORDS:
                continue
            exact, bag = tuple(words), frozenset(words)
            if exact in self._seen_exact or any(_alike(bag, seen) for seen in self._sentences):
                self.loop_at = match.start()
                return
            self._seen_exact.add(exact)
            self._sentences.append(bag)

    def _check_runs(self) -> None:
        # Only words followed by a separator are complete; the last one may still grow.
        for match in _WORD.finditer(self.text, self._word_scan):
            if match.end() == len(self.text):
                break
            self._word_scan = match.end()
            self._words.append((match.group().lower(), match.start()))
            if len(self._words) < RUN_WORDS:
                continue
            run = tuple(w for w, _ in self._words[-RUN_WORDS:])
            start = self._words[-RUN_WORDS][1]
            self._runs[run] += 1
            starts = self._run_starts.setdefault(run, [])
            starts.append(start)
            if self._runs[run] >= RUN_REPEATS:
                self.loop_at = starts[1]  # keep the first time it was said
                return


def find_loop(text: str) -> int | None:
    """Where `text` starts repeating itself, or None when it does not."""
    detector = LoopDetector()
    detector.feed(text + "\n")
    return detector.loop_at
