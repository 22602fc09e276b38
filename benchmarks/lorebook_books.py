"""Generated lorebooks shaped like SillyTavern users' books, and chat windows over them.

Entries are named things (people, places) keyed by their name and an epithet; a
share of them (2% by default) have a regex key written as users write them:
alternations with an optional plural, anchored titles, lookaheads, character
classes, possessives, a backreference, and now and then a key on common words
or one with no literal at all. Messages are filler and common words with a few
names mentioned, some of them regex-keyed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from taleweaver.domain.lorebook import Entry, Segment, make_entry

SYLLABLES = (
    "ka", "ri", "mo", "zen", "tha", "vel", "dor", "ish", "ul", "quo", "brin", "sa", "fen",
    "gor", "lys", "tam",
)
COMMON = (
    "sword", "king", "river", "tower", "storm", "ship", "gold", "wolf", "queen", "forest",
    "night", "fire", "gate", "road", "bridge", "temple", "market", "shadow", "crown", "letter",
    "blade", "dragon", "coin", "lord",
)
FILLER = (
    "the", "a", "of", "and", "to", "in", "we", "you", "it", "was", "is", "that", "on", "for",
    "with", "as", "at", "by", "this", "from", "they",
)


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(3, 5))).capitalize()


# Regex keys users write, for an entry called `n` (a name) with alias `a`.
REGEX_SHAPES: tuple[Callable[[str, str, random.Random], str], ...] = (
    lambda n, a, r: rf"/\b(?:{n}|{a})s?\b/i",
    lambda n, a, r: rf"/^The (?:King|Queen) of {n}/m",
    lambda n, a, r: rf"/{n}(?!fly)/i",
    lambda n, a, r: rf"/\b[{n[0]}{n[0].lower()}]{n[1:]}\w*\b/",
    lambda n, a, r: rf"/\b{n}(?:'s)?\s+(?:sword|blade|crown)\b/i",
    lambda n, a, r: rf"/\b{n[:5]}[a-z]*\b/i",
    lambda n, a, r: rf"/(?<!Lord ){n}\b/",
    lambda n, a, r: rf"/\b(\w+) \1 {n}\b/i",
    lambda n, a, r: rf"/{n.upper()}|{a.upper()}/",
)
# Now and then: a key on common words, or one with no literal to look for.
COMMON_SHAPES: tuple[Callable[[str, str, random.Random], str], ...] = (
    lambda n, a, r: rf"/\b(?:{r.choice(COMMON)}|{r.choice(COMMON)})s?\b/i",
    lambda n, a, r: r"/\b[A-Z]\w{12,}\b/",
)


@dataclass(frozen=True, slots=True)
class Generated:
    entries: list[Entry]
    names: list[str]  # every entry's name, in entry order
    regex_names: list[str]  # names of the entries keyed by a regex


def book(size: int, rng: random.Random, *, regex_share: float = 0.02) -> Generated:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < size:
        name = _name(rng)
        if name.lower() not in seen:
            seen.add(name.lower())
            names.append(name)
    every = max(1, round(1 / regex_share)) if regex_share else 0
    entries: list[Entry] = []
    regex_names: list[str] = []
    for i, name in enumerate(names):
        alias = names[(i * 7919 + 1) % size]
        fields: dict[str, object] = {"keys": [name, f"{name} the {rng.choice(COMMON)}"]}
        if i < len(COMMON):  # one entry per common word, so every window has some hits
            fields["keys"] = [COMMON[i]]
        elif every and i % every == 2:
            shapes = COMMON_SHAPES if rng.random() < 0.05 else REGEX_SHAPES
            fields["keys"] = [rng.choice(shapes)(name, alias, rng)]
            regex_names.append(name)
        if i % 50 == 1:
            fields["secondary_keys"] = [rng.choice(COMMON), rng.choice(COMMON)]
            fields["logic"] = rng.choice(["and_any", "not_any", "and_all", "not_all"])
        if i % 40 == 3:
            fields["group"] = f"g{i % 7}"
        if i % 30 == 4:
            fields["probability"] = 60
        mention = f" Allied with {rng.choice(names)}." if i % 20 == 5 else ""
        fields["content"] = f"{name} is a {rng.choice(COMMON)} of old renown.{mention}"
        entries.append(make_entry(str(i), fields))
    return Generated(entries, names, regex_names)


def message(rng: random.Random, generated: Generated, words: int, mentions: int) -> str:
    out = [rng.choice(FILLER + COMMON) for _ in range(words)]
    for _ in range(mentions):
        pool = generated.regex_names if generated.regex_names and rng.random() < 0.3 else None
        name = rng.choice(pool or generated.names)
        if rng.random() < 0.2:
            name = f"The King of {name}" if rng.random() < 0.5 else f"{name}'s sword"
        out.insert(rng.randrange(len(out)), name)
    out[0] = out[0][:1].upper() + out[0][1:]
    return " ".join(out) + "."


def windows(
    rng: random.Random, generated: Generated, count: int, *, words: int = 150
) -> list[list[Segment]]:
    """Scan windows of two chat messages of about `words` words each."""
    return [
        [
            Segment("player message", message(rng, generated, words, 2)),
            Segment("narrator message (1 back)", "\n".join(
                [message(rng, generated, words // 2, 2), message(rng, generated, words // 2, 2)]
            )),
        ]
        for _ in range(count)
    ]
