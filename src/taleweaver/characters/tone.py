"""How the player's words move a relationship: a small, explainable heuristic.

Warm words raise affinity, thanks raise trust most, hostility lowers both; a
negation just before a word ("don't like") turns it around. The mood is the
average tone of the last few messages. Pure functions: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

__all__ = ["Relationship", "Tone", "fold", "score"]

START = 50.0
LOW, HIGH = 0.0, 100.0
MOOD_WINDOW = 5
MAX_STEP = 6.0


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


WARM = _words(
    "love loved lovely like adore care cared caring kind sweet friend friends happy glad "
    "wonderful amazing great nice beautiful awesome hug hugs miss fun funny cute brilliant "
    "enjoy enjoyed smile welcome dear gentle fantastic"
)
GRATEFUL = _words("thank thanks thankful grateful appreciate appreciated ty")
HOSTILE = _words(
    "hate hated stupid idiot dumb useless annoying boring liar pathetic worthless shut "
    "ugly disgusting awful terrible worst moron loser creep creepy jerk"
)
NEGATIONS = _words("not no never don't dont didn't didnt can't cant isn't isnt won't")
_WORD = re.compile(r"[a-z']+|<3|:\)|:\(|❤️?|♥")
_EMOTICONS = {"<3": "love", ":)": "glad", "❤": "love", "❤️": "love", "♥": "love", ":(": "awful"}


@dataclass(frozen=True, slots=True)
class Tone:
    warmth: int = 0
    gratitude: int = 0
    hostility: int = 0

    @property
    def value(self) -> int:
        return self.warmth + self.gratitude - self.hostility


def score(text: str) -> Tone:
    """Count warm, grateful and hostile words, a negation flipping the next two."""
    words = [_EMOTICONS.get(w, w) for w in _WORD.findall(text.lower())]
    warmth = gratitude = hostility = 0
    for index, word in enumerate(words):
        negated = any(w in NEGATIONS for w in words[max(0, index - 2) : index])
        if word in GRATEFUL:
            gratitude += 1
        elif word in WARM:
            if negated:
                hostility += 1
            else:
                warmth += 1
        elif word in HOSTILE and not negated:
            hostility += 1
    return Tone(warmth, gratitude, hostility)


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def _mood(recent: list[int]) -> str:
    if not recent:
        return "neutral"
    mean = sum(recent) / len(recent)
    if mean >= 1:
        return "affectionate"
    if mean > 0:
        return "content"
    if mean == 0:
        return "neutral"
    return "wary" if mean > -1 else "upset"


@dataclass(frozen=True, slots=True)
class Relationship:
    affinity: float = START
    trust: float = START
    mood: str = "neutral"
    recent: list[int] = field(default_factory=list)
    turns: int = 0


def fold(state: Relationship, text: str) -> Relationship:
    """The relationship after the player said `text`."""
    tone = score(text)
    affinity = _clamp(1.5 * tone.warmth + tone.gratitude - 3 * tone.hostility, -MAX_STEP, MAX_STEP)
    trust = _clamp(2 * tone.gratitude + 0.5 * tone.warmth - 2 * tone.hostility, -MAX_STEP, MAX_STEP)
    recent = [*state.recent, tone.value][-MOOD_WINDOW:]
    return replace(
        state,
        affinity=_clamp(state.affinity + affinity, LOW, HIGH),
        trust=_clamp(state.trust + trust, LOW, HIGH),
        mood=_mood(recent),
        recent=recent,
        turns=state.turns + 1,
    )
