"""The studio's structured material: project blueprints, prompt recipes, and a
studio reply read into both. Pure: no I/O."""

from taleweaver.domain.studio.blueprints import (
    FIELDS,
    CampaignScope,
    Density,
    GameSystem,
    PlayStyle,
    PowerLevel,
    SafetyTool,
    ThreatHorizon,
    VttPlatform,
    blueprint_markdown,
    changed_fields,
    clean_blueprint,
    clean_field,
    diff_fields,
)
from taleweaver.domain.studio.events import StudioEvent, blueprint_stream, recipe_stream
from taleweaver.domain.studio.ports import ContentRulesPort, WorldBiblePort
from taleweaver.domain.studio.recipes import (
    RENDERERS,
    CanonEntity,
    CanonFact,
    Rendered,
    clean_recipe,
    entity_labels,
    fill_slots,
    render,
)
from taleweaver.domain.studio.structure import propose

__all__ = [
    "FIELDS",
    "RENDERERS",
    "CampaignScope",
    "CanonEntity",
    "CanonFact",
    "ContentRulesPort",
    "Density",
    "GameSystem",
    "PlayStyle",
    "PowerLevel",
    "Rendered",
    "SafetyTool",
    "StudioEvent",
    "ThreatHorizon",
    "VttPlatform",
    "WorldBiblePort",
    "blueprint_markdown",
    "blueprint_stream",
    "changed_fields",
    "clean_blueprint",
    "clean_field",
    "clean_recipe",
    "diff_fields",
    "entity_labels",
    "fill_slots",
    "propose",
    "recipe_stream",
    "render",
]
