"""The studio's long work and what leaves it: session 1 and prep packets as
background jobs (`GET /api/v1/jobs/{id}` follows them; cancel there too), a
finished packet as JSON or Markdown, exports of a world for Foundry VTT and as a
generic bundle, outgoing webhooks on content events with their delivery logs,
and the workspace's studio policy."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Response
from pydantic import Field

from taleweaver.api.deps import EngineDep, metadata_for
from taleweaver.api.routes.jobs import JobPublic
from taleweaver.api.routes.jobs import _public as job_public
from taleweaver.api.schemas import Strict
from taleweaver.api.security import Access, requires
from taleweaver.auth import Action
from taleweaver.domain.events import JSON
from taleweaver.engine.studio_work import PREP, SESSION_ONE, WEEKLY, studio_work

router = APIRouter(prefix="/api/v1", tags=["studio"])

Read = Annotated[Access, requires(Action.WORLD_READ)]
Edit = Annotated[Access, requires(Action.WORLD_EDIT)]
Export = Annotated[Access, requires(Action.WORKSPACE_EXPORT)]
Settle = Annotated[Access, requires(Action.WORKSPACE_UPDATE)]
Inspect = Annotated[Access, requires(Action.WORKSPACE_READ)]
Name = Annotated[str, Field(min_length=1, max_length=120)]


class PrepRequest(Strict):
    session_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list,
        description="The sessions to recap; none: the world's 3 latest played sessions.",
    )


class HookCreate(Strict):
    url: str = Field(min_length=1, max_length=2000)
    events: list[Literal["entry.canonised", "blueprint.saved", "packet.ready"]] = Field(
        default_factory=list, description="The content events to send; none: all."
    )


class PolicyBody(Strict):
    providers: list[Name] = Field(
        default_factory=list, description="Provider names or kinds allowed; none: any."
    )
    models: list[Name] = Field(
        default_factory=list, description="Model names, ids or aliases allowed; none: any."
    )
    redact_fields: list[Name] = Field(
        default_factory=list,
        description="Blueprint fields and fact attributes whose values never leave in a prompt.",
    )


# --- jobs ------------------------------------------------------------------------------------


@router.post("/blueprints/{blueprint_id}/session-one", status_code=202)
async def generate_session_one(blueprint_id: str, engine: EngineDep, access: Edit) -> JobPublic:
    """Write session 1 from the blueprint and its world's bible, in the background;
    the result is a draft world entry in the world's review queue."""
    job = await studio_work(engine).submit(
        access.workspace_id,
        SESSION_ONE,
        {"blueprint_id": blueprint_id},
        created_by=access.principal.user_id,
    )
    return job_public(job)


@router.post("/blueprints/{blueprint_id}/prep", status_code=202)
async def generate_prep_packet(
    blueprint_id: str, engine: EngineDep, access: Edit, body: PrepRequest | None = None
) -> JobPublic:
    """A session prep packet (recap, open threads, NPCs, encounters, handouts, each
    item citing its sources), in the background; read it at /studio/packets/{job_id}."""
    params: JSON = {"blueprint_id": blueprint_id}
    if body is not None and body.session_ids:
        params["session_ids"] = body.session_ids
    job = await studio_work(engine).submit(
        access.workspace_id, PREP, params, created_by=access.principal.user_id
    )
    return job_public(job)


@router.post("/blueprints/{blueprint_id}/weekly-recap", status_code=202)
async def generate_weekly_recap(blueprint_id: str, engine: EngineDep, access: Edit) -> JobPublic:
    """The campaign's last 7 days: each session played in its world, recapped."""
    job = await studio_work(engine).submit(
        access.workspace_id,
        WEEKLY,
        {"blueprint_id": blueprint_id},
        created_by=access.principal.user_id,
    )
    return job_public(job)


@router.get("/studio/packets/{job_id}", response_model=None)
async def read_packet(
    job_id: str,
    engine: EngineDep,
    access: Read,
    format: Literal["json", "markdown"] = "json",
) -> JSON | Response:
    """A finished prep packet or weekly recap, as JSON or as Markdown."""
    kept = await studio_work(engine).document(access.workspace_id, job_id)
    if format == "markdown":
        return Response(kept["markdown"], media_type="text/markdown; charset=utf-8")
    document: JSON = kept["json"]
    return document


# --- exports ---------------------------------------------------------------------------------


@router.get("/worlds/{world_id}/export/foundry")
async def export_foundry(world_id: str, engine: EngineDep, access: Export) -> JSON:
    """The world's entries as Foundry JournalEntry documents (one text page each)
    and its NPCs as Actor stubs, as Foundry imports them."""
    return await studio_work(engine).foundry(access.workspace_id, world_id)


@router.get("/worlds/{world_id}/export/bundle", response_model=None)
async def export_bundle(
    world_id: str,
    engine: EngineDep,
    access: Export,
    format: Literal["json", "markdown"] = "json",
) -> JSON | Response:
    """The world's entities, facts, entries and blueprints in one JSON or Markdown file."""
    work = studio_work(engine)
    if format == "markdown":
        text = await work.bundle_markdown(access.workspace_id, world_id)
        return Response(text, media_type="text/markdown; charset=utf-8")
    return await work.bundle(access.workspace_id, world_id)


# --- webhooks --------------------------------------------------------------------------------


@router.post("/studio/webhooks", status_code=201)
async def add_webhook(body: HookCreate, engine: EngineDep, access: Settle) -> JSON:
    """A webhook for content events; its signing secret is shown here only."""
    meta = metadata_for(access.principal.user_id)
    return await studio_work(engine).add_hook(
        access.workspace_id, body.url, list(body.events), meta
    )


@router.get("/studio/webhooks")
async def list_webhooks(engine: EngineDep, access: Inspect) -> list[JSON]:
    return await engine.studio.records.hooks(access.workspace_id)


@router.get("/studio/webhooks/{hook_id}")
async def get_webhook(hook_id: str, engine: EngineDep, access: Inspect) -> JSON:
    return await engine.studio.records.hook(access.workspace_id, hook_id)


@router.delete("/studio/webhooks/{hook_id}", status_code=204)
async def remove_webhook(hook_id: str, engine: EngineDep, access: Settle) -> Response:
    meta = metadata_for(access.principal.user_id)
    await engine.studio.records.remove_hook(access.workspace_id, hook_id, meta)
    return Response(status_code=204)


@router.get("/studio/webhooks/{hook_id}/deliveries")
async def webhook_deliveries(hook_id: str, engine: EngineDep, access: Inspect) -> list[JSON]:
    """The hook's delivery log, newest first: each delivery's status and attempts."""
    return await studio_work(engine).deliveries(access.workspace_id, hook_id)


# --- policy ----------------------------------------------------------------------------------


@router.get("/studio/policy")
async def get_policy(engine: EngineDep, access: Inspect) -> JSON:
    return await engine.studio.records.policy(access.workspace_id)


@router.put("/studio/policy")
async def set_policy(body: PolicyBody, engine: EngineDep, access: Settle) -> JSON:
    """Which providers and models the studio may use, and the fields redacted from
    its prompts."""
    meta = metadata_for(access.principal.user_id)
    return await engine.studio.records.set_policy(
        access.workspace_id, body.model_dump(mode="json"), meta
    )
