"""The studio's structured material: project blueprints (versions, diffs, restore,
Markdown), the prompt recipe vault (search, tags, rendering per tool), and chat to
structure (a studio reply saved as a blueprint, world entries and a recipe in one
call). Everything belongs to the workspace chosen by the X-Workspace header; another
workspace's blueprint or recipe does not exist here (404)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import Field

from taleweaver.api.deps import EngineDep, metadata_for
from taleweaver.api.schemas import Strict
from taleweaver.api.security import Access, requires
from taleweaver.auth import Action
from taleweaver.domain.events import JSON
from taleweaver.domain.studio import (
    CampaignScope,
    Density,
    GameSystem,
    PlayStyle,
    PowerLevel,
    SafetyTool,
    ThreatHorizon,
    VttPlatform,
)

router = APIRouter(prefix="/api/v1", tags=["studio"])

Read = Annotated[Access, requires(Action.WORLD_READ)]
Edit = Annotated[Access, requires(Action.WORLD_EDIT)]
Topics = list[Annotated[str, Field(min_length=1, max_length=80)]]
Words = list[Annotated[str, Field(min_length=1, max_length=60)]]
Version = Annotated[int, Field(ge=1)]


class Tone(Strict):
    grit: int | None = Field(default=None, ge=0, le=10)
    wonder: int | None = Field(default=None, ge=0, le=10)
    intrigue: int | None = Field(default=None, ge=0, le=10)


class BlueprintFields(Strict):
    """A project blueprint's fields; on PATCH only those given change (null clears)."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    game_system: GameSystem | None = None
    custom_system: str | None = Field(
        default=None, max_length=200, description="The system's name, for game_system 'custom'."
    )
    vtt: VttPlatform | None = None
    play_style: PlayStyle | None = None
    campaign_scope: CampaignScope | None = None
    session_length_hours: int | float | None = Field(default=None, ge=0.5, le=12)
    genres: Words | None = None
    themes: Words | None = None
    tone: Tone | None = Field(default=None, description="Dials from 0 to 10.")
    power_level: PowerLevel | None = None
    threat_horizon: ThreatHorizon | None = None
    npc_density: Density | None = None
    exploration_density: Density | None = None
    safety_tools: list[SafetyTool] | None = None
    lines: Topics | None = Field(
        default=None, description="Never in play: the linked world's forbidden topics."
    )
    veils: Topics | None = Field(
        default=None, description="Off-screen only: the linked world's content warnings."
    )
    session_zero_focus: str | None = Field(default=None, max_length=4000)
    starting_region: str | None = Field(default=None, max_length=200)
    signature_faction: str | None = Field(default=None, max_length=200)
    premise: str | None = Field(default=None, max_length=4000)
    world_id: str | None = Field(
        default=None, max_length=64, description="The world whose content rules it fills."
    )


class BlueprintUpdate(BlueprintFields):
    expected_version: int | None = Field(
        default=None, ge=1, description="Refuse (409) unless the blueprint is at this version."
    )


class Restore(Strict):
    version: Version


class Slot(Strict):
    name: str = Field(min_length=1, max_length=40)
    required: bool = True
    default: str | None = Field(default=None, max_length=1000)
    description: str = Field(default="", max_length=500)


class Style(Strict):
    medium: str | None = Field(default=None, max_length=200)
    keywords: list[str] = Field(default_factory=list)
    aspect_ratio: str | None = Field(default=None, description="Like '16:9'.")


class NegativePolicy(Strict):
    terms: list[str] = Field(default_factory=list)
    use_defaults: bool = Field(default=True, description="Add the usual image-tool negatives.")


class RecipeFields(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    kind: Literal["image", "text"] | None = None
    template: str | None = Field(
        default=None,
        min_length=1,
        max_length=4000,
        description="Text with {slot} placeholders; [[Name]] pulls a world entity's canon facts.",
    )
    slots: list[Slot] | None = None
    style: Style | None = None
    negative: NegativePolicy | None = None
    tags: list[str] | None = None
    world_id: str | None = Field(
        default=None, max_length=64, description="The world [[Name]] entities come from."
    )


class RecipeUpdate(RecipeFields):
    expected_version: int | None = Field(default=None, ge=1)


class RenderRequest(Strict):
    slots: dict[str, str] = Field(default_factory=dict, description="Slot name -> value.")
    tool: Literal["generic", "stable-diffusion"] = "generic"
    world_id: str | None = Field(
        default=None, max_length=64, description="Instead of the recipe's own world."
    )


class ReviewedPart(Strict):
    """A proposal's part as reviewed: the fields read, their confidence, the user's
    corrections (which win), and the blueprint or recipe to update (none: a new one)."""

    id: str | None = Field(default=None, max_length=64)
    fields: dict[str, Any] = Field(default_factory=dict)
    confidence: dict[str, float] = Field(default_factory=dict)
    corrections: dict[str, Any] = Field(default_factory=dict)
    rejected: list[dict[str, Any]] = Field(
        default_factory=list, description="Ignored: what the proposal could not read."
    )


class ReviewedEntry(Strict):
    title: str = Field(default="From the studio", min_length=1, max_length=200)
    body: str | None = Field(default=None, description="None: the reply's text.")
    tags: list[str] = Field(default_factory=list)
    entry_id: str | None = Field(default=None, description="Replace this entry instead.")
    confidence: float | None = Field(default=None, ge=0, le=1)
    corrections: dict[str, Any] = Field(default_factory=dict)


class ApplyStructure(Strict):
    world_id: str | None = Field(
        default=None,
        max_length=64,
        description="Where entries go; a new blueprint or recipe is linked to it too.",
    )
    blueprint: ReviewedPart | None = None
    entries: list[ReviewedEntry] = Field(default_factory=list)
    recipe: ReviewedPart | None = None


def _given(body: Strict, *, drop: tuple[str, ...] = ()) -> JSON:
    data = body.model_dump(mode="json", exclude_unset=True)
    return {k: v for k, v in data.items() if k not in drop}


# --- blueprints ----------------------------------------------------------------------------


@router.post("/blueprints", status_code=201)
async def create_blueprint(body: BlueprintFields, engine: EngineDep, access: Edit) -> JSON:
    """A new project blueprint (version 1)."""
    meta = metadata_for(access.principal.user_id)
    return await engine.studio.blueprints.create(access.workspace_id, _given(body), meta)


@router.get("/blueprints")
async def list_blueprints(engine: EngineDep, access: Read) -> list[JSON]:
    return await engine.studio.blueprints.all(access.workspace_id)


@router.get("/blueprints/{blueprint_id}")
async def get_blueprint(blueprint_id: str, engine: EngineDep, access: Read) -> JSON:
    return await engine.studio.blueprints.get(access.workspace_id, blueprint_id)


@router.patch("/blueprints/{blueprint_id}")
async def update_blueprint(
    blueprint_id: str, body: BlueprintUpdate, engine: EngineDep, access: Edit
) -> JSON:
    """Save the fields given as a new version (no change, no new version)."""
    return await engine.studio.blueprints.update(
        access.workspace_id,
        blueprint_id,
        _given(body, drop=("expected_version",)),
        metadata_for(access.principal.user_id),
        expected_version=body.expected_version,
    )


@router.delete("/blueprints/{blueprint_id}", status_code=204)
async def delete_blueprint(blueprint_id: str, engine: EngineDep, access: Edit) -> Response:
    """Delete it; its lines and veils leave the world's content rules."""
    meta = metadata_for(access.principal.user_id)
    await engine.studio.blueprints.delete(access.workspace_id, blueprint_id, meta)
    return Response(status_code=204)


@router.get("/blueprints/{blueprint_id}/versions")
async def blueprint_versions(blueprint_id: str, engine: EngineDep, access: Read) -> list[JSON]:
    """Every saved version: who, when, which fields changed and where they came from."""
    return await engine.studio.blueprints.versions(access.workspace_id, blueprint_id)


@router.get("/blueprints/{blueprint_id}/versions/{version}")
async def blueprint_version(
    blueprint_id: str, version: int, engine: EngineDep, access: Read
) -> JSON:
    return await engine.studio.blueprints.version(access.workspace_id, blueprint_id, version)


@router.get("/blueprints/{blueprint_id}/diff")
async def diff_blueprint(
    blueprint_id: str,
    engine: EngineDep,
    access: Read,
    from_version: Annotated[int, Query(alias="from", ge=1)],
    to_version: Annotated[int, Query(alias="to", ge=1)],
) -> JSON:
    """Two versions compared field by field."""
    return await engine.studio.blueprints.diff(
        access.workspace_id, blueprint_id, from_version, to_version
    )


@router.post("/blueprints/{blueprint_id}/restore")
async def restore_blueprint(
    blueprint_id: str, body: Restore, engine: EngineDep, access: Edit
) -> JSON:
    """A new version holding what an earlier one held."""
    meta = metadata_for(access.principal.user_id)
    return await engine.studio.blueprints.restore(
        access.workspace_id, blueprint_id, body.version, meta
    )


@router.get("/blueprints/{blueprint_id}/markdown", response_class=Response)
async def blueprint_markdown(
    blueprint_id: str,
    engine: EngineDep,
    access: Read,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """The blueprint (or one version of it) as Markdown."""
    text = await engine.studio.blueprints.markdown(access.workspace_id, blueprint_id, version)
    return Response(text, media_type="text/markdown; charset=utf-8")


# --- recipes -------------------------------------------------------------------------------


@router.post("/recipes", status_code=201)
async def create_recipe(body: RecipeFields, engine: EngineDep, access: Edit) -> JSON:
    """A new prompt recipe in the vault (version 1)."""
    meta = metadata_for(access.principal.user_id)
    return await engine.studio.recipes.create(access.workspace_id, _given(body), meta)


@router.get("/recipes")
async def search_recipes(
    engine: EngineDep,
    access: Read,
    q: Annotated[str | None, Query(max_length=200, description="Words to find.")] = None,
    tag: Annotated[list[str] | None, Query(description="Carrying every tag given.")] = None,
    kind: Literal["image", "text"] | None = None,
) -> list[JSON]:
    """The vault: recipes by words in their name, description, template or tags."""
    return await engine.studio.recipes.search(access.workspace_id, text=q, tags=tag, kind=kind)


@router.get("/recipes/{recipe_id}")
async def get_recipe(recipe_id: str, engine: EngineDep, access: Read) -> JSON:
    return await engine.studio.recipes.get(access.workspace_id, recipe_id)


@router.patch("/recipes/{recipe_id}")
async def update_recipe(
    recipe_id: str, body: RecipeUpdate, engine: EngineDep, access: Edit
) -> JSON:
    return await engine.studio.recipes.update(
        access.workspace_id,
        recipe_id,
        _given(body, drop=("expected_version",)),
        metadata_for(access.principal.user_id),
        expected_version=body.expected_version,
    )


@router.delete("/recipes/{recipe_id}", status_code=204)
async def delete_recipe(recipe_id: str, engine: EngineDep, access: Edit) -> Response:
    meta = metadata_for(access.principal.user_id)
    await engine.studio.recipes.delete(access.workspace_id, recipe_id, meta)
    return Response(status_code=204)


@router.get("/recipes/{recipe_id}/versions")
async def recipe_versions(recipe_id: str, engine: EngineDep, access: Read) -> list[JSON]:
    return await engine.studio.recipes.versions(access.workspace_id, recipe_id)


@router.get("/recipes/{recipe_id}/diff")
async def diff_recipe(
    recipe_id: str,
    engine: EngineDep,
    access: Read,
    from_version: Annotated[int, Query(alias="from", ge=1)],
    to_version: Annotated[int, Query(alias="to", ge=1)],
) -> JSON:
    return await engine.studio.recipes.diff(
        access.workspace_id, recipe_id, from_version, to_version
    )


@router.post("/recipes/{recipe_id}/restore")
async def restore_recipe(recipe_id: str, body: Restore, engine: EngineDep, access: Edit) -> JSON:
    meta = metadata_for(access.principal.user_id)
    return await engine.studio.recipes.restore(access.workspace_id, recipe_id, body.version, meta)


@router.post("/recipes/{recipe_id}/render")
async def render_recipe(
    recipe_id: str, body: RenderRequest, engine: EngineDep, access: Read
) -> JSON:
    """The recipe filled and rendered for a tool; entities' canon facts are cited."""
    return await engine.studio.recipes.render(
        access.workspace_id, recipe_id, body.slots, tool=body.tool, world_id=body.world_id
    )


# --- chat to structure -----------------------------------------------------------------------


@router.get("/sessions/{session_id}/turns/{turn_id}/structure")
async def propose_structure(
    session_id: str,
    turn_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SESSION_READ)],
) -> JSON:
    """What a studio reply holds for a blueprint, world entries and a prompt recipe,
    each field with its confidence, to review before applying."""
    event = await engine.sessions.turn_event(access.workspace_id, session_id, turn_id)
    text = str((event.payload.get("reply") or {}).get("text") or "")
    return engine.studio.structure.propose(text, {"session_id": session_id, "turn_id": turn_id})


@router.post("/sessions/{session_id}/turns/{turn_id}/structure", status_code=201)
async def apply_structure(
    session_id: str, turn_id: str, body: ApplyStructure, engine: EngineDep, access: Edit
) -> JSON:
    """Save a reviewed proposal in one call: the blueprint, the world entries and the
    recipe, corrections applied; every applied field names this reply."""
    event = await engine.sessions.turn_event(access.workspace_id, session_id, turn_id)
    text = str((event.payload.get("reply") or {}).get("text") or "")
    return await engine.studio.structure.apply(
        access.workspace_id,
        {"session_id": session_id, "turn_id": turn_id},
        text,
        body.model_dump(mode="json", exclude_unset=True),
        metadata_for(access.principal.user_id),
    )
