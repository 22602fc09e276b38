"""Crisis detection by rules, and content-topic matching: pure functions, no I/O.

A rule set (parsed from `safety/data/rules.toml` by the safety package) is a list
of patterns over *normalised* text: lower case, straight quotes, contractions
spelled out ("don't" -> "do not", "i'm" -> "i am", "gonna" -> "going to"), so a
rule is written once for every spelling. Before the rules run, spans that are
idiom or play ("dying to know", "this level is killing me") are blanked out; a
match just after a negation ("i would never kill myself") does not count.
Modifiers then move the level: a plan, means or a time raise it, protective
words or the past tense lower it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.turns import CrisisLevel

CATEGORIES = (
    "suicidal_ideation",
    "self_harm",
    "abuse",
    "medical_emergency",
    "harm_to_others",
    "eating_disorder",
)
LEVELS: tuple[CrisisLevel, ...] = ("none", "low", "moderate", "high", "critical")
Direction = Literal["input", "output", "both"]
Effect = Literal["raise", "critical", "lower", "past"]

_RANK = {level: i for i, level in enumerate(LEVELS)}


def rank(level: CrisisLevel) -> int:
    return _RANK[level]


def most_severe(*levels: CrisisLevel) -> CrisisLevel:
    return max(levels, key=rank, default="none")


# From this level on the crisis protocol runs; below it (low) the turn carries a warning.
CRISIS_FROM: CrisisLevel = "moderate"


def _shift(level: CrisisLevel, steps: int) -> CrisisLevel:
    return LEVELS[max(1, min(len(LEVELS) - 1, rank(level) + steps))]


# --- normalising --------------------------------------------------------------------

# One pass over the text: every contraction or slang word is looked up and spelled out.
_NOT_STEMS = frozenset(
    [
        "do",
        "does",
        "did",
        "is",
        "are",
        "was",
        "were",
        "would",
        "could",
        "should",
        "have",
        "has",
        "had",
        "need",
        "must",
    ]
)
_WOULD = frozenset(
    ["they", "we", "you", "he", "she", "it", "that", "there", "everyone", "everybody"]
)
_WILL = frozenset(["he", "she", "they", "we", "you", "it", "that"])
_ARE = frozenset(["they", "we", "you"])
_IS = frozenset(["he", "she", "it", "that", "there", "what"])
_WORDS = {
    "won't": "will not",
    "wont": "will not",
    "can't": "can not",
    "cant": "can not",
    "cannot": "can not",
    "ain't": "is not",
    "aint": "is not",
    "i'm": "i am",
    "im": "i am",
    "i've": "i have",
    "ive": "i have",
    "i'll": "i will",
    "i'd": "i would",
    "wanna": "want to",
    "gonna": "going to",
    "gotta": "got to",
    "kms": "kill myself",
    "unalive": "kill",
    "u": "you",
}
_TOKEN = re.compile(r"\b(?:[a-z]+'[a-z]+|[a-z]+nt|cannot|im|ive|wanna|gonna|gotta|kms|unalive|u)\b")
_SPACE = re.compile(r"\s+")


def _spell_out(match: re.Match[str]) -> str:
    word = match.group(0)
    known = _WORDS.get(word)
    if known is not None:
        return known
    stem, _, tail = word.partition("'")
    if tail == "t" and stem.endswith("n") and stem[:-1] in _NOT_STEMS:
        return f"{stem[:-1]} not"
    if not tail and word.endswith("nt") and word[:-2] in _NOT_STEMS:
        return f"{word[:-2]} not"  # "dont", "didnt"
    if (tail == "d" and stem in _WOULD) or (tail == "ll" and stem in _WILL):
        return f"{stem} {'would' if tail == 'd' else 'will'}"
    if (tail == "re" and stem in _ARE) or (tail == "s" and stem in _IS):
        return f"{stem} {'are' if tail == 're' else 'is'}"
    return word


def normalise(text: str) -> str:
    """Lower case, straight apostrophes, contractions spelled out, single spaces."""
    out = text.lower().replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    return _SPACE.sub(" ", _TOKEN.sub(_spell_out, out)).strip()


# --- the rule set -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    category: str
    level: CrisisLevel
    patterns: tuple[re.Pattern[str], ...]
    negatable: bool = True
    direction: Direction = "input"


@dataclass(frozen=True, slots=True)
class Modifier:
    """Moves the level of the categories it names when its pattern is present."""

    id: str
    effect: Effect
    patterns: tuple[re.Pattern[str], ...]
    categories: frozenset[str]


@dataclass(frozen=True, slots=True)
class RuleSet:
    version: str
    rules: tuple[Rule, ...]
    excludes: tuple[re.Pattern[str], ...] = ()
    modifiers: tuple[Modifier, ...] = ()
    negation: re.Pattern[str] | None = None
    negation_window: int = 3


def _expand(pattern: str, lexicon: Mapping[str, str], where: str) -> re.Pattern[str]:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in lexicon:
            raise InvalidInput(f"{where}: unknown lexicon entry {{{name}}}")
        return f"(?:{lexicon[name]})"

    source = re.sub(r"\{([a-z_]+)\}", sub, pattern)
    try:
        return re.compile(source)
    except re.error as exc:
        raise InvalidInput(f"{where}: bad pattern {pattern!r}: {exc}") from exc


def _patterns(
    entry: Mapping[str, Any], lexicon: Mapping[str, str], where: str
) -> tuple[re.Pattern[str], ...]:
    raw = entry.get("patterns")
    if isinstance(entry.get("pattern"), str):
        raw = [entry["pattern"], *(raw or [])]
    if not isinstance(raw, list) or not raw or not all(isinstance(p, str) for p in raw):
        raise InvalidInput(f"{where}: needs 'pattern' or a non-empty list 'patterns'")
    return tuple(_expand(p, lexicon, where) for p in raw)


def compile_rules(data: Mapping[str, Any]) -> RuleSet:
    """Check and compile a parsed rules file; `InvalidInput` names the first problem."""
    version = data.get("version")
    if not isinstance(version, str | int) or not str(version):
        raise InvalidInput("rules: a 'version' is required")
    lexicon: dict[str, str] = {}
    for name, value in (data.get("lexicon") or {}).items():
        # An entry may use the entries above it.
        lexicon[str(name)] = _expand(str(value), lexicon, f"lexicon {name}").pattern
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, entry in enumerate(data.get("rule") or []):
        rule_id = str(entry.get("id") or f"rule[{i}]")
        where = f"rule {rule_id}"
        if rule_id in seen:
            raise InvalidInput(f"{where}: duplicate id")
        seen.add(rule_id)
        category = entry.get("category")
        if category not in CATEGORIES and entry.get("direction") != "output":
            raise InvalidInput(f"{where}: unknown category {category!r}")
        level = entry.get("level", "moderate")
        if level not in LEVELS[1:]:
            raise InvalidInput(f"{where}: level must be one of {', '.join(LEVELS[1:])}")
        direction = entry.get("direction", "input")
        if direction not in ("input", "output", "both"):
            raise InvalidInput(f"{where}: direction must be input, output or both")
        rules.append(
            Rule(
                rule_id,
                str(category),
                level,
                _patterns(entry, lexicon, where),
                negatable=bool(entry.get("negatable", True)),
                direction=direction,
            )
        )
    if not rules:
        raise InvalidInput("rules: at least one [[rule]] is required")
    excludes = tuple(
        pattern
        for i, entry in enumerate(data.get("exclude") or [])
        for pattern in _patterns(entry, lexicon, f"exclude {entry.get('id', i)}")
    )
    modifiers: list[Modifier] = []
    for i, entry in enumerate(data.get("modifier") or []):
        where = f"modifier {entry.get('id', i)}"
        effect = entry.get("effect")
        if effect not in ("raise", "critical", "lower", "past"):
            raise InvalidInput(f"{where}: effect must be raise, critical, lower or past")
        categories = frozenset(entry.get("categories") or CATEGORIES)
        modifiers.append(
            Modifier(str(entry.get("id", i)), effect, _patterns(entry, lexicon, where), categories)
        )
    negation = data.get("negation") or {}
    cues = negation.get("cues") or []
    cue_pattern = (
        re.compile(r"\b(?:" + "|".join(re.escape(c) for c in cues) + r")\b") if cues else None
    )
    return RuleSet(
        str(version),
        tuple(rules),
        excludes,
        tuple(modifiers),
        cue_pattern,
        int(negation.get("window", 3)),
    )


# --- assessing ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    category: str
    level: CrisisLevel
    text: str


@dataclass(frozen=True, slots=True)
class Assessment:
    """What the rules (or a model) found in one text."""

    level: CrisisLevel = "none"
    categories: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()
    risk_factors: tuple[str, ...] = ()
    protective_factors: tuple[str, ...] = ()
    source: str = "rules"
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "categories": list(self.categories),
            "rules": [f.rule for f in self.findings],
            "risk_factors": list(self.risk_factors),
            "protective_factors": list(self.protective_factors),
            "source": self.source,
        }


NOTHING = Assessment()

# Clauses: a negation or a story frame in one does not reach into the next.
_CLAUSE = re.compile(r"[.!?;\n]+|,\s*(?:and then|then|so)\b|\bbut\b")


def _blank(text: str, patterns: Iterable[re.Pattern[str]]) -> str:
    for pattern in patterns:
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)
    return text


def _negated(clause: str, match: re.Match[str], rules: RuleSet) -> bool:
    """A cue just before the match, or inside it ("i do not want to die")."""
    if rules.negation is None:
        return False
    before = clause[: match.start()].split()[-rules.negation_window :]
    words = before + match.group(0).split()
    return any(rules.negation.fullmatch(word) for word in words)


def assess(text: str, rules: RuleSet, *, direction: Direction = "input") -> Assessment:
    """Run the rules over one text."""
    norm = normalise(text)
    applicable = [r for r in rules.rules if r.direction in ("both", direction)]
    if not norm or not applicable:
        return NOTHING
    # Idiom and play are a player's way of talking; narration is checked as written.
    cleaned = _blank(norm, rules.excludes) if direction == "input" else norm
    findings: list[Finding] = []
    for clause in _CLAUSE.split(cleaned):
        if not clause.strip():
            continue
        for rule in applicable:
            for pattern in rule.patterns:
                match = pattern.search(clause)
                if match is None:
                    continue
                if rule.negatable and _negated(clause, match, rules):
                    continue
                findings.append(Finding(rule.id, rule.category, rule.level, match.group(0)))
                break
    if not findings:
        return NOTHING
    levels: dict[str, CrisisLevel] = {}
    for finding in findings:
        levels[finding.category] = most_severe(levels.get(finding.category, "none"), finding.level)
    risk: list[str] = []
    protective: list[str] = []
    for modifier in rules.modifiers:
        if not any(p.search(norm) for p in modifier.patterns):
            continue
        touched = [c for c in levels if c in modifier.categories]
        if not touched:
            continue
        (protective if modifier.effect in ("lower", "past") else risk).append(modifier.id)
        for category in touched:
            levels[category] = _apply(levels[category], modifier.effect)
    ordered = sorted(levels, key=lambda c: (-rank(levels[c]), CATEGORIES.index(c)))
    return Assessment(
        level=most_severe(*levels.values()),
        categories=tuple(ordered),
        findings=tuple(findings),
        risk_factors=tuple(risk),
        protective_factors=tuple(protective),
    )


def _apply(level: CrisisLevel, effect: Effect) -> CrisisLevel:
    if effect == "critical":
        return "critical"
    if effect == "raise":
        return _shift(level, 1)
    if effect == "past":
        return "low"
    return _shift(level, -1)


def combine(first: Assessment, second: Assessment) -> Assessment:
    """The more severe of two assessments, with the categories of both."""
    top, other = (first, second) if rank(first.level) >= rank(second.level) else (second, first)
    if other.level == "none":
        return top
    categories = tuple(dict.fromkeys([*top.categories, *other.categories]))
    return Assessment(
        level=top.level,
        categories=categories,
        findings=top.findings + other.findings,
        risk_factors=tuple(dict.fromkeys(top.risk_factors + other.risk_factors)),
        protective_factors=tuple(dict.fromkeys(top.protective_factors + other.protective_factors)),
        source=f"{top.source}+{other.source}",
    )


# --- content topics -----------------------------------------------------------------

# A content rule set or a player's preferences: at most this many topics, each this long.
MAX_TOPICS = 100
MAX_TOPIC_CHARS = 80
# The scope of a workspace's own content rules; a world's are `world_scope(world_id)`.
WORKSPACE_SCOPE = "workspace"


def world_scope(world_id: str) -> str:
    if not world_id or len(world_id) > 100:
        raise InvalidInput("a world id must be 1 to 100 characters")
    return f"world:{world_id}"


def topic_pattern(topic: str) -> re.Pattern[str]:
    """A topic as a whole-word, case-insensitive phrase, plural forms included."""
    words = normalise(topic).split()
    if not words:
        raise InvalidInput("a topic must not be empty")
    last = words[-1]
    if len(last) > 3 and last.endswith("s") and not last.endswith("ss"):
        words[-1] = last[:-1]  # "spiders" also matches "spider"
    return re.compile(r"\b" + r"\s+".join(re.escape(w) for w in words) + r"(?:s|es)?\b")


def find_topics(text: str, topics: Sequence[str]) -> list[str]:
    """The topics (as given) that the text mentions."""
    norm = normalise(text)
    return [t for t in topics if t.strip() and topic_pattern(t).search(norm)]
