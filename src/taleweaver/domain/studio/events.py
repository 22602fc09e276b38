"""The studio's events: each blueprint and each recipe is a stream of its own, and
every save is one event holding the whole saved value (a version)."""

from __future__ import annotations

from enum import StrEnum


class StudioEvent(StrEnum):
    BLUEPRINT_SAVED = "blueprint.saved"
    BLUEPRINT_DELETED = "blueprint.deleted"
    RECIPE_SAVED = "recipe.saved"
    RECIPE_DELETED = "recipe.deleted"


def blueprint_stream(blueprint_id: str) -> str:
    return f"blueprint:{blueprint_id}"


def recipe_stream(recipe_id: str) -> str:
    return f"recipe:{recipe_id}"
