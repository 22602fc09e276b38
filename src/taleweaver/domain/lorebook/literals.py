"""Required literals of a regex key: strings one of which every match must contain.

A book's regex keys are not all searched on every scan: a key is searched only
when one of its required literals occurs in the (folded) text, which one pass of
a multi-string automaton tells for every key at once. The literals come from
Python's own parse of the pattern (`re._parser`), so they hold for exactly what
`re` matches: a literal is a run of characters every match consumes, through
groups, alternations (one literal per branch), small character classes and
repeats of at least one. Lookarounds, anchors and word boundaries consume
nothing; backreferences, wide classes and optional parts end a run. A pattern
with no such run (`/.*/`, `/(\\w)\\1/`) is searched every time, as before.

Folding: only printable ASCII characters go into a literal, and both literal and
text are lower-cased; under IGNORECASE `re` also lets four non-ASCII letters
match ASCII ones, so the text maps those first. A literal found this way may
still not match (case, lookarounds): `re` always has the last word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from re import _constants as sre  # type: ignore[attr-defined,unused-ignore]
from re import _parser  # type: ignore[attr-defined,unused-ignore]
from typing import Any

# The non-ASCII characters `re` matches to ASCII letters under IGNORECASE
# (capital I with dot and dotless i -> i, long s -> s, the Kelvin sign -> k); a test
# recomputes this from `re` itself.
IGNORECASE_ASCII = {0x130: "i", 0x131: "i", 0x17F: "s", 0x212A: "k"}
_FOLD = str.maketrans(IGNORECASE_ASCII)
# Alternatives kept for one node (a cross product of branches grows fast).
MAX_ALTERNATIVES = 32
# A character class is spelled out into its characters only when it is this small.
MAX_CLASS = 4

Literals = frozenset[str]
Requirement = tuple[Literals, ...]  # one string of each set occurs in every match
# Sets kept per key: two independent literals (a prefix and a suffix) filter far
# better than either alone.
REQUIRED_PARTS = 2
# A second set's strings are at least this long: shorter ones occur in nearly any
# text, and looking for them costs more than they save.
MIN_EXTRA_PART = 3
_EMPTY: Literals = frozenset({""})
_ZERO_WIDTH = {sre.AT, sre.ASSERT, sre.ASSERT_NOT}
_REPEATS = {sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT)}


def fold(text: str) -> str:
    """Text as literals are looked for in it."""
    return text.translate(_FOLD).lower()


@dataclass(frozen=True, slots=True)
class _Info:
    exact: Literals | None  # every string the node can match, when few and known
    required: Literals | None  # one of these is in every match; None: nothing known


_UNKNOWN = _Info(None, None)


def _score(options: Literals | None) -> tuple[int, int]:
    """Better requirements have longer shortest strings, then fewer of them."""
    if not options:
        return (0, 0)
    return (min(map(len, options)), -len(options))


def _best(candidates: Iterable[Literals | None]) -> Literals | None:
    best = max(candidates, key=_score, default=None)
    return best if best and _score(best)[0] > 0 else None


def _char(code: int) -> str | None:
    return chr(code).lower() if 0x20 <= code <= 0x7E else None


def _node(op: Any, av: Any) -> _Info:
    if op == sre.LITERAL:
        char = _char(av)
        return _UNKNOWN if char is None else _Info(frozenset({char}), None)
    if op == sre.IN:
        chars = [_char(code) if kind == sre.LITERAL else None for kind, code in av]
        if len(chars) > MAX_CLASS or any(c is None for c in chars):
            return _UNKNOWN
        return _Info(frozenset(c for c in chars if c is not None), None)
    if op in _ZERO_WIDTH:
        return _Info(_EMPTY, None)
    if op == sre.SUBPATTERN:
        return _sequence(av[-1])
    if op == getattr(sre, "ATOMIC_GROUP", None):
        return _sequence(av)
    if op == sre.BRANCH:
        branches = [_sequence(items) for items in av[1]]
        exact: Literals | None = None
        if all(b.exact is not None for b in branches):
            exact = frozenset().union(*(b.exact or () for b in branches))
        needs = [b.exact if b.exact is not None else b.required for b in branches]
        required: Literals | None = None
        if all(_score(n)[0] > 0 for n in needs):
            required = frozenset().union(*(n or () for n in needs))
        return _Info(_capped(exact), _capped(required))
    if op in _REPEATS:
        low, high, items = av
        body = _sequence(items)
        if low == 0:
            return _UNKNOWN
        if low == high == 1:
            return body
        return _Info(None, body.exact if body.exact is not None else body.required)
    return _UNKNOWN  # any character, categories, backreferences, conditionals


def _capped(options: Literals | None) -> Literals | None:
    return options if options is not None and len(options) <= MAX_ALTERNATIVES else None


def _split(items: Sequence[Any]) -> tuple[Literals | None, list[Literals | None]]:
    """A run of nodes: every string it can match (when few and known), and the
    requirements of its parts, all of which hold at once (exact runs are joined)."""
    parts: list[Literals | None] = []
    run: Literals | None = _EMPTY
    whole = True
    for op, av in items:
        info = _node(op, av)
        if info.exact is not None and run is not None:
            joined = frozenset(a + b for a in run for b in info.exact)
            if len(joined) <= MAX_ALTERNATIVES:
                run = joined
                continue
        whole = False
        parts.append(run)
        run = info.exact
        if info.exact is None:
            parts.append(info.required)
            run = _EMPTY
    parts.append(run)
    return (run if whole else None), parts


def _sequence(items: Sequence[Any]) -> _Info:
    exact, parts = _split(items)
    return _Info(exact, _best(parts))


def required_literals(pattern: re.Pattern[str]) -> Requirement | None:
    """Sets of folded strings such that every match of `pattern` contains one string of
    each set (at most REQUIRED_PARTS sets, the most selective), or None when nothing
    is known (the pattern must then be searched every time)."""
    try:
        items: Sequence[Any] = list(_parser.parse(pattern.pattern, pattern.flags))
    except (re.error, RecursionError):
        return None
    while len(items) == 1 and items[0][0] == sre.SUBPATTERN:  # /(whole pattern)/
        items = items[0][1][-1]
    exact, parts = _split(items)
    listed = [exact] if exact is not None else parts
    usable = {p for p in listed if p is not None and _score(p)[0] > 0}
    best = _best([_sequence(items).required, *usable])
    if best is None:
        return None
    others = [p for p in usable - {best} if p and _score(p)[0] >= MIN_EXTRA_PART]
    others.sort(key=_score, reverse=True)
    return (best, *(others[: REQUIRED_PARTS - 1]))


__all__ = ["IGNORECASE_ASCII", "Literals", "Requirement", "fold", "required_literals"]
