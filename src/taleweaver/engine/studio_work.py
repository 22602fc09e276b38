"""The studio's long work, as background jobs, and what leaves the studio: session 1
written from a blueprint, session prep packets and weekly recaps, exports for
Foundry VTT and as a generic bundle, and signed webhooks on content events.

Session 1 (`studio.session1`): one studio session turn through the one turn
pipeline. Its input is the blueprint as Markdown and the world's NPCs; the rest of
the world bible reaches the model through the session's recall (the session is
linked to the blueprint's world). The reply is queued in the world's review queue
as a draft entry citing the turn and the blueprint's version; accepting it there
makes it canon.

A prep packet (`studio.prep`): the recap (from the sessions' stored summaries, or
their latest replies where none is stored yet) and the NPCs likely to appear (from
the world bible) are assembled directly, with no model; open threads, encounters
and handouts are written by the model in one studio session turn through the
pipeline. Every item cites its sources. Kept as the job's file (JSON with the
Markdown beside it; sealed for a sensitive workspace).

A weekly recap (`studio.weekly`): assembled directly from the summaries of the
sessions played in the blueprint's world in the last 7 days; no model.

Webhooks (`studio.webhook`): one job per delivery, so a failed POST is retried
with the job queue's doubling backoff; each attempt is written to the hook's
delivery log. Signed like safety's webhooks (HMAC-SHA256 of `<timestamp>.<body>`).

The workspace's studio policy is checked before a job is queued, again when it
runs, and whenever a studio session is started: the narrator's models must be
allowed, and the named fields are redacted
from every prompt the studio builds. With fields to redact, the studio session is
not linked to the world (recall would send the world's canon unredacted); the
NPCs the prompt carries are redacted instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from taleweaver.domain.errors import InvalidInput, NotFound
from taleweaver.domain.events import JSON, EventMetadata
from taleweaver.domain.jobs import Artifact, Job, JobResult
from taleweaver.domain.sessions import SessionFilter, SessionKind
from taleweaver.domain.studio.foundry import bundle_markdown, foundry_bundle, generic_bundle
from taleweaver.domain.studio.policy import check_models, redact, redaction_values
from taleweaver.domain.studio.prep import (
    blueprint_source,
    build_packet,
    npc_cards,
    packet_markdown,
    prep_request,
    recap_items,
    session_one_request,
    weekly_markdown,
    weekly_recap,
)
from taleweaver.domain.turns import TurnRequest

if TYPE_CHECKING:
    from taleweaver.engine.engine import Engine

__all__ = ["PREP", "SESSION_ONE", "WEBHOOK", "WEEKLY", "Run", "StudioWork", "studio_work"]

log = logging.getLogger(__name__)

SESSION_ONE = "studio.session1"
PREP = "studio.prep"
WEEKLY = "studio.weekly"
WEBHOOK = "studio.webhook"
WEBHOOK_ATTEMPTS = 6
MAX_PREP_SESSIONS = 10
RECENT_SESSIONS = 3
RECENT_REPLIES = 3
BIBLE_LIMIT = 1000
WEEK = timedelta(days=7)

_work: weakref.WeakKeyDictionary[Engine, StudioWork] = weakref.WeakKeyDictionary()


def studio_work(engine: Engine) -> StudioWork:
    """The engine's studio work (made when the engine registered its jobs)."""
    return _work[engine]


@dataclass(frozen=True, slots=True)
class Run:
    """One run of a studio job, as the engine's job wiring hands it over: the job,
    and its progress report (which raises once a cancel was asked for)."""

    job: Job
    progress: Callable[[float, str], Awaitable[None]]

    @property
    def workspace_id(self) -> str:
        return self.job.workspace_id

    @property
    def params(self) -> JSON:
        return self.job.params


def _now() -> datetime:
    return datetime.now(UTC)


class StudioWork:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.timeout_s = 10.0

    # --- queueing ----------------------------------------------------------------------

    async def _blueprint(self, workspace_id: str, params: Mapping[str, Any]) -> JSON:
        blueprint_id = params.get("blueprint_id")
        if not isinstance(blueprint_id, str):
            raise InvalidInput("blueprint_id: required")
        blueprint: JSON = await self.engine.studio.blueprints.get(workspace_id, blueprint_id)
        version = params.get("blueprint_version")
        if isinstance(version, int) and version != blueprint["version"]:
            saved = await self.engine.studio.blueprints.version(workspace_id, blueprint_id, version)
            blueprint = blueprint | {"version": version, "fields": saved["fields"]}
        return blueprint

    async def submit(
        self, workspace_id: str, kind: str, params: JSON, *, created_by: str | None
    ) -> Job:
        """Check what the job needs (the blueprint, its world, the policy), then queue
        it; the job works from the blueprint's version as it is now."""
        blueprint = await self._blueprint(workspace_id, params)
        if kind in (SESSION_ONE, PREP, WEEKLY) and not blueprint["world_id"]:
            raise InvalidInput("the blueprint is linked to no world: set its world_id first")
        if kind in (SESSION_ONE, PREP):
            await self.check_policy(workspace_id)
        sessions = params.get("session_ids") or []
        if len(sessions) > MAX_PREP_SESSIONS:
            raise InvalidInput(f"session_ids: at most {MAX_PREP_SESSIONS}")
        for session_id in sessions:
            await self.engine.sessions.get(workspace_id, session_id)
        params = params | {"blueprint_version": blueprint["version"]}
        return await self.engine.jobs.submit(workspace_id, kind, params, created_by=created_by)

    # --- policy ------------------------------------------------------------------------

    def _narrators(self) -> list[JSON]:
        described = self.engine.describe_models()
        aliases = described["routes"].get("narrate") or [m["alias"] for m in described["models"]]
        return [m for m in described["models"] if m["alias"] in aliases]

    async def check_policy(self, workspace_id: str) -> JSON:
        policy: JSON = await self.engine.studio.records.policy(workspace_id)
        check_models(policy, self._narrators())
        return policy

    async def check_kind(self, workspace_id: str, kind: SessionKind) -> None:
        """A studio session is started only where the policy allows its narrator."""
        if kind == SessionKind.STUDIO:
            await self.check_policy(workspace_id)

    # --- a studio turn through the pipeline --------------------------------------------

    async def _turn(
        self,
        ctx: Run,
        *,
        title: str,
        text: str,
        world_id: str | None,
        meta: EventMetadata,
    ) -> JSON:
        """One studio session turn; cancelling the job cancels the turn."""
        engine, workspace_id = self.engine, ctx.workspace_id
        settings = {"world_id": world_id} if world_id else {}
        session = await engine.sessions.create(
            workspace_id,
            kind=SessionKind.STUDIO,
            title=title,
            settings=settings,
            owner_id=ctx.job.created_by,
            metadata=meta,
        )
        request = TurnRequest.build(action=None, text=text, choice=None)
        handle = await engine.turns.start(workspace_id, session["id"], request, meta)
        assert handle.task is not None
        try:
            while not handle.task.done():
                await asyncio.wait({handle.task}, timeout=0.1)
                await ctx.progress(0.5, "the studio is writing")
            result = await handle.wait()
        finally:
            if not handle.task.done():
                handle.cancel()
        if result.get("status") != "completed" or not result.get("reply"):
            raise InvalidInput(f"the studio turn did not complete ({result.get('status')})")
        event = await engine.sessions.turn_event(workspace_id, session["id"], result["id"])
        return {
            "session_id": session["id"],
            "turn_id": result["id"],
            "position": event.position,
            "reply": str(result["reply"].get("text") or ""),
        }

    async def _bible(self, workspace_id: str, world_id: str) -> tuple[list[JSON], list[JSON]]:
        bible = self.engine.world.bible
        entities = await bible.entities(workspace_id, world_id, limit=BIBLE_LIMIT)
        facts = await bible.facts(workspace_id, world_id)
        return entities, facts

    # --- session 1 ---------------------------------------------------------------------

    async def session_one(self, ctx: Run) -> JobResult:
        """Session 1: the model call is a studio session turn through the pipeline;
        its reply is queued for review as a draft world entry (nothing is canon yet)."""
        ws = ctx.workspace_id
        meta = EventMetadata(actor=ctx.job.created_by or "studio")
        await ctx.progress(0.05, "reading the blueprint and the world bible")
        blueprint = await self._blueprint(ws, ctx.params)
        world_id = str(blueprint["world_id"])
        policy = await self.check_policy(ws)
        entities, facts = await self._bible(ws, world_id)
        hidden = redaction_values(policy, blueprint["fields"], facts)
        npcs = npc_cards(entities, facts, context=json.dumps(blueprint["fields"]))
        text = session_one_request(blueprint, npcs, redact=lambda t: redact(t, hidden))
        await ctx.progress(0.2, "writing session 1")
        turn = await self._turn(
            ctx,
            title=f"Session 1: {blueprint['name']}",
            text=text,
            world_id=None if hidden else world_id,
            meta=meta,
        )
        await ctx.progress(0.9, "queueing the draft for review")
        ref = {"session_id": turn["session_id"], "turn_id": turn["turn_id"]}
        entry = {
            "title": f"Session 1: {blueprint['name']}"[:200],
            "body": turn["reply"],
            "tags": ["studio", "session-1"],
            "source_refs": [ref, blueprint_source(blueprint)],
        }
        artifact = await self.engine.world.review.queue_entry(
            ws,
            world_id,
            session_id=turn["session_id"],
            turn_id=turn["turn_id"],
            position=turn["position"],
            entry=entry,
            confidence=1.0,
        )
        return JobResult(
            {
                "world_id": world_id,
                "artifact_id": artifact["id"],
                "session_id": turn["session_id"],
                "turn_id": turn["turn_id"],
                "blueprint": blueprint_source(blueprint),
                "redacted": len(hidden),
            }
        )

    # --- prep packets and weekly recaps --------------------------------------------------

    async def _recap(self, workspace_id: str, session: Mapping[str, Any]) -> list[JSON]:
        """A session's story so far: its coarsest stored summaries (none inside
        another), or, with none stored, its latest replies."""
        rows, _ = await self.engine.summaries.page(
            workspace_id, session["id"], level=None, limit=200, offset=0
        )
        chosen: list[JSON] = []
        covered = -1
        for row in rows:
            span = row.entry.span
            if span.last <= covered:
                continue
            covered = span.last
            chosen.append(
                {
                    "session_id": session["id"],
                    "session_title": session["title"],
                    "summary_id": row.entry.id,
                    "first_turn": span.first,
                    "last_turn": span.last,
                    "text": row.text,
                }
            )
        if chosen:
            return chosen
        messages = await self.engine.sessions.messages(
            workspace_id, session["id"], after_turn=0, limit=1000
        )
        replies = [m for m in messages if m["role"] == "narrator"]
        return [
            {
                "session_id": session["id"],
                "session_title": session["title"],
                "turn_id": m["turn_id"],
                "text": m["content"],
            }
            for m in replies[-RECENT_REPLIES:]
        ]

    async def _world_sessions(
        self, workspace_id: str, world_id: str, *, since: datetime | None = None
    ) -> list[JSON]:
        """The world's played sessions (not the studio's own), newest first."""
        found, _ = await self.engine.sessions.list_page(
            workspace_id, SessionFilter(), limit=200, offset=0
        )
        played = []
        for listed in found:
            if listed["kind"] == SessionKind.STUDIO:
                continue
            if since is not None and listed["updated_at"] < since:
                continue
            session = await self.engine.sessions.get(workspace_id, listed["id"])
            if (session.get("settings") or {}).get("world_id") == world_id:
                played.append(listed)
        return played

    async def prep(self, ctx: Run) -> JobResult:
        """A prep packet. Assembled directly (no model): the recap, from the sessions'
        summaries or latest replies, and the NPCs, from the world bible. Through the
        pipeline (one studio session turn): open threads, encounters and handouts."""
        ws = ctx.workspace_id
        meta = EventMetadata(actor=ctx.job.created_by or "studio")
        await ctx.progress(0.05, "reading the blueprint, the bible and the summaries")
        blueprint = await self._blueprint(ws, ctx.params)
        world_id = str(blueprint["world_id"])
        policy = await self.check_policy(ws)
        entities, facts = await self._bible(ws, world_id)
        ids = ctx.params.get("session_ids") or []
        if ids:
            sessions = [await self.engine.sessions.get(ws, i) for i in ids]
        else:
            sessions = (await self._world_sessions(ws, world_id))[:RECENT_SESSIONS]
        raw: list[JSON] = []
        for session in reversed(sessions):  # oldest first
            raw += await self._recap(ws, session)
        recap = recap_items(raw)
        context = json.dumps(blueprint["fields"]) + " ".join(r["text"] for r in recap)
        npcs = npc_cards(entities, facts, context=context)
        hidden = redaction_values(policy, blueprint["fields"], facts)
        text = prep_request(blueprint, recap, npcs, redact=lambda t: redact(t, hidden))
        await ctx.progress(0.3, "writing threads, encounters and handouts")
        turn = await self._turn(
            ctx,
            title=f"Prep: {blueprint['name']}",
            text=text,
            world_id=None if hidden else world_id,
            meta=meta,
        )
        await ctx.progress(0.9, "assembling the packet")
        packet = build_packet(
            blueprint=blueprint,
            world_id=world_id,
            recap=recap,
            npcs=npcs,
            entities=entities,
            reply=turn["reply"],
            turn_ref={"session_id": turn["session_id"], "turn_id": turn["turn_id"]},
            generated_at=_now().isoformat(),
        )
        result = await self._keep(ctx, packet, packet_markdown(packet), "prep-packet")
        await self.emit(
            ws,
            "packet.ready",
            {"job_id": ctx.job.id, "blueprint": blueprint_source(blueprint), "world_id": world_id},
        )
        return result

    async def weekly(self, ctx: Run) -> JobResult:
        """The weekly recap, assembled directly from the summaries (no model)."""
        ws = ctx.workspace_id
        await ctx.progress(0.05, "reading the week's sessions")
        blueprint = await self._blueprint(ws, ctx.params)
        until = _now()
        since = until - WEEK
        played = []
        for session in await self._world_sessions(ws, str(blueprint["world_id"]), since=since):
            await ctx.progress(0.5, f"reading {session['title']}")
            played.append(
                {
                    "session_id": session["id"],
                    "title": session["title"],
                    "updated_at": session["updated_at"].isoformat(),
                    "recap": recap_items(await self._recap(ws, session)),
                }
            )
        recap = weekly_recap(
            campaign=blueprint,
            since=since.isoformat(),
            until=until.isoformat(),
            sessions=list(reversed(played)),
        )
        return await self._keep(ctx, recap, weekly_markdown(recap), "weekly-recap")

    async def _keep(self, ctx: Run, document: JSON, markdown: str, name: str) -> JobResult:
        """The document and its Markdown as the job's file (sealed at rest for a
        sensitive workspace); the job's result says only what it holds."""
        data = json.dumps({"json": document, "markdown": markdown}, default=str).encode()
        if await self.engine.seals(ctx.workspace_id):
            assert self.engine.sealer is not None
            data = self.engine.sealer.seal_file(ctx.workspace_id, ctx.job.id, data)
        counts = {k: len(v) for k, v in document.items() if isinstance(v, list)}
        return JobResult(
            {"kind": document["kind"], "counts": counts, "blueprint": document["blueprint"]},
            Artifact(data, "application/json", f"{name}-{ctx.job.id}.json"),
        )

    async def document(self, workspace_id: str, job_id: str) -> JSON:
        """A finished prep or recap job's packet: {"json": ..., "markdown": ...}."""
        job = await self.engine.jobs.get(workspace_id, job_id)
        if job.kind not in (PREP, WEEKLY):
            raise NotFound(f"job {job_id} made no prep packet or recap")
        if job.status.value != "succeeded":
            raise InvalidInput(f"job {job_id} is {job.status.value}, not succeeded")
        artifact = await self.engine.job_file(workspace_id, job_id)
        kept: JSON = json.loads(artifact.data)
        return kept

    # --- exports -----------------------------------------------------------------------

    async def _world_material(
        self, workspace_id: str, world_id: str
    ) -> tuple[JSON, list[JSON], list[JSON], list[JSON]]:
        bible = self.engine.world.bible
        world = await bible.world(workspace_id, world_id)
        entries = await bible.entries(workspace_id, world_id)
        entities, facts = await self._bible(workspace_id, world_id)
        return world, entries, entities, facts

    async def foundry(self, workspace_id: str, world_id: str) -> JSON:
        world, entries, entities, facts = await self._world_material(workspace_id, world_id)
        return foundry_bundle(world, entries, entities, facts)

    async def bundle(self, workspace_id: str, world_id: str) -> JSON:
        world, entries, entities, facts = await self._world_material(workspace_id, world_id)
        blueprints = [
            b
            for b in await self.engine.studio.blueprints.all(workspace_id)
            if b["world_id"] == world_id
        ]
        made = generic_bundle(world, entries, entities, facts, blueprints)
        plain: JSON = json.loads(json.dumps(made, default=str))
        return plain

    async def bundle_markdown(self, workspace_id: str, world_id: str) -> str:
        return bundle_markdown(await self.bundle(workspace_id, world_id))

    # --- webhooks ----------------------------------------------------------------------

    async def add_hook(
        self, workspace_id: str, url: str, events: list[str] | None, meta: EventMetadata
    ) -> JSON:
        made: JSON = await self.engine.studio.records.add_hook(workspace_id, url, events, meta)
        return made

    async def deliveries(self, workspace_id: str, hook_id: str) -> list[JSON]:
        found: list[JSON] = await self.engine.studio.records.deliveries(workspace_id, hook_id)
        return found

    async def emit(self, workspace_id: str, event_type: str, data: JSON) -> list[str]:
        """Queue a delivery of the event to each hook that wants it. Never raises:
        what the event reports has happened already."""
        try:
            hooks = await self.engine.studio.records.targets(workspace_id, event_type)
        except Exception:
            log.exception("studio webhooks for %s could not be read", event_type)
            return []
        ids = []
        for hook in hooks:
            delivery_id = uuid.uuid4().hex
            body = {
                "id": delivery_id,
                "event": event_type,
                "workspace_id": workspace_id,
                "occurred_at": _now().isoformat(),
                "data": data,
            }
            params = {
                "hook_id": hook["id"],
                "delivery_id": delivery_id,
                "event": event_type,
                "body": json.dumps(body, separators=(",", ":"), default=str),
            }
            try:
                await self.engine.studio.records.queued(
                    workspace_id, hook["id"], delivery_id, event_type
                )
                await self.engine.jobs.submit(workspace_id, WEBHOOK, params)
            except Exception:
                log.exception("studio webhook %s: the delivery could not be queued", hook["id"])
                continue
            ids.append(delivery_id)
        return ids

    async def deliver(self, ctx: Run) -> JobResult:
        """One attempt; a failure raises, and the job queue tries again later."""
        job = ctx.job
        error = await self.engine.studio.records.attempt(
            ctx.workspace_id,
            str(ctx.params["hook_id"]),
            ctx.params,
            job.attempts,
            last=job.attempts >= job.max_attempts,
            timeout_s=self.timeout_s,
        )
        if error is not None:
            raise RuntimeError(f"webhook delivery failed: {error}")
        return JobResult({"attempt": job.attempts})

    # --- content events ----------------------------------------------------------------

    async def blueprint_saved(self, workspace_id: str, blueprint: JSON) -> None:
        data = {
            "blueprint_id": blueprint["id"],
            "version": blueprint["version"],
            "name": blueprint["name"],
            "world_id": blueprint["world_id"],
        }
        await self.emit(workspace_id, "blueprint.saved", data)

    async def reviewed(self, workspace_id: str, world_id: str, artifact: JSON) -> None:
        if artifact.get("status") != "accepted":
            return
        data = {
            "world_id": world_id,
            "artifact_id": artifact["id"],
            "kind": artifact["kind"],
            "created": (artifact.get("decision") or {}).get("created") or [],
            "source": artifact.get("source"),
        }
        await self.emit(workspace_id, "entry.canonised", data)


def studio_jobs(engine: Engine) -> dict[str, Callable[[Run], Awaitable[JobResult]]]:
    """The studio's job kinds and their handlers; its content events are listened to
    from here on."""
    work = StudioWork(engine)
    _work[engine] = work
    engine.studio.blueprints.listeners.append(work.blueprint_saved)
    engine.world.review.listeners.append(work.reviewed)
    engine.sessions.kind_checks.append(work.check_kind)
    return {
        SESSION_ONE: work.session_one,
        PREP: work.prep,
        WEEKLY: work.weekly,
        WEBHOOK: work.deliver,
    }
