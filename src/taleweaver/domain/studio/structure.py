"""Chat to structure: a studio reply read into a proposed blueprint, world entry and
prompt recipe, each field with a confidence, for the user to review and correct
before one call saves them all. Pure: the reply's text in, a proposal out."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.events import JSON
from taleweaver.domain.studio.blueprints import clean_field
from taleweaver.domain.studio.recipes import placeholders

# "Label: value" lines, as a studio reply writes them (list bullets and bold allowed).
_LINE = re.compile(
    r"^\s*(?:[-*+]\s+)?(?:\*\*|__)?(?P<label>[A-Za-z][A-Za-z0-9 &/'\-]{0,40}?)"
    r"\s*(?:\*\*|__)?\s*:\s*(?:\*\*|__)?\s*(?P<value>\S.*?)\s*$"
)
_HEADING = re.compile(r"^\s*#{1,6}\s+(?P<title>\S.*?)\s*#*\s*$")
_HOURS = re.compile(r"^(\d+(?:\.\d+)?)\s*(?:h|hr|hrs|hours?)?\b")
_DIAL = re.compile(r"^(\d{1,2})(?:\s*/\s*10)?\b")

# Each label a reply may use -> (field, how sure an exact label makes us).
BLUEPRINT_LABELS: dict[str, tuple[str, float]] = {
    "project name": ("name", 0.95),
    "project": ("name", 0.8),
    "campaign name": ("name", 0.9),
    "campaign": ("name", 0.7),
    "title": ("name", 0.6),
    "game system": ("game_system", 0.95),
    "system": ("game_system", 0.85),
    "rules": ("game_system", 0.6),
    "vtt": ("vtt", 0.95),
    "vtt platform": ("vtt", 0.95),
    "platform": ("vtt", 0.7),
    "play style": ("play_style", 0.95),
    "style of play": ("play_style", 0.9),
    "campaign scope": ("campaign_scope", 0.95),
    "scope": ("campaign_scope", 0.85),
    "session length": ("session_length_hours", 0.95),
    "genres": ("genres", 0.95),
    "genre": ("genres", 0.9),
    "themes": ("themes", 0.95),
    "theme": ("themes", 0.9),
    "grit": ("tone.grit", 0.9),
    "wonder": ("tone.wonder", 0.9),
    "intrigue": ("tone.intrigue", 0.9),
    "power level": ("power_level", 0.95),
    "threat horizon": ("threat_horizon", 0.95),
    "threat": ("threat_horizon", 0.6),
    "npc density": ("npc_density", 0.95),
    "exploration density": ("exploration_density", 0.95),
    "safety tools": ("safety_tools", 0.95),
    "lines": ("lines", 0.9),
    "veils": ("veils", 0.9),
    "session zero focus": ("session_zero_focus", 0.95),
    "session zero": ("session_zero_focus", 0.85),
    "starting region": ("starting_region", 0.95),
    "region": ("starting_region", 0.7),
    "signature faction": ("signature_faction", 0.95),
    "faction": ("signature_faction", 0.7),
    "premise": ("premise", 0.95),
    "pitch": ("premise", 0.8),
}
RECIPE_LABELS: dict[str, tuple[str, float]] = {
    "prompt": ("template", 0.9),
    "image prompt": ("template", 0.95),
    "art prompt": ("template", 0.95),
    "recipe": ("name", 0.9),
    "recipe name": ("name", 0.95),
    "medium": ("style.medium", 0.9),
    "art style": ("style.keywords", 0.9),
    "style keywords": ("style.keywords", 0.95),
    "aspect ratio": ("style.aspect_ratio", 0.95),
    "negative": ("negative.terms", 0.9),
    "negative prompt": ("negative.terms", 0.95),
    "avoid": ("negative.terms", 0.8),
}
_LISTED = {
    "genres",
    "themes",
    "safety_tools",
    "lines",
    "veils",
    "style.keywords",
    "negative.terms",
}


def _split(value: str) -> list[str]:
    return [v.strip(" .") for v in re.split(r"[,;]| and ", value) if v.strip(" .")]


def _read_value(field: str, value: str) -> tuple[Any, float]:
    """A reply's text for one field as the field's type, and how much was guessed."""
    value = value.strip().rstrip(".").strip("*_ ").strip()
    if field in _LISTED:
        return _split(value), 0.0
    if field == "session_length_hours":
        match = _HOURS.match(value)
        if match is None:
            raise InvalidInput(f"session_length_hours: {value!r} is not a number of hours")
        number = float(match.group(1))
        return (int(number) if number.is_integer() else number), 0.0
    if field.startswith("tone."):
        match = _DIAL.match(value)
        if match is None:
            raise InvalidInput(f"{field}: {value!r} is not a level from 0 to 10")
        return int(match.group(1)), 0.0
    return value, 0.0


def _check_blueprint(field: str, value: Any) -> Any:
    if field.startswith("tone."):
        return clean_field("tone", {field.split(".", 1)[1]: value})[field.split(".", 1)[1]]
    return clean_field(field, value)


def _labelled(text: str) -> list[tuple[str, str]]:
    found = []
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            found.append((" ".join(match.group("label").lower().split()), match.group("value")))
    return found


def _part(
    text: str, labels: Mapping[str, tuple[str, float]], check: Any
) -> tuple[JSON, JSON, list[JSON]]:
    fields: JSON = {}
    confidence: JSON = {}
    rejected: list[JSON] = []
    for label, raw in _labelled(text):
        if label not in labels:
            continue
        field, sure = labels[label]
        try:
            value, guessed = _read_value(field, raw)
            value = check(field, value)
        except InvalidInput as exc:
            rejected.append({"field": field, "value": raw, "reason": exc.detail})
            continue
        score = round(max(0.05, sure - guessed), 2)
        if field in confidence and confidence[field] >= score:
            continue  # a surer label already gave this field
        fields[field] = value
        confidence[field] = score
    return fields, confidence, rejected


def _nest(fields: JSON) -> JSON:
    """Keys like `tone.grit` folded into their objects."""
    out: JSON = {}
    for key, value in fields.items():
        if "." in key:
            top, sub = key.split(".", 1)
            out.setdefault(top, {})[sub] = value
        else:
            out[key] = value
    return out


def _check_recipe(field: str, value: Any) -> Any:
    if field == "template" and not isinstance(value, str):
        raise InvalidInput("template: must be text")
    return value


def propose(text: str) -> JSON:
    """What a reply holds for a blueprint, world entries and a recipe: fields with
    their confidence (0-1), and what could not be read (with the reason)."""
    blueprint, b_conf, b_rejected = _part(text, BLUEPRINT_LABELS, _check_blueprint)
    recipe, r_conf, r_rejected = _part(text, RECIPE_LABELS, _check_recipe)
    heading = next((m.group("title") for m in map(_HEADING.match, text.splitlines()) if m), None)
    title = heading or blueprint.get("name") or "From the studio"
    proposal: JSON = {
        "blueprint": {
            "fields": _nest(blueprint),
            "confidence": b_conf,
            "rejected": b_rejected,
        }
        if blueprint or b_rejected
        else None,
        "entries": [{"title": str(title)[:200], "body": text, "confidence": 1.0}]
        if text.strip()
        else [],
        "recipe": None,
    }
    if "template" in recipe:
        template = recipe["template"]
        recipe.setdefault("name", f"{title} prompt"[:200])
        r_conf.setdefault("name", 0.5)
        nested = _nest(recipe)
        nested["slots"] = [{"name": slot, "required": True} for slot in placeholders(template)]
        proposal["recipe"] = {"fields": nested, "confidence": r_conf, "rejected": r_rejected}
    return proposal


def flat_keys(fields: Mapping[str, Any]) -> list[str]:
    """The keys confidences are given for: tone and style dials one by one."""
    keys: list[str] = []
    for key, value in fields.items():
        if key in ("tone", "style", "negative") and isinstance(value, dict):
            keys += [f"{key}.{sub}" for sub in value]
        else:
            keys.append(key)
    return keys
