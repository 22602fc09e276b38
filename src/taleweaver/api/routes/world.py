"""World memory: worlds, the world bible, hybrid search, recall traces, the review
queue, continuity, export and import. A world belongs to one workspace (chosen by
the X-Workspace header); another workspace's world does not exist here (404)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from taleweaver.api.deps import EngineDep, metadata_for
from taleweaver.api.schemas import FreeJSON, Strict
from taleweaver.api.security import Access, requires
from taleweaver.auth import Action
from taleweaver.domain.events import JSON

router = APIRouter(prefix="/api/v1", tags=["world"])

Read = Annotated[Access, requires(Action.WORLD_READ)]
Edit = Annotated[Access, requires(Action.WORLD_EDIT)]
Review = Annotated[Access, requires(Action.WORLD_REVIEW)]
StoryTime = int | str | None


class WorldCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    settings: FreeJSON = Field(
        default_factory=dict,
        description="auto_accept_threshold (0-1): artifacts at least this confident "
        "become canon without review.",
    )


class WorldUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = None
    settings: FreeJSON | None = None


class EntityCreate(Strict):
    type: str = Field(description="faction, npc, location, event, timeline_arc, item, or your own")
    name: str = Field(min_length=1, max_length=200)
    aliases: list[str] = Field(default_factory=list)
    summary: str = ""
    tags: list[str] = Field(default_factory=list)
    status: Literal["draft", "reviewed", "canon", "deprecated"] = "draft"
    source_refs: list[dict[str, Any]] = Field(default_factory=list)


class EntityUpdate(Strict):
    type: str | None = None
    name: str | None = Field(default=None, min_length=1, max_length=200)
    aliases: list[str] | None = None
    summary: str | None = None
    tags: list[str] | None = None
    status: Literal["draft", "reviewed", "canon", "deprecated"] | None = None
    source_refs: list[dict[str, Any]] | None = None


class FactCreate(Strict):
    attribute: str = Field(min_length=1, max_length=100)
    value: str | int | float | bool
    valid_from: StoryTime = Field(default=None, description="Story time: integer or sortable text.")
    valid_to: StoryTime = None
    source_refs: list[dict[str, Any]] = Field(default_factory=list)


class RelationCreate(Strict):
    type: str = Field(min_length=1, max_length=100, description="e.g. ally_of, lives_in")
    target_id: str = Field(min_length=1, max_length=64)
    source_refs: list[dict[str, Any]] = Field(default_factory=list)


class EntryCreate(Strict):
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", description="Markdown; [[Name]] links to entities, #tags.")
    tags: list[str] = Field(default_factory=list)
    kind: Literal["note", "blueprint", "recipe"] = "note"


class EntryUpdate(Strict):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    body: str | None = None
    tags: list[str] | None = None


class ReviewDecision(Strict):
    decision: Literal["accept", "reject"]
    fields: dict[str, Literal["accept", "reject"]] = Field(
        default_factory=dict, description="Per field; fields not named are accepted."
    )
    edits: dict[str, Any] = Field(default_factory=dict, description="New values, per field.")


class Resolution(Strict):
    action: Literal["merge", "fork", "supersede", "ignore"]
    keep: str | None = Field(
        default=None, description="merge: the entity to keep; supersede: the fact that wins."
    )


class ApplyReply(Strict):
    world_id: str
    target: Literal["entry", "blueprint", "recipe"] = "entry"
    title: str = Field(default="From the studio", min_length=1, max_length=200)
    entry_id: str | None = Field(default=None, description="Replace this entry's body instead.")


class ContextTrace(BaseModel):
    turn_id: str
    kept: list[dict[str, Any]]
    cut: list[dict[str, Any]]


# --- worlds --------------------------------------------------------------------------------


@router.post("/worlds", status_code=201)
async def create_world(body: WorldCreate, engine: EngineDep, access: Edit) -> JSON:
    return await engine.world.bible.create_world(
        access.workspace_id,
        name=body.name,
        description=body.description,
        settings=body.settings,
        meta=metadata_for(access.principal.user_id),
    )


@router.get("/worlds")
async def list_worlds(engine: EngineDep, access: Read) -> list[JSON]:
    return await engine.world.bible.worlds(access.workspace_id)


@router.get("/worlds/{world_id}")
async def get_world(world_id: str, engine: EngineDep, access: Read) -> JSON:
    return await engine.world.bible.world(access.workspace_id, world_id)


@router.patch("/worlds/{world_id}")
async def update_world(world_id: str, body: WorldUpdate, engine: EngineDep, access: Edit) -> JSON:
    return await engine.world.bible.update_world(
        access.workspace_id,
        world_id,
        body.model_dump(exclude_none=True),
        metadata_for(access.principal.user_id),
    )


@router.delete("/worlds/{world_id}", status_code=204)
async def delete_world(world_id: str, engine: EngineDep, access: Edit) -> Response:
    await engine.world.bible.delete_world(
        access.workspace_id, world_id, metadata_for(access.principal.user_id)
    )
    return Response(status_code=204)


@router.get("/worlds/{world_id}/export")
async def export_world(world_id: str, engine: EngineDep, access: Read) -> JSON:
    return await engine.world.export(access.workspace_id, world_id)


@router.post("/worlds/import", status_code=201)
async def import_world(body: dict[str, Any], engine: EngineDep, access: Edit) -> JSON:
    """A Taleweaver world export, as a new world."""
    return await engine.world.import_(
        access.workspace_id, body, metadata_for(access.principal.user_id)
    )


# --- entities, facts, relations ---------------------------------------------------------------


@router.post("/worlds/{world_id}/entities", status_code=201)
async def create_entity(world_id: str, body: EntityCreate, engine: EngineDep, access: Edit) -> JSON:
    return await engine.world.bible.create_entity(
        access.workspace_id, world_id, body.model_dump(), metadata_for(access.principal.user_id)
    )


@router.get("/worlds/{world_id}/entities")
async def list_entities(
    world_id: str,
    engine: EngineDep,
    access: Read,
    type: str | None = None,
    status: str | None = None,
    tag: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> list[JSON]:
    return await engine.world.bible.entities(
        access.workspace_id,
        world_id,
        type=type,
        status=status,
        tag=tag,
        limit=limit,
        offset=offset,
    )


@router.get("/worlds/{world_id}/entities/{entity_id}")
async def get_entity(world_id: str, entity_id: str, engine: EngineDep, access: Read) -> JSON:
    return await engine.world.bible.entity(access.workspace_id, world_id, entity_id)


@router.patch("/worlds/{world_id}/entities/{entity_id}")
async def update_entity(
    world_id: str, entity_id: str, body: EntityUpdate, engine: EngineDep, access: Edit
) -> JSON:
    return await engine.world.bible.update_entity(
        access.workspace_id,
        world_id,
        entity_id,
        body.model_dump(exclude_none=True),
        metadata_for(access.principal.user_id),
    )


@router.delete("/worlds/{world_id}/entities/{entity_id}", status_code=204)
async def delete_entity(world_id: str, entity_id: str, engine: EngineDep, access: Edit) -> Response:
    await engine.world.bible.delete_entity(
        access.workspace_id, world_id, entity_id, metadata_for(access.principal.user_id)
    )
    return Response(status_code=204)


@router.get("/worlds/{world_id}/entities/{entity_id}/history")
async def entity_history(
    world_id: str, entity_id: str, engine: EngineDep, access: Read
) -> list[JSON]:
    """Every change to the entity, oldest first: the event, who made it and when."""
    return await engine.world.bible.history(access.workspace_id, world_id, entity_id)


@router.post("/worlds/{world_id}/entities/{entity_id}/facts", status_code=201)
async def add_fact(
    world_id: str, entity_id: str, body: FactCreate, engine: EngineDep, access: Edit
) -> JSON:
    return await engine.world.bible.add_fact(
        access.workspace_id,
        world_id,
        entity_id,
        body.model_dump(),
        metadata_for(access.principal.user_id),
    )


@router.get("/worlds/{world_id}/facts")
async def list_facts(world_id: str, engine: EngineDep, access: Read) -> list[JSON]:
    return await engine.world.bible.facts(access.workspace_id, world_id)


@router.delete("/worlds/{world_id}/facts/{fact_id}", status_code=204)
async def remove_fact(world_id: str, fact_id: str, engine: EngineDep, access: Edit) -> Response:
    await engine.world.bible.remove_fact(
        access.workspace_id, world_id, fact_id, metadata_for(access.principal.user_id)
    )
    return Response(status_code=204)


@router.post("/worlds/{world_id}/entities/{entity_id}/relations", status_code=201)
async def add_relation(
    world_id: str, entity_id: str, body: RelationCreate, engine: EngineDep, access: Edit
) -> JSON:
    return await engine.world.bible.add_relation(
        access.workspace_id,
        world_id,
        entity_id,
        body.model_dump(),
        metadata_for(access.principal.user_id),
    )


@router.delete("/worlds/{world_id}/relations/{relation_id}", status_code=204)
async def remove_relation(
    world_id: str, relation_id: str, engine: EngineDep, access: Edit
) -> Response:
    await engine.world.bible.remove_relation(
        access.workspace_id, world_id, relation_id, metadata_for(access.principal.user_id)
    )
    return Response(status_code=204)


# --- entries ------------------------------------------------------------------------------------


@router.post("/worlds/{world_id}/entries", status_code=201)
async def create_entry(world_id: str, body: EntryCreate, engine: EngineDep, access: Edit) -> JSON:
    return await engine.world.bible.create_entry(
        access.workspace_id, world_id, body.model_dump(), metadata_for(access.principal.user_id)
    )


@router.get("/worlds/{world_id}/entries")
async def list_entries(world_id: str, engine: EngineDep, access: Read) -> list[JSON]:
    return await engine.world.bible.entries(access.workspace_id, world_id)


@router.get("/worlds/{world_id}/entries/{entry_id}")
async def get_entry(world_id: str, entry_id: str, engine: EngineDep, access: Read) -> JSON:
    return await engine.world.bible.entry(access.workspace_id, world_id, entry_id)


@router.patch("/worlds/{world_id}/entries/{entry_id}")
async def update_entry(
    world_id: str, entry_id: str, body: EntryUpdate, engine: EngineDep, access: Edit
) -> JSON:
    return await engine.world.bible.update_entry(
        access.workspace_id,
        world_id,
        entry_id,
        body.model_dump(exclude_none=True),
        metadata_for(access.principal.user_id),
    )


@router.delete("/worlds/{world_id}/entries/{entry_id}", status_code=204)
async def delete_entry(world_id: str, entry_id: str, engine: EngineDep, access: Edit) -> Response:
    await engine.world.bible.delete_entry(
        access.workspace_id, world_id, entry_id, metadata_for(access.principal.user_id)
    )
    return Response(status_code=204)


# --- search, review, continuity -------------------------------------------------------------


@router.get("/worlds/{world_id}/search")
async def search_world(
    world_id: str,
    engine: EngineDep,
    access: Read,
    q: Annotated[str, Query(min_length=1, max_length=2000)],
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> list[JSON]:
    """Hybrid search (keyword, vector, graph), each hit with the reasons it was found."""
    return await engine.world.search_hits(access.workspace_id, world_id, q, limit=limit)


@router.get("/worlds/{world_id}/review")
async def review_queue(
    world_id: str,
    engine: EngineDep,
    access: Read,
    status: Literal["pending", "accepted", "rejected"] | None = "pending",
) -> list[JSON]:
    """Artifacts extracted from committed turns, waiting for review (or decided)."""
    return await engine.world.review.items(access.workspace_id, world_id, status=status)


@router.post("/worlds/{world_id}/review/{artifact_id}")
async def review_artifact(
    world_id: str, artifact_id: str, body: ReviewDecision, engine: EngineDep, access: Review
) -> JSON:
    """Accept (canon, with per-field rejections and edits) or reject an artifact."""
    return await engine.world.review.review(
        access.workspace_id,
        world_id,
        artifact_id,
        accept=body.decision == "accept",
        fields=dict(body.fields),
        edits=body.edits,
        meta=metadata_for(access.principal.user_id),
    )


@router.post("/worlds/{world_id}/continuity")
async def run_continuity(world_id: str, engine: EngineDep, access: Review) -> list[JSON]:
    """Check the whole world now; returns the open findings, each citing both sides."""
    return await engine.world.continuity.run(
        access.workspace_id, world_id, metadata_for(access.principal.user_id)
    )


@router.get("/worlds/{world_id}/continuity")
async def list_findings(
    world_id: str,
    engine: EngineDep,
    access: Read,
    status: Literal["open", "resolved", "ignored", "cleared"] | None = None,
) -> list[JSON]:
    return await engine.world.continuity.findings(access.workspace_id, world_id, status=status)


@router.post("/worlds/{world_id}/continuity/{finding_id}")
async def resolve_finding(
    world_id: str, finding_id: str, body: Resolution, engine: EngineDep, access: Review
) -> JSON:
    return await engine.world.continuity.resolve(
        access.workspace_id,
        world_id,
        finding_id,
        body.action,
        metadata_for(access.principal.user_id),
        keep=body.keep,
    )


# --- a turn's recall trace, and applying a studio reply ----------------------------------------


@router.get("/sessions/{session_id}/turns/{turn_id}/context")
async def turn_context(
    session_id: str,
    turn_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SESSION_READ)],
) -> ContextTrace:
    """Why the narrator saw what it saw: the pieces kept, and those cut for budget."""
    payload = (await engine.sessions.turn_event(access.workspace_id, session_id, turn_id)).payload
    trace = payload.get("context") or []
    return ContextTrace(
        turn_id=turn_id,
        kept=[t for t in trace if "cut" not in t],
        cut=[t for t in trace if "cut" in t],
    )


@router.post("/sessions/{session_id}/turns/{turn_id}/apply", status_code=201)
async def apply_reply(
    session_id: str, turn_id: str, body: ApplyReply, engine: EngineDep, access: Edit
) -> JSON:
    """Put a (studio) reply into a world as an entry, a project blueprint or a prompt
    recipe, in one call."""
    payload = (await engine.sessions.turn_event(access.workspace_id, session_id, turn_id)).payload
    text = str((payload.get("reply") or {}).get("text") or "")
    meta = metadata_for(access.principal.user_id)
    refs = [{"session_id": session_id, "turn_id": turn_id}]
    kind = "note" if body.target == "entry" else body.target
    if body.entry_id is not None:
        return await engine.world.bible.update_entry(
            access.workspace_id,
            body.world_id,
            body.entry_id,
            {"body": text, "source_refs": refs},
            meta,
        )
    return await engine.world.bible.create_entry(
        access.workspace_id,
        body.world_id,
        {"title": body.title, "body": text, "kind": kind, "source_refs": refs},
        meta,
    )
