"""The therapeutic layer's vocabulary and rules: pure, no I/O.

Scoring of the PHQ-9 and GAD-7, scene progression, choice tags and their
consequences for goals, emotion reading from a player's words, the
character-world compatibility check and time buckets for progress charts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from taleweaver.domain.crisis import CrisisLevel
from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.events import JSON


class Approach(StrEnum):
    CBT = "cbt"
    DBT = "dbt"
    ACT = "act"
    NARRATIVE = "narrative_therapy"
    MINDFULNESS = "mindfulness"
    SOLUTION_FOCUSED = "solution_focused"
    HUMANISTIC = "humanistic"
    BEHAVIOURAL_ACTIVATION = "behavioural_activation"
    SKILL_BUILDING = "skill_building"
    INSIGHT_ORIENTED = "insight_oriented"


class MarkerType(StrEnum):
    MILESTONE = "milestone"
    BREAKTHROUGH = "breakthrough"
    SKILL_ACQUIRED = "skill_acquired"
    GOAL_ACHIEVED = "goal_achieved"
    SETBACK_OVERCOME = "setback_overcome"
    INSIGHT = "insight"


class SceneType(StrEnum):
    INTRODUCTION = "introduction"
    EXPLORATION = "exploration"
    CHALLENGE = "challenge"
    REFLECTION = "reflection"
    THERAPEUTIC = "therapeutic"
    RESOLUTION = "resolution"


class ChoiceType(StrEnum):
    NARRATIVE = "narrative"
    THERAPEUTIC = "therapeutic"
    SKILL_BUILDING = "skill_building"
    EMOTIONAL_REGULATION = "emotional_regulation"
    SOCIAL_INTERACTION = "social_interaction"


class Instrument(StrEnum):
    PHQ9 = "phq9"
    GAD7 = "gad7"


class GoalStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    ACHIEVED = "achieved"


Pace = Literal["slow", "moderate", "fast"]
Bucket = Literal["day", "week", "month"]

MIN_INTENSITY, MAX_INTENSITY = 1, 5

# --- profiles and records ---------------------------------------------------------

# A goal's title, and a description or note (goals, markers, progress entries).
MAX_TITLE_CHARS = 200
MAX_NOTE_CHARS = 4000


@dataclass(frozen=True, slots=True)
class ProfileInput:
    """A player's profile as set: preferences, crisis contacts, consent, retention."""

    approaches: list[Approach] = field(default_factory=list)
    intensity: int = 2
    avoid_topics: list[str] = field(default_factory=list)
    crisis_contacts: list[JSON] = field(default_factory=list)
    therapy_data: bool = False
    emotion_tracking: bool = False
    retention_days: int | None = None


# --- assessments ------------------------------------------------------------------

ANSWER_MIN, ANSWER_MAX = 0, 3
ITEM_COUNT = {Instrument.PHQ9: 9, Instrument.GAD7: 7}
# (lowest score of the band, band name), highest band first.
SEVERITY_BANDS: dict[Instrument, list[tuple[int, str]]] = {
    Instrument.PHQ9: [
        (20, "severe"),
        (15, "moderately severe"),
        (10, "moderate"),
        (5, "mild"),
        (0, "minimal"),
    ],
    Instrument.GAD7: [(15, "severe"), (10, "moderate"), (5, "mild"), (0, "minimal")],
}
# PHQ-9 item 9 asks about thoughts of death or self-harm: any answer above "not at
# all" raises the crisis protocol, more urgently the more often it happens.
PHQ9_SELF_HARM_ITEM = 9
ITEM9_CRISIS: dict[int, CrisisLevel] = {1: "moderate", 2: "high", 3: "critical"}


@dataclass(frozen=True, slots=True)
class Scored:
    score: int
    severity: str
    # The crisis level a positive self-harm item calls for, or None.
    crisis: CrisisLevel | None


def severity(instrument: Instrument, score: int) -> str:
    return next(name for low, name in SEVERITY_BANDS[instrument] if score >= low)


def score_answers(instrument: Instrument, answers: Sequence[int]) -> Scored:
    """Validate one answer per item (0-3) and score them."""
    expected = ITEM_COUNT[instrument]
    if len(answers) != expected:
        raise InvalidInput(f"{instrument} has {expected} items: send {expected} answers")
    for number, answer in enumerate(answers, 1):
        if not ANSWER_MIN <= answer <= ANSWER_MAX:
            raise InvalidInput(f"answer to item {number} must be between 0 and 3, got {answer}")
    total = sum(answers)
    crisis = None
    if instrument == Instrument.PHQ9:
        crisis = ITEM9_CRISIS.get(answers[PHQ9_SELF_HARM_ITEM - 1])
    return Scored(total, severity(instrument, total), crisis)


# --- scenes -------------------------------------------------------------------------

# How many turns of exploration follow the introduction, by the world's pace.
EXPLORATION_TURNS: dict[str, int] = {"slow": 4, "moderate": 2, "fast": 1}
# After exploration, scenes cycle through this loop until the goals are nearly met.
SCENE_CYCLE = (
    SceneType.CHALLENGE,
    SceneType.REFLECTION,
    SceneType.THERAPEUTIC,
    SceneType.EXPLORATION,
)
RESOLUTION_AT = 90


def scene_for(turn_number: int, progress: float | None, pace: str = "moderate") -> SceneType:
    """The scene a turn plays in, from its number and the session goals' mean progress."""
    if turn_number <= 1:
        return SceneType.INTRODUCTION
    if progress is not None and progress >= RESOLUTION_AT:
        return SceneType.RESOLUTION
    exploring = EXPLORATION_TURNS.get(pace, EXPLORATION_TURNS["moderate"])
    if turn_number <= 1 + exploring:
        return SceneType.EXPLORATION
    return SCENE_CYCLE[(turn_number - 2 - exploring) % len(SCENE_CYCLE)]


# --- tagged choices and their consequences -------------------------------------------

_TAG = re.compile(
    r"^\s*\[(?P<type>[a-z_ ]+?)(?:\s*[:#]\s*#?(?P<goal>[0-9a-f]{4,32}))?\]\s*(?P<text>.*)$",
    re.IGNORECASE | re.DOTALL,
)

# Progress points a chosen option moves its goal by (its therapeutic value).
CHOICE_VALUE: dict[ChoiceType, int] = {
    ChoiceType.NARRATIVE: 0,
    ChoiceType.THERAPEUTIC: 10,
    ChoiceType.SKILL_BUILDING: 8,
    ChoiceType.EMOTIONAL_REGULATION: 8,
    ChoiceType.SOCIAL_INTERACTION: 6,
}
MILESTONE_STEP = 25
GOAL_REF_CHARS = 6


@dataclass(frozen=True, slots=True)
class TaggedChoice:
    type: ChoiceType
    text: str
    # A prefix of the goal id the narrator linked the option to, if it named one.
    goal_ref: str | None = None

    @property
    def value(self) -> int:
        return CHOICE_VALUE[self.type]


def parse_choice_tag(text: str) -> TaggedChoice:
    """Read a `[type #goal]` prefix off an offered option; untagged options are narrative."""
    found = _TAG.match(text)
    if found is None:
        return TaggedChoice(ChoiceType.NARRATIVE, text.strip())
    name = found["type"].strip().lower().replace(" ", "_")
    try:
        kind = ChoiceType(name)
    except ValueError:
        return TaggedChoice(ChoiceType.NARRATIVE, text.strip())
    goal = found["goal"].lower() if found["goal"] else None
    return TaggedChoice(kind, found["text"].strip(), goal)


@dataclass(frozen=True, slots=True)
class Consequence:
    progress: int
    marker: MarkerType | None = None


def choice_consequence(progress: int, choice: TaggedChoice) -> Consequence:
    """Where a goal stands after the player picks `choice`, and the marker it earns."""
    after = min(100, progress + choice.value)
    if after >= 100 > progress:
        return Consequence(after, MarkerType.GOAL_ACHIEVED)
    if after // MILESTONE_STEP > progress // MILESTONE_STEP:
        if choice.type == ChoiceType.SKILL_BUILDING:
            return Consequence(after, MarkerType.SKILL_ACQUIRED)
        return Consequence(after, MarkerType.MILESTONE)
    return Consequence(after)


# --- emotions -----------------------------------------------------------------------

_WORDS = re.compile(r"[a-z']+")
NEGATIONS = frozenset({"not", "no", "never", "hardly", "don't", "dont", "isn't", "wasn't"})
INTENSIFIERS = frozenset({"very", "so", "really", "extremely", "totally", "too"})
NEGATION_REACH = 3


@dataclass(frozen=True, slots=True)
class LexiconEntry:
    emotion: str
    valence: float  # -1 (unpleasant) .. 1 (pleasant)
    arousal: float  # 0 (calm) .. 1 (activated)


@dataclass(frozen=True, slots=True)
class EmotionReading:
    valence: float
    arousal: float
    # Named emotions found, strongest first, with their summed weight.
    emotions: dict[str, float] = field(default_factory=dict)

    @property
    def dominant(self) -> str | None:
        return next(iter(self.emotions), None)


def read_emotions(text: str, lexicon: Mapping[str, LexiconEntry]) -> EmotionReading | None:
    """Valence, arousal and named emotions in a player's words; None when no word of
    the lexicon occurs. A negation just before a word flips and weakens it ("not calm")."""
    words = _WORDS.findall(text.lower().replace("\u2019", "'"))
    valences: list[float] = []
    arousals: list[float] = []
    named: dict[str, float] = {}
    for i, word in enumerate(words):
        entry = lexicon.get(word)
        if entry is None:
            continue
        before = words[max(0, i - NEGATION_REACH) : i]
        weight = 1.5 if before and before[-1] in INTENSIFIERS else 1.0
        if any(w in NEGATIONS or w.endswith("n't") for w in before):
            valences.append(-0.5 * entry.valence)
            arousals.append(entry.arousal * 0.5)
            continue
        valences.append(max(-1.0, min(1.0, entry.valence * weight)))
        arousals.append(min(1.0, entry.arousal * weight))
        named[entry.emotion] = named.get(entry.emotion, 0.0) + weight
    if not valences:
        return None
    ranked = dict(sorted(named.items(), key=lambda kv: (-kv[1], kv[0])))
    return EmotionReading(
        round(sum(valences) / len(valences), 3), round(sum(arousals) / len(arousals), 3), ranked
    )


# A swing from clearly unpleasant to pleasant between two turns of a session.
SETBACK_LOW, RECOVERY_HIGH = -0.4, 0.3


def is_recovery(before: float | None, after: float) -> bool:
    return before is not None and before <= SETBACK_LOW and after >= RECOVERY_HIGH


# --- world parameters and compatibility ------------------------------------------------

MAX_TOPICS = 20
MAX_TOPIC_CHARS = 80


@dataclass(frozen=True, slots=True)
class WorldParams:
    intensity: int = 2
    pace: str = "moderate"
    focus_topics: tuple[str, ...] = ()
    avoid_topics: tuple[str, ...] = ()


def _topics(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(t).strip()[:MAX_TOPIC_CHARS] for t in value[:MAX_TOPICS] if str(t).strip())


def world_params(settings: Mapping[str, Any]) -> WorldParams:
    """A session's world parameters (`settings.world_params`), leniently: a session was
    created by the core, which does not validate kind-specific settings."""
    raw = settings.get("world_params")
    if not isinstance(raw, Mapping):
        return WorldParams()
    intensity = raw.get("intensity", 2)
    pace = raw.get("pace", "moderate")
    return WorldParams(
        intensity=intensity
        if isinstance(intensity, int) and MIN_INTENSITY <= intensity <= MAX_INTENSITY
        else 2,
        pace=pace if pace in EXPLORATION_TURNS else "moderate",
        focus_topics=_topics(raw.get("focus_topics")),
        avoid_topics=_topics(raw.get("avoid_topics")),
    )


@dataclass(frozen=True, slots=True)
class Incompatibility:
    kind: str  # "intensity" | "avoided_topic"
    detail: str


def _norm(topic: str) -> str:
    return " ".join(topic.lower().split())


def compatibility(
    player_intensity: int, player_avoids: Iterable[str], world: WorldParams
) -> list[Incompatibility]:
    """What in a world does not suit a player; empty when they fit together."""
    found: list[Incompatibility] = []
    if world.intensity > player_intensity:
        found.append(
            Incompatibility(
                "intensity",
                f"the world's intensity {world.intensity} is above the player's {player_intensity}",
            )
        )
    avoided = {_norm(t) for t in player_avoids}
    for topic in world.focus_topics:
        if _norm(topic) in avoided:
            found.append(
                Incompatibility(
                    "avoided_topic", f"the world focuses on '{topic}', which the player avoids"
                )
            )
    return found


# --- time buckets ---------------------------------------------------------------------


def bucket_start(at: datetime, bucket: Bucket) -> date:
    """The first day of the day, ISO week (Monday) or month `at` falls in (UTC)."""
    day = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).date()
    if bucket == "week":
        return day - timedelta(days=day.weekday())
    if bucket == "month":
        return day.replace(day=1)
    return day
