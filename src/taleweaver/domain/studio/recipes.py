"""Prompt recipes: templates with required and optional slots, a style profile and a
negative-prompt policy, rendered for one tool. Slots may name world entities as
`[[Captain Mara]]`; the studio looks them up and this module writes their canon
appearance facts into the prompt, citing each. Pure: no I/O."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.events import JSON
from taleweaver.domain.world import clean_tags
from taleweaver.domain.world.text import wiki_links

KINDS = ("image", "text")
MAX_TEMPLATE = 4000
MAX_SLOTS = 20
MAX_VALUE = 1000
_SLOT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_LINK = re.compile(r"\[\[([^\[\]|]+)(?:\|([^\[\]]+))?\]\]")
_ASPECT = re.compile(r"^(\d{1,2}):(\d{1,2})$")
# What a negative prompt leaves out unless the recipe's policy turns these off.
DEFAULT_NEGATIVE = ("blurry", "low quality", "watermark", "text", "deformed hands")
# Fact attributes that describe how someone or something looks (a word of the
# attribute is enough: "hair colour", "distinguishing scar").
APPEARANCE_WORDS = frozenset(
    {
        "appearance",
        "look",
        "looks",
        "hair",
        "eyes",
        "eye",
        "build",
        "height",
        "clothing",
        "clothes",
        "attire",
        "outfit",
        "wears",
        "skin",
        "face",
        "features",
        "scar",
        "scars",
        "tattoo",
        "tattoos",
        "complexion",
        "age",
        "species",
        "colour",
        "color",
        "armor",
        "armour",
        "uniform",
        "beard",
    }
)
RECIPE_FIELDS = (
    "name",
    "description",
    "kind",
    "template",
    "slots",
    "style",
    "negative",
    "tags",
    "world_id",
)


def placeholders(template: str) -> list[str]:
    """The slot names a template uses, in order, once each."""
    return list(dict.fromkeys(m.group(1) for m in _PLACEHOLDER.finditer(template)))


def clean_recipe(data: Mapping[str, Any]) -> JSON:
    """A whole recipe, every field checked; InvalidInput names the wrong one."""
    unknown = sorted(set(data) - set(RECIPE_FIELDS))
    if unknown:
        raise InvalidInput(f"unknown recipe fields: {', '.join(unknown)}")
    name = _text("name", data.get("name"), 200)
    if not name:
        raise InvalidInput("name: a recipe needs a name")
    kind = data.get("kind") or "image"
    if kind not in KINDS:
        raise InvalidInput(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    template = _text("template", data.get("template"), MAX_TEMPLATE)
    if not template:
        raise InvalidInput("template: must not be empty")
    slots = _slots(data.get("slots") or [])
    used = placeholders(template)
    bad = [p for p in used if not _SLOT_NAME.match(p)]
    if bad or template.count("{") != template.count("}"):
        raise InvalidInput(
            "template: slots are written {name}, lower-case letters, digits and '_'"
            + (f" (not {{{bad[0]}}})" if bad else "")
        )
    declared = [s["name"] for s in slots]
    undeclared = [p for p in used if p not in declared]
    if undeclared:
        raise InvalidInput(f"template: slot {{{undeclared[0]}}} is not declared in slots")
    unused = [s for s in declared if s not in used]
    if unused:
        raise InvalidInput(f"slots: {unused[0]!r} is declared but the template never uses it")
    world = data.get("world_id")
    return {
        "name": name,
        "description": _text("description", data.get("description"), 2000),
        "kind": kind,
        "template": template,
        "slots": slots,
        "style": _style(data.get("style") or {}),
        "negative": _negative(data.get("negative") or {}),
        "tags": _tags(data.get("tags") or []),
        "world_id": _text("world_id", world, 100) or None if world is not None else None,
    }


def _text(field: str, value: Any, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: must be text")
    text = value.strip()
    if len(text) > limit:
        raise InvalidInput(f"{field}: at most {limit} characters")
    return text


def _tags(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise InvalidInput("tags: must be a list")
    try:
        return clean_tags(value)
    except InvalidInput as exc:
        raise InvalidInput(f"tags: {exc.detail}") from exc


def _slots(value: Any) -> list[JSON]:
    if not isinstance(value, list) or not all(isinstance(s, dict) for s in value):
        raise InvalidInput("slots: must be a list of {name, required, default, description}")
    if len(value) > MAX_SLOTS:
        raise InvalidInput(f"slots: at most {MAX_SLOTS}")
    out: list[JSON] = []
    for slot in value:
        unknown = sorted(set(slot) - {"name", "required", "default", "description"})
        if unknown:
            raise InvalidInput(f"slots: unknown keys {', '.join(unknown)}")
        name = slot.get("name")
        if not isinstance(name, str) or not _SLOT_NAME.match(name):
            raise InvalidInput(
                f"slots: name {name!r} must be lower-case letters, digits and '_' (1-40)"
            )
        if name in (s["name"] for s in out):
            raise InvalidInput(f"slots: {name!r} is declared twice")
        required = slot.get("required", True)
        if not isinstance(required, bool):
            raise InvalidInput(f"slots.{name}.required: must be true or false")
        default = slot.get("default")
        if default is not None:
            default = _text(f"slots.{name}.default", default, MAX_VALUE)
        if required and default:
            raise InvalidInput(f"slots.{name}: a required slot has no default")
        description = _text(f"slots.{name}.description", slot.get("description"), 500)
        out.append(
            {"name": name, "required": required, "default": default, "description": description}
        )
    return out


def _words(field: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise InvalidInput(f"{field}: must be a list")
    out: list[str] = []
    for item in value:
        text = " ".join(_text(field, item, 120).split())
        if not text:
            raise InvalidInput(f"{field}: items must not be empty")
        if text not in out:
            out.append(text)
    if len(out) > 50:
        raise InvalidInput(f"{field}: at most 50 items")
    return out


def _style(value: Any) -> JSON:
    if not isinstance(value, dict):
        raise InvalidInput("style: must be an object of medium, keywords and aspect_ratio")
    unknown = sorted(set(value) - {"medium", "keywords", "aspect_ratio"})
    if unknown:
        raise InvalidInput(f"style: unknown keys {', '.join(unknown)}")
    aspect = value.get("aspect_ratio")
    if aspect is not None:
        match = _ASPECT.match(str(aspect)) if isinstance(aspect, str) else None
        if match is None or "0" in (match.group(1), match.group(2)):
            raise InvalidInput(f"style.aspect_ratio: {aspect!r} is not like '16:9'")
    return {
        "medium": _text("style.medium", value.get("medium"), 200) or None,
        "keywords": _words("style.keywords", value.get("keywords") or []),
        "aspect_ratio": aspect,
    }


def _negative(value: Any) -> JSON:
    if not isinstance(value, dict):
        raise InvalidInput("negative: must be an object of terms and use_defaults")
    unknown = sorted(set(value) - {"terms", "use_defaults"})
    if unknown:
        raise InvalidInput(f"negative: unknown keys {', '.join(unknown)}")
    use_defaults = value.get("use_defaults", True)
    if not isinstance(use_defaults, bool):
        raise InvalidInput("negative.use_defaults: must be true or false")
    return {
        "terms": _words("negative.terms", value.get("terms") or []),
        "use_defaults": use_defaults,
    }


# --- rendering ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CanonFact:
    id: str
    attribute: str
    value: Any


@dataclass(frozen=True, slots=True)
class CanonEntity:
    """A world entity a slot names, with the facts the bible holds about it."""

    id: str
    name: str
    status: str
    facts: tuple[CanonFact, ...] = ()


def fill_slots(recipe: Mapping[str, Any], values: Mapping[str, Any]) -> str:
    """The template with every slot filled; InvalidInput for an unknown slot, a
    missing required one, or a value that is not text."""
    slots = {s["name"]: s for s in recipe["slots"]}
    unknown = sorted(set(values) - set(slots))
    if unknown:
        raise InvalidInput(f"slots: {', '.join(unknown)} is not a slot of this recipe")
    filled: dict[str, str] = {}
    for name, slot in slots.items():
        value = values.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"slots.{name}: must be text")
        value = " ".join((value or "").split())
        if len(value) > MAX_VALUE:
            raise InvalidInput(f"slots.{name}: at most {MAX_VALUE} characters")
        if not value and slot["required"]:
            raise InvalidInput(f"slots.{name}: a required slot needs a value")
        filled[name] = value or slot["default"] or ""
    text = _PLACEHOLDER.sub(lambda m: filled[m.group(1)], recipe["template"])
    # An optional slot left empty leaves no dangling separator behind.
    text = re.sub(r"\s*,\s*(?=,|$)", "", text)
    text = re.sub(r"^\s*,\s*", "", text)
    return " ".join(text.split())


def entity_labels(text: str) -> list[str]:
    """The `[[...]]` entity names a filled template mentions."""
    return wiki_links(text)


def is_appearance(attribute: str) -> bool:
    words = re.findall(r"[a-z]+", attribute.lower())
    return any(w in APPEARANCE_WORDS for w in words)


def expand_entities(
    text: str, entities: Mapping[str, CanonEntity]
) -> tuple[str, list[JSON], list[str]]:
    """`[[Name]]` replaced by the name and its canon appearance facts; the citations
    (entity id, fact id) and warnings (an entity not canon yet) that go with them."""
    citations: list[JSON] = []
    warnings: list[str] = []

    def expand(match: re.Match[str]) -> str:
        label = " ".join(match.group(1).split())
        entity = entities[label]
        shown = " ".join(match.group(2).split()) if match.group(2) else entity.name
        if entity.status != "canon":
            warnings.append(f"{entity.name} is {entity.status}, not canon: no facts used")
            return shown
        facts = [f for f in entity.facts if is_appearance(f.attribute)]
        for fact in facts:
            citation = {
                "entity_id": entity.id,
                "entity": entity.name,
                "fact_id": fact.id,
                "attribute": fact.attribute,
                "value": fact.value,
            }
            if citation not in citations:
                citations.append(citation)
        if not facts:
            return shown
        described = "; ".join(f"{f.attribute}: {f.value}" for f in facts)
        return f"{shown} ({described})"

    return _LINK.sub(expand, text), citations, warnings


@dataclass(frozen=True, slots=True)
class Rendered:
    tool: str
    output: JSON
    citations: list[JSON] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> JSON:
        return {
            "tool": self.tool,
            **self.output,
            "citations": self.citations,
            "warnings": self.warnings,
        }


def _negatives(recipe: Mapping[str, Any]) -> list[str]:
    policy = recipe["negative"]
    terms = list(DEFAULT_NEGATIVE) if policy["use_defaults"] else []
    return list(dict.fromkeys([*terms, *policy["terms"]]))


def _styled(recipe: Mapping[str, Any], text: str) -> str:
    style = recipe["style"]
    parts = [text, *([style["medium"]] if style["medium"] else []), *style["keywords"]]
    return ", ".join(p for p in parts if p)


def render_generic(recipe: Mapping[str, Any], text: str) -> JSON:
    """One prompt for any text or image tool: the style after the subject, then what
    to avoid in words."""
    prompt = _styled(recipe, text)
    if recipe["style"]["aspect_ratio"]:
        prompt += f". Aspect ratio {recipe['style']['aspect_ratio']}"
    negatives = _negatives(recipe) if recipe["kind"] == "image" else recipe["negative"]["terms"]
    if negatives:
        prompt += ". Avoid: " + ", ".join(negatives) + "."
    return {"text": prompt}


_SD_LONG_SIDE = 1024


def render_stable_diffusion(recipe: Mapping[str, Any], text: str) -> JSON:
    """A positive / negative pair, as Stable Diffusion front ends take them, with a
    width and height from the aspect ratio (multiples of 64)."""
    aspect = recipe["style"]["aspect_ratio"] or "1:1"
    w, h = (int(n) for n in aspect.split(":"))
    scale = _SD_LONG_SIDE / max(w, h)
    width, height = (max(64, round(n * scale / 64) * 64) for n in (w, h))
    return {
        "positive": _styled(recipe, text),
        "negative": ", ".join(_negatives(recipe)),
        "parameters": {"width": width, "height": height},
    }


Renderer = Callable[[Mapping[str, Any], str], JSON]
RENDERERS: dict[str, Renderer] = {
    "generic": render_generic,
    "stable-diffusion": render_stable_diffusion,
}


def render(
    recipe: Mapping[str, Any],
    filled: str,
    entities: Mapping[str, CanonEntity],
    tool: str,
) -> Rendered:
    """A filled template (see `fill_slots`) rendered for one tool."""
    renderer = RENDERERS.get(tool)
    if renderer is None:
        raise InvalidInput(f"tool: {tool!r} is not one of {', '.join(RENDERERS)}")
    text, citations, warnings = expand_entities(filled, entities)
    return Rendered(tool, renderer(recipe, text), citations, warnings)


def search_text(recipe: Mapping[str, Any]) -> str:
    """What the vault's search reads: name, description, template and tags."""
    parts: Sequence[str] = (
        recipe["name"],
        recipe["description"],
        recipe["template"],
        " ".join(recipe["tags"]),
    )
    return "\n".join(parts).lower()
