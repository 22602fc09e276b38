"""Hashed character and word n-grams: the features that work in every language.

Character n-grams inside word boundaries carry stems across inflection, spelling
and languages ("suicid", "morir", "mourir"), so a model over them needs no word list
per language. Text is folded first: lower case, accents removed, leetspeak undone,
letters held down ("sooooo") shortened, so chat style lands on the same features as
careful prose. Hashing (CRC-32, stable across processes) keeps the model a fixed size.
Words from the earlier turns of the conversation go to their own part of the space:
the same word means less there than in the message being judged.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
import zlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

DIM = 1 << 18
CHAR_SIZES = (2, 3, 4, 5)
CONTEXT_WEIGHT = 0.5
CONTEXT_WORDS = 120  # the end of the conversation is what the message answers
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "@": "a", "$": "s", "5": "s"})
_HELD = re.compile(r"(.)\1{2,}")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)

Features = tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]


def fold(text: str) -> str:
    """Lower case, no accents, no leetspeak, no held letters."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _HELD.sub(r"\1\1", plain.translate(_LEET))


def words(text: str) -> list[str]:
    return _WORD.findall(fold(text))


def _grams(tokens: Sequence[str], prefix: str) -> list[str]:
    grams = [f"{prefix}w:{t}" for t in tokens]
    grams += [f"{prefix}b:{a} {b}" for a, b in itertools.pairwise(tokens)]
    for token in tokens:
        padded = f" {token} "
        for n in CHAR_SIZES:
            grams += [f"{prefix}{padded[i : i + n]}" for i in range(len(padded) - n + 1)]
    return grams


def _hashed(grams: Sequence[str]) -> dict[int, float]:
    counts: dict[int, float] = {}
    for gram in grams:
        index = zlib.crc32(gram.encode("utf-8")) % DIM
        counts[index] = counts.get(index, 0.0) + 1.0
    return counts


def _unit(counts: dict[int, float], norm: float) -> dict[int, float]:
    """Square-rooted counts (repeats are damped) scaled to length `norm`."""
    roots = {i: c**0.5 for i, c in counts.items()}
    length = sum(v * v for v in roots.values()) ** 0.5 or 1.0
    return {i: norm * v / length for i, v in roots.items()}


def featurize(text: str, context: Sequence[str] = ()) -> Features:
    """Sparse features of a message and its conversation: indices and weights.

    The message and its context are scaled apart (the message to length 1, the
    context to CONTEXT_WEIGHT), so a long narration before a short message cannot
    drown what the player wrote.
    """
    features = _unit(_hashed(_grams(words(text), "")), 1.0)
    earlier = [w for turn in context for w in words(turn)][-CONTEXT_WORDS:]
    if earlier:
        for index, value in _unit(_hashed(_grams(earlier, "c:")), CONTEXT_WEIGHT).items():
            features[index] = features.get(index, 0.0) + value
    indices = np.fromiter(features.keys(), np.int64, len(features))
    values = np.fromiter(features.values(), np.float32, len(features))
    return indices, values
