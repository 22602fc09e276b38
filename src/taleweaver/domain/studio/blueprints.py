"""Project blueprints: a campaign's plan as validated fields, compared field by field
and rendered as Markdown. Pure: the studio capability stores them as events."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.events import JSON
from taleweaver.domain.safety import topic_pattern


class GameSystem(StrEnum):
    DND_5E = "dnd-5e"
    PATHFINDER_2E = "pathfinder-2e"
    BLADES_IN_THE_DARK = "blades-in-the-dark"
    MOTHERSHIP = "mothership"
    CALL_OF_CTHULHU = "call-of-cthulhu"
    CUSTOM = "custom"


class VttPlatform(StrEnum):
    FOUNDRY = "foundry"
    ROLL20 = "roll20"
    OWLBEAR_RODEO = "owlbear-rodeo"
    FANTASY_GROUNDS = "fantasy-grounds"
    OTHER = "other"


class PlayStyle(StrEnum):
    SANDBOX = "sandbox"
    STORY_DRIVEN = "story-driven"
    EPISODIC = "episodic"
    DUNGEON_CRAWL = "dungeon-crawl"
    HEXCRAWL = "hexcrawl"
    MYSTERY = "mystery"
    MIXED = "mixed"


class CampaignScope(StrEnum):
    """From one evening to a table anyone may join any week."""

    ONE_SHOT = "one-shot"
    SHORT_ARC = "short-arc"
    CAMPAIGN = "campaign"
    EPIC = "epic"
    OPEN_TABLE = "open-table"


class PowerLevel(StrEnum):
    LOW = "low"
    STANDARD = "standard"
    HIGH = "high"
    EPIC = "epic"


class ThreatHorizon(StrEnum):
    """How far the campaign's main threat reaches."""

    PERSONAL = "personal"
    LOCAL = "local"
    REGIONAL = "regional"
    WORLD = "world"
    COSMIC = "cosmic"


class Density(StrEnum):
    SPARSE = "sparse"
    MODERATE = "moderate"
    DENSE = "dense"


class SafetyTool(StrEnum):
    LINES_AND_VEILS = "lines-and-veils"
    X_CARD = "x-card"
    OPEN_DOOR = "open-door"
    SCRIPT_CHANGE = "script-change"
    STARS_AND_WISHES = "stars-and-wishes"


LABELS: dict[str, str] = {
    GameSystem.DND_5E: "D&D 5e",
    GameSystem.PATHFINDER_2E: "Pathfinder 2e",
    GameSystem.BLADES_IN_THE_DARK: "Blades in the Dark",
    GameSystem.MOTHERSHIP: "Mothership",
    GameSystem.CALL_OF_CTHULHU: "Call of Cthulhu",
    VttPlatform.FOUNDRY: "Foundry VTT",
    VttPlatform.ROLL20: "Roll20",
    VttPlatform.OWLBEAR_RODEO: "Owlbear Rodeo",
    VttPlatform.FANTASY_GROUNDS: "Fantasy Grounds",
    SafetyTool.LINES_AND_VEILS: "Lines & Veils",
    SafetyTool.X_CARD: "X-Card",
    SafetyTool.OPEN_DOOR: "Open Door",
    SafetyTool.SCRIPT_CHANGE: "Script Change",
    SafetyTool.STARS_AND_WISHES: "Stars & Wishes",
}

TONE_DIALS = ("grit", "wonder", "intrigue")
MAX_NAME = 200
MAX_SHORT = 200
MAX_TEXT = 4000
MAX_LIST = 20
MAX_ITEM = 60
MAX_TOPICS = 50  # lines, and veils, each
MAX_TOPIC_CHARS = 80

_CHOICES: dict[str, type[StrEnum]] = {
    "game_system": GameSystem,
    "vtt": VttPlatform,
    "play_style": PlayStyle,
    "campaign_scope": CampaignScope,
    "power_level": PowerLevel,
    "threat_horizon": ThreatHorizon,
    "npc_density": Density,
    "exploration_density": Density,
}
_SHORT_TEXT = ("custom_system", "starting_region", "signature_faction", "world_id")
_LONG_TEXT = ("premise", "session_zero_focus")
_LISTS = ("genres", "themes")
_TOPIC_LISTS = ("lines", "veils")

# Every field, in the order forms, diffs and Markdown show them.
FIELDS: tuple[str, ...] = (
    "name",
    "game_system",
    "custom_system",
    "vtt",
    "play_style",
    "campaign_scope",
    "session_length_hours",
    "genres",
    "themes",
    "tone",
    "power_level",
    "threat_horizon",
    "npc_density",
    "exploration_density",
    "safety_tools",
    "lines",
    "veils",
    "session_zero_focus",
    "starting_region",
    "signature_faction",
    "premise",
    "world_id",
)


def empty_blueprint() -> JSON:
    """Every field at its unset value."""
    return {
        field: [] if field in (*_LISTS, *_TOPIC_LISTS, "safety_tools") else None for field in FIELDS
    }


def clean_blueprint(data: Mapping[str, Any]) -> JSON:
    """A whole blueprint, every field checked; InvalidInput names the first wrong one."""
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise InvalidInput(f"unknown blueprint fields: {', '.join(unknown)}")
    out = empty_blueprint()
    for field, value in data.items():
        out[field] = clean_field(field, value)
    if out["name"] is None:
        raise InvalidInput("name: a blueprint needs a project name")
    if out["game_system"] == GameSystem.CUSTOM and not out["custom_system"]:
        raise InvalidInput("custom_system: name the system when game_system is 'custom'")
    if out["game_system"] != GameSystem.CUSTOM and out["custom_system"]:
        raise InvalidInput("custom_system: only for game_system 'custom'")
    both = {t.casefold() for t in out["lines"]} & {t.casefold() for t in out["veils"]}
    if both:
        raise InvalidInput(
            f"lines, veils: {', '.join(sorted(both))} is both a line and a veil; choose one"
        )
    if (out["lines"] or out["veils"]) and SafetyTool.LINES_AND_VEILS not in out["safety_tools"]:
        # The table's lines and veils are the Lines & Veils tool in use.
        out["safety_tools"] = [SafetyTool.LINES_AND_VEILS.value, *out["safety_tools"]]
    return out


def clean_field(field: str, value: Any) -> Any:
    """One field's value, cleaned (None clears it); InvalidInput says why not."""
    if field not in FIELDS:
        raise InvalidInput(f"unknown blueprint field: {field}")
    if field in (*_LISTS, *_TOPIC_LISTS, "safety_tools") and value is None:
        return []
    if value is None:
        return None
    if field == "name":
        return _text(field, value, MAX_NAME) or _missing(field)
    if field in _CHOICES:
        return _choice(field, value, _CHOICES[field])
    if field in _SHORT_TEXT:
        return _text(field, value, MAX_SHORT) or None
    if field in _LONG_TEXT:
        return _text(field, value, MAX_TEXT) or None
    if field in _LISTS:
        return _items(field, value, MAX_LIST, MAX_ITEM)
    if field in _TOPIC_LISTS:
        return _topics(field, value)
    if field == "safety_tools":
        tools = [_choice(field, v, SafetyTool) for v in _list(field, value)]
        return list(dict.fromkeys(tools))
    if field == "tone":
        return _tone(value)
    if field == "session_length_hours":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidInput("session_length_hours: must be a number of hours")
        if not 0.5 <= value <= 12:
            raise InvalidInput("session_length_hours: must be from 0.5 to 12")
        return value
    raise AssertionError(field)  # pragma: no cover - FIELDS and the branches agree


def _missing(field: str) -> Any:
    raise InvalidInput(f"{field}: must not be empty")


def _text(field: str, value: Any, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: must be text")
    text = value.strip()
    if len(text) > limit:
        raise InvalidInput(f"{field}: at most {limit} characters")
    return text


def _choice(field: str, value: Any, choices: type[StrEnum]) -> str:
    folded = str(value).strip().lower() if isinstance(value, str) else None
    for choice in choices:
        if folded in (choice.value, LABELS.get(choice, "").lower()):
            return choice.value
    raise InvalidInput(f"{field}: {value!r} is not one of {', '.join(c.value for c in choices)}")


def _list(field: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidInput(f"{field}: must be a list")
    return value


def _items(field: str, value: Any, most: int, longest: int) -> list[str]:
    items = _list(field, value)
    out: list[str] = []
    for item in items:
        text = " ".join(_text(field, item, longest).split())
        if not text:
            raise InvalidInput(f"{field}: items must not be empty")
        if text.casefold() not in (o.casefold() for o in out):
            out.append(text)
    if len(out) > most:
        raise InvalidInput(f"{field}: at most {most} items")
    return out


def _topics(field: str, value: Any) -> list[str]:
    """Lines and veils become content rules: each must be a matchable phrase."""
    topics = _items(field, value, MAX_TOPICS, MAX_TOPIC_CHARS)
    for topic in topics:
        if not topic.isprintable():
            raise InvalidInput(f"{field}: {topic!r} is not printable text")
        try:
            topic_pattern(topic)
        except InvalidInput as exc:
            raise InvalidInput(f"{field}: {topic!r}: {exc.detail}") from exc
    return topics


def _tone(value: Any) -> JSON:
    if not isinstance(value, dict):
        raise InvalidInput("tone: must be an object of grit, wonder and intrigue")
    unknown = sorted(set(value) - set(TONE_DIALS))
    if unknown:
        raise InvalidInput(f"tone: unknown dials {', '.join(unknown)}; use grit, wonder, intrigue")
    out: JSON = {}
    for dial in TONE_DIALS:
        level = value.get(dial)
        if level is None:
            continue
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 10:
            raise InvalidInput(f"tone.{dial}: must be a whole number from 0 to 10")
        out[dial] = level
    return out


# --- versions ---------------------------------------------------------------------------


def diff_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[JSON]:
    """Each field whose value differs, in field order: {field, from, to}."""
    names = [f for f in FIELDS if f in before or f in after]
    names += sorted((set(before) | set(after)) - set(FIELDS))
    return [
        {"field": name, "from": before.get(name), "to": after.get(name)}
        for name in names
        if before.get(name) != after.get(name)
    ]


def changed_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    return [d["field"] for d in diff_fields(before, after)]


# --- Markdown -----------------------------------------------------------------------------


def _label(value: str | None) -> str:
    if value is None:
        return "—"
    return LABELS.get(value, value.replace("-", " ").capitalize())


def _joined(values: Iterable[str], labels: bool = False) -> str:
    items = [_label(v) if labels else v for v in values]
    return ", ".join(items) if items else "—"


def blueprint_markdown(fields: Mapping[str, Any], *, version: int | None = None) -> str:
    """The blueprint as a Markdown page a game master can print or paste."""
    system = fields.get("custom_system") or _label(fields.get("game_system"))
    length = fields.get("session_length_hours")
    tone = fields.get("tone") or {}
    lines = [f"# {fields['name']}", ""]
    if version is not None:
        lines += [f"*Blueprint version {version}*", ""]
    if fields.get("premise"):
        lines += ["## Premise", "", str(fields["premise"]), ""]
    lines += [
        "## At the table",
        "",
        f"- **Game system:** {system}",
        f"- **VTT:** {_label(fields.get('vtt'))}",
        f"- **Play style:** {_label(fields.get('play_style'))}",
        f"- **Campaign scope:** {_label(fields.get('campaign_scope'))}",
        f"- **Session length:** {f'{length:g} hours' if length else '—'}",
        "",
        "## Story",
        "",
        f"- **Genres:** {_joined(fields.get('genres') or [])}",
        f"- **Themes:** {_joined(fields.get('themes') or [])}",
        f"- **Power level:** {_label(fields.get('power_level'))}",
        f"- **Threat horizon:** {_label(fields.get('threat_horizon'))}",
        f"- **NPC density:** {_label(fields.get('npc_density'))}",
        f"- **Exploration density:** {_label(fields.get('exploration_density'))}",
        f"- **Starting region:** {fields.get('starting_region') or '—'}",
        f"- **Signature faction:** {fields.get('signature_faction') or '—'}",
        "",
        "## Tone",
        "",
    ]
    lines += [
        f"- **{dial.capitalize()}:** {tone[dial]}/10" if dial in tone else f"- **{dial}:** —"
        for dial in TONE_DIALS
    ]
    lines += [
        "",
        "## Safety",
        "",
        f"- **Tools:** {_joined(fields.get('safety_tools') or [], labels=True)}",
        f"- **Lines (never in play):** {_joined(fields.get('lines') or [])}",
        f"- **Veils (off-screen only):** {_joined(fields.get('veils') or [])}",
    ]
    if fields.get("session_zero_focus"):
        lines += ["", "## Session zero", "", str(fields["session_zero_focus"])]
    return "\n".join(lines) + "\n"
