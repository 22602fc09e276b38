"""Crisis resources for a locale, from `safety/data/resources.toml` (fallback: en)."""

from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib import resources
from typing import Any

from taleweaver.safety.protocol import CrisisResponse

FALLBACK = "en"


@lru_cache(maxsize=1)
def _locales() -> dict[str, Any]:
    text = (
        resources.files("taleweaver.safety").joinpath("data", "resources.toml").read_text("utf-8")
    )
    locales: dict[str, Any] = tomllib.loads(text)["locales"]
    return locales


def known_locales() -> list[str]:
    return sorted(_locales())


def resolve_locale(wanted: str | None) -> str:
    """The best shipped locale: exact ("en-GB"), then language ("en"), then en."""
    locales = _locales()
    if wanted:
        tag = wanted.replace("_", "-").strip()
        by_lower = {k.lower(): k for k in locales}
        if tag.lower() in by_lower:
            return by_lower[tag.lower()]
        language = tag.split("-")[0].lower()
        if language in by_lower:
            return by_lower[language]
    return FALLBACK


def crisis_response(locale: str | None) -> CrisisResponse:
    entry = _locales()[resolve_locale(locale)]
    items = [{str(k): str(v) for k, v in r.items()} for r in entry["resources"]]
    return CrisisResponse(message=str(entry["message"]), resources=items)


def render(response: CrisisResponse) -> str:
    """The supportive message and its resources as the text the player reads."""
    lines = [response.message, ""]
    for item in response.resources:
        reach = " · ".join(v for v in (item.get("contact"), item.get("url")) if v)
        lines.append(f"- {item['name']}: {reach}" if reach else f"- {item['name']}")
    return "\n".join(lines)
