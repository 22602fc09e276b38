"""Reading prose: wiki links and tags in entries, words for keyword queries, and
the heuristic extractor's patterns (used when no model extracts)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_LINK = re.compile(r"\[\[([^\[\]|]{1,200})(?:\|([^\[\]]{0,200}))?\]\]")
_TAG = re.compile(r"(?<![\w#&])#([A-Za-z][\w:/-]{0,59})")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)
# A run of capitalised words ("Mira Vance", "the Iron Court" -> "Iron Court").
_NAME = re.compile(r"\b([A-Z][\w'-]+(?:\s+(?:of|the|de|van|von)?\s*[A-Z][\w'-]+)*)")
_IS_A = re.compile(
    r"\b([A-Z][\w'-]+(?:\s+[A-Z][\w'-]+)*)\s+(?:is|was)\s+(?:an?|the)\s+([^.,;:!?\n]{2,80})"
)
_LIVES = re.compile(
    r"\b([A-Z][\w'-]+(?:\s+[A-Z][\w'-]+)*)\s+(?:lives|lived|dwells|rules|ruled)\s+in\s+"
    r"(?:the\s+)?([A-Z][\w'-]+(?:\s+[A-Z][\w'-]+)*)"
)
_DIED = re.compile(
    r"\b([A-Z][\w'-]+(?:\s+[A-Z][\w'-]+)*)\s+(?:is|was)\s+(?:dead|slain|killed)|"
    r"\b([A-Z][\w'-]+(?:\s+[A-Z][\w'-]+)*)\s+(?:dies|died)\b"
)

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "here",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "she",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "to",
        "too",
        "up",
        "us",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
        "do",
        "does",
        "did",
        "go",
        "goes",
        "went",
        "can",
        "could",
        "would",
        "should",
        "may",
        "might",
        "one",
        "two",
        "yes",
        "all",
        "any",
        "some",
        "out",
        "over",
        "under",
        "again",
        "very",
        "just",
        "like",
        "now",
    ]
)
# Capitalised words that start sentences but name nothing.
NOT_NAMES = frozenset(
    [
        "The",
        "A",
        "An",
        "And",
        "But",
        "Then",
        "When",
        "Where",
        "What",
        "Who",
        "Why",
        "How",
        "You",
        "Your",
        "I",
        "It",
        "Its",
        "He",
        "She",
        "They",
        "We",
        "This",
        "That",
        "These",
        "Those",
        "There",
        "Here",
        "Scene",
        "Choices",
        "Continue",
        "Yes",
        "No",
        "Perhaps",
        "Maybe",
        "Somewhere",
        "Suddenly",
        "Meanwhile",
        "Outside",
        "Inside",
        "Above",
        "Below",
        "Nothing",
        "Everything",
        "Someone",
        "Something",
    ]
)


def wiki_links(text: str) -> list[str]:
    """The targets of `[[Target]]` and `[[Target|label]]`, in order, once each."""
    seen: list[str] = []
    for match in _LINK.finditer(text):
        target = " ".join(match.group(1).split())
        if target and target not in seen:
            seen.append(target)
    return seen


def hashtags(text: str) -> list[str]:
    found: list[str] = []
    for match in _TAG.finditer(text):
        tag = match.group(1).lower()
        if tag not in found:
            found.append(tag)
    return found


def keywords(text: str, *, limit: int = 24) -> list[str]:
    """Distinct content words, proper nouns first, for a keyword query."""
    words = _WORD.findall(text)
    capitalised = [w for w in words if w[0].isupper() and w not in NOT_NAMES]
    rest = [w for w in words if w.casefold() not in STOPWORDS and len(w) > 2]
    ordered: list[str] = []
    seen: set[str] = set()
    for word in [*reversed(capitalised), *reversed(rest)]:  # recent words first
        key = word.casefold()
        if key not in seen and key not in STOPWORDS:
            seen.add(key)
            ordered.append(word)
    return ordered[:limit]


def proper_nouns(text: str) -> set[str]:
    """Capitalised words that are not sentence-starting fillers, case-folded."""
    return {w.casefold() for w in _WORD.findall(text) if w[0].isupper() and w not in NOT_NAMES}


def mentions(text: str, names: list[str]) -> bool:
    """Whether any of `names` appears in `text` as whole words (case-insensitive)."""
    folded = text.casefold()
    for name in names:
        needle = name.casefold()
        if needle and re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", folded):
            return True
    return False


@dataclass(slots=True)
class Guess:
    """What the heuristic extractor found in one reply."""

    names: list[str] = field(default_factory=list)
    # (name, what it is): "Mira is a smuggler" -> ("Mira", "smuggler")
    descriptions: list[tuple[str, str]] = field(default_factory=list)
    # (name, place)
    residences: list[tuple[str, str]] = field(default_factory=list)
    deaths: list[str] = field(default_factory=list)


def guess(text: str) -> Guess:
    found = Guess()
    for match in _NAME.finditer(text):
        name = match.group(1).strip()
        first = name.split()[0]
        if first in NOT_NAMES:
            name = " ".join(name.split()[1:])
        if len(name) < 3 or name in NOT_NAMES or name.casefold() in STOPWORDS:
            continue
        if _sentence_start(text, match.start()) and " " not in name:
            continue  # a lone capitalised first word is usually just a sentence start
        if name not in found.names:
            found.names.append(name)
    for match in _IS_A.finditer(text):
        name, what = match.group(1), match.group(2).strip()
        if name.split()[0] not in NOT_NAMES:
            found.descriptions.append((name, what))
            if name not in found.names:
                found.names.append(name)
    for match in _LIVES.finditer(text):
        found.residences.append((match.group(1), match.group(2)))
    for match in _DIED.finditer(text):
        name = match.group(1) or match.group(2)
        if name and name.split()[0] not in NOT_NAMES:
            found.deaths.append(name)
    return found


def _sentence_start(text: str, at: int) -> bool:
    before = text[:at].rstrip()
    return not before or before[-1] in ".!?\n\"'"
