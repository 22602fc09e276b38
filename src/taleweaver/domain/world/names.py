"""Which known entity a name in a reply means: "Malvek" is "Lord Malvek".

Tried in order, the first tier with exactly one candidate wins (two or more is
ambiguous, and nothing is linked):
1. the name, or one of the entity's aliases, equal once case and titles are set aside;
2. the name's words all among the entity's name words ("Malvek" in "Lord Malvek");
3. a fuzzy match of the two (a typo, a spelling variant): the same first letter and
   rapidfuzz's ratio at least 80 (one letter off in a six-letter name is 83).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz

FUZZY_LINK = 80.0
TITLES = frozenset(
    {
        "the", "a", "an", "lord", "lady", "sir", "dame", "king", "queen", "prince", "princess",
        "duke", "duchess", "baron", "baroness", "count", "countess", "earl", "captain", "capt",
        "master", "mistress", "doctor", "dr", "mr", "mrs", "ms", "miss", "father", "mother",
        "brother", "sister", "saint", "st", "elder", "young", "old", "general", "commander",
    }
)


@dataclass(frozen=True, slots=True)
class NameMatch:
    entity: dict[str, Any]
    # "title" (the same name with or without a title or alias), "words", or "fuzzy".
    how: str
    score: float


def words(name: str) -> list[str]:
    return re.sub(r"[^\w\s]", " ", name.casefold()).split()


def core(name: str) -> str:
    """The name without titles and articles ("Lord Malvek" -> "malvek")."""
    kept = [w for w in words(name) if w not in TITLES]
    return " ".join(kept or words(name))


def _labels(entity: dict[str, Any]) -> list[str]:
    return [str(entity["name"]), *(str(a) for a in entity.get("aliases") or [])]


def _only(found: list[NameMatch]) -> NameMatch | None:
    ids = {m.entity["id"] for m in found}
    return found[0] if len(ids) == 1 else None


def match_name(name: str, entities: Sequence[dict[str, Any]]) -> NameMatch | None:
    """The one entity (with "id", "name", "aliases") that `name` most likely means."""
    wanted = core(name)
    if not wanted:
        return None
    same = [
        NameMatch(e, "title", 100.0)
        for e in entities
        if any(core(label) == wanted for label in _labels(e))
    ]
    if same:
        return _only(same)
    tokens = set(wanted.split())
    within = [
        NameMatch(e, "words", 100.0)
        for e in entities
        if any(tokens < set(core(label).split()) for label in _labels(e))
    ]
    if within:
        return _only(within)
    fuzzy = []
    for entity in entities:
        score = max(
            fuzz.ratio(wanted, cored) if cored[:1] == wanted[:1] else 0.0
            for cored in (core(label) for label in _labels(entity))
        )
        if score >= FUZZY_LINK:
            fuzzy.append(NameMatch(entity, "fuzzy", round(score, 1)))
    if not fuzzy:
        return None
    best = max(m.score for m in fuzzy)
    return _only([m for m in fuzzy if m.score == best])


__all__ = ["FUZZY_LINK", "NameMatch", "core", "match_name"]
