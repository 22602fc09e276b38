"""The review queue: artifacts from committed turns, accepted (field by field, with
edits), rejected, or accepted by policy above a world's confidence threshold.

The queue is built from committed turns only: it catches up from the global event
log by position, so a failed or cancelled turn, which commits no artifacts, never
leaves anything here. Accepting writes canon through the world bible, in the same
commit as the review decision.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.errors import Conflict, InvalidInput, NotFound
from taleweaver.domain.events import JSON, EventMetadata, NewEvent, RecordedEvent
from taleweaver.domain.sessions import EventType
from taleweaver.domain.world import EntityStatus, WorldEvent
from taleweaver.memory.world import rows
from taleweaver.memory.world.bible import (
    WorldBible,
    clean_entity,
    clean_entity_changes,
    clean_entry,
    clean_fact,
    clean_relation_type,
    new_id,
)
from taleweaver.store.database import Database
from taleweaver.store.events import EventStore
from taleweaver.store.schema import checkpoints
from taleweaver.store.world_schema import world_artifacts, worlds

CHECKPOINT = "world-review-queue"
BATCH = 500
AUTO_ACTOR = "policy:auto-accept"
_TURN_TYPES = frozenset(
    {EventType.TURN_COMMITTED, EventType.TURN_REGENERATED, EventType.TURN_EDITED}
)
_KINDS = frozenset({"entity", "fact", "relation", "event", "entry"})
STUDIO_EXTRACTION = "studio"

# Told of each decision once it is committed: (workspace, world, the artifact as decided).
Reviewed = Callable[[str, str, JSON], Awaitable[None]]


class ReviewQueue:
    def __init__(self, db: Database, store: EventStore, bible: WorldBible) -> None:
        self.db = db
        self.store = store
        self.bible = bible
        self.listeners: list[Reviewed] = []

    async def queue_entry(
        self,
        workspace_id: str,
        world_id: str,
        *,
        session_id: str,
        turn_id: str,
        position: int,
        entry: JSON,
        confidence: float,
    ) -> JSON:
        """Queue a draft world entry a studio turn wrote (title, body, tags,
        source_refs), pending review; accepting it creates the entry."""
        await self.bible.world(workspace_id, world_id)
        artifact_id = new_id()
        artifact = {
            "id": artifact_id,
            "workspace_id": workspace_id,
            "world_id": world_id,
            "session_id": session_id,
            "turn_id": turn_id,
            "position": position,
            "kind": "entry",
            "payload": entry,
            "confidence": {"entry": confidence},
            "extraction_version": STUDIO_EXTRACTION,
            "status": "pending",
            "decision": None,
            "created_at": datetime.now(UTC),
            "reviewed_at": None,
            "reviewed_by": None,
        }
        async with self.db.write() as conn:
            await conn.execute(world_artifacts.insert().values(**artifact))
            return await _artifact(conn, workspace_id, world_id, artifact_id)

    # --- catching up from committed turns -------------------------------------------------

    async def catch_up(self) -> int:
        """Queue the artifacts of every turn committed since the last call; returns how
        many were queued. Safe to run from several replicas at once."""
        queued = 0
        while True:
            after = await self._checkpoint()
            events = await self.store.read_all(after=after, limit=BATCH)
            if not events:
                return queued
            found = [a for e in events for a in _artifacts(e)]
            async with self.db.write() as conn:
                await self.db.lock(conn)
                if await self._checkpoint(conn) != after:
                    continue  # another replica took this batch
                new = await _insert_new(conn, found)
                await _save_checkpoint(conn, events[-1].position)
            queued += len(new)
            await self._auto_accept(new)

    async def _checkpoint(self, conn: AsyncConnection | None = None) -> int:
        query = sa.select(checkpoints.c.position).where(checkpoints.c.name == CHECKPOINT)
        if conn is not None:
            return int(await conn.scalar(query) or 0)
        async with self.db.read() as reader:
            return int(await reader.scalar(query) or 0)

    async def _auto_accept(self, new: list[JSON]) -> None:
        thresholds: dict[str, Any] = {}
        for artifact in new:
            world_id = artifact["world_id"]
            if world_id not in thresholds:
                async with self.db.read() as conn:
                    settings = await conn.scalar(
                        sa.select(worlds.c.settings).where(worlds.c.id == world_id)
                    )
                thresholds[world_id] = (settings or {}).get("auto_accept_threshold")
            threshold = thresholds[world_id]
            confidence = artifact["confidence"] or {}
            if threshold is None or not confidence or min(confidence.values()) < threshold:
                continue
            try:
                await self.review(
                    artifact["workspace_id"],
                    world_id,
                    artifact["id"],
                    accept=True,
                    meta=EventMetadata(actor=AUTO_ACTOR),
                )
            except (InvalidInput, Conflict, NotFound):
                continue  # left for a person to review

    # --- reading --------------------------------------------------------------------------

    async def items(
        self, workspace_id: str, world_id: str, *, status: str | None = "pending", limit: int = 100
    ) -> list[JSON]:
        await self.catch_up()
        await self.bible.world(workspace_id, world_id)
        query = sa.select(world_artifacts).where(
            world_artifacts.c.workspace_id == workspace_id, world_artifacts.c.world_id == world_id
        )
        if status is not None:
            query = query.where(world_artifacts.c.status == status)
        async with self.db.read() as conn:
            result = await conn.execute(
                query.order_by(world_artifacts.c.position, world_artifacts.c.id).limit(limit)
            )
            return [rows.plain(r) for r in result]

    async def item(self, workspace_id: str, world_id: str, artifact_id: str) -> JSON:
        await self.catch_up()
        async with self.db.read() as conn:
            return await _artifact(conn, workspace_id, world_id, artifact_id)

    # --- deciding -------------------------------------------------------------------------

    async def review(
        self,
        workspace_id: str,
        world_id: str,
        artifact_id: str,
        *,
        accept: bool,
        meta: EventMetadata,
        fields: dict[str, str] | None = None,
        edits: JSON | None = None,
    ) -> JSON:
        """Accept (the fields not rejected, with edits applied) or reject an artifact."""
        await self.catch_up()
        fields = fields or {}
        edits = edits or {}
        for name, verdict in fields.items():
            if verdict not in ("accept", "reject"):
                raise InvalidInput(f"field {name!r}: say 'accept' or 'reject'")

        async def decide(conn: AsyncConnection, world: JSON) -> list[NewEvent]:
            artifact = await _artifact(conn, workspace_id, world_id, artifact_id)
            if artifact["status"] != "pending":
                raise Conflict(f"artifact {artifact_id} was already {artifact['status']}")
            unknown = (set(fields) | set(edits)) - set(artifact["payload"])
            if unknown:
                raise InvalidInput(f"the artifact has no fields {', '.join(sorted(unknown))}")
            decision: JSON = {"fields": fields, "edits": edits}
            if not accept:
                return [_reviewed(artifact_id, "rejected", decision)]
            payload = {
                k: edits.get(k, v)
                for k, v in artifact["payload"].items()
                if fields.get(k, "accept") == "accept"
            }
            refs = [artifact["source"] | {"artifact_id": artifact_id}]
            canon = _Canon(conn, world_id, refs)
            await canon.apply(artifact["kind"], payload)
            decision["created"] = canon.created
            return [*canon.events, _reviewed(artifact_id, "accepted", decision)]

        await self.bible.commit(workspace_id, world_id, meta, decide)
        async with self.db.read() as conn:
            decided = await _artifact(conn, workspace_id, world_id, artifact_id)
        for listener in self.listeners:
            await listener(workspace_id, world_id, decided)
        return decided


def _reviewed(artifact_id: str, status: str, decision: JSON) -> NewEvent:
    return NewEvent(
        WorldEvent.ARTIFACT_REVIEWED,
        {"artifact_id": artifact_id, "status": status, "decision": decision},
    )


class _Canon:
    """The events that make an accepted artifact canon, resolving names to entities
    (and creating canon entities for names the world does not know yet)."""

    def __init__(self, conn: AsyncConnection, world_id: str, refs: list[JSON]) -> None:
        self.conn = conn
        self.world_id = world_id
        self.refs = refs
        self.events: list[NewEvent] = []
        self.created: list[str] = []
        self._made: dict[str, str] = {}

    async def apply(self, kind: str, p: JSON) -> None:
        if kind == "entity":
            await self._entity(p)
        elif kind == "fact":
            await self._fact(p)
        elif kind == "relation":
            await self._relation(p)
        elif kind == "event":
            await self._event(p)
        elif kind == "entry":
            await self._entry(p)

    async def resolve(self, name: Any, entity_id: Any = None, kind: str = "npc") -> str:
        if entity_id and await rows.entity(self.conn, self.world_id, str(entity_id)):
            return str(entity_id)
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput("an accepted artifact needs the name of what it is about")
        if name.casefold() in self._made:
            return self._made[name.casefold()]
        found = await rows.entity_by_label(self.conn, self.world_id, name)
        if found is not None:
            return str(found["id"])
        return self._create({"name": name, "type": kind})

    def _create(self, data: JSON) -> str:
        # A rejected type leaves the default, as a new entity without one would have.
        data = {"type": "npc"} | data
        entity = clean_entity(data | {"status": EntityStatus.CANON, "source_refs": self.refs})
        entity["id"] = new_id()
        self.events.append(NewEvent(WorldEvent.ENTITY_CREATED, {"entity": entity}))
        self.created.append(entity["id"])
        self._made[entity["name"].casefold()] = entity["id"]
        return str(entity["id"])

    async def _entity(self, p: JSON) -> None:
        existing = p.get("entity_id")
        current = await rows.entity(self.conn, self.world_id, str(existing)) if existing else None
        if current is None:
            if not p.get("name"):
                raise InvalidInput("a new entity cannot be accepted without its name")
            self._create({k: p[k] for k in ("name", "type", "summary", "aliases") if k in p})
            return
        changes: JSON = {}
        if p.get("summary"):
            changes["summary"] = p["summary"]
        aliases = [a for a in p.get("aliases") or [] if a not in current["aliases"]]
        if aliases:
            changes["aliases"] = [*current["aliases"], *aliases]
        if changes:
            clean = clean_entity_changes(current, changes)
            if clean:
                self.events.append(
                    NewEvent(
                        WorldEvent.ENTITY_UPDATED, {"entity_id": current["id"], "changes": clean}
                    )
                )

    async def _fact(self, p: JSON) -> None:
        entity_id = await self.resolve(p.get("entity"), p.get("entity_id"))
        fact = clean_fact(p | {"source_refs": self.refs})
        fact |= {"id": new_id(), "entity_id": entity_id, "status": "active"}
        self.events.append(NewEvent(WorldEvent.FACT_ADDED, {"fact": fact}))

    async def _relation(self, p: JSON) -> None:
        kind = clean_relation_type(p.get("type", ""))
        source = await self.resolve(p.get("source"))
        target = await self.resolve(
            p.get("target"), kind="location" if kind.endswith(("_in", "_at")) else "npc"
        )
        if source == target:
            raise InvalidInput("an entity cannot be related to itself")
        relation = {
            "id": new_id(),
            "source_id": source,
            "type": kind,
            "target_id": target,
            "source_refs": self.refs,
        }
        self.events.append(NewEvent(WorldEvent.RELATION_ADDED, {"relation": relation}))

    async def _entry(self, p: JSON) -> None:
        refs = [*(p.get("source_refs") or []), *self.refs]
        entry = await clean_entry(self.conn, self.world_id, p | {"source_refs": refs})
        entry |= {"id": new_id(), "kind": "note"}
        self.created.append(entry["id"])
        self.events.append(NewEvent(WorldEvent.ENTRY_CREATED, {"entry": entry}))

    async def _event(self, p: JSON) -> None:
        event_id = self._create(
            {"name": p.get("name", ""), "type": "event", "summary": p.get("summary") or ""}
        )
        if p.get("when") is not None:
            fact = clean_fact(
                {
                    "attribute": "when",
                    "value": p["when"],
                    "valid_from": p["when"],
                    "source_refs": self.refs,
                }
            )
            fact |= {"id": new_id(), "entity_id": event_id, "status": "active"}
            self.events.append(NewEvent(WorldEvent.FACT_ADDED, {"fact": fact}))
        for name in p.get("participants") or []:
            who = await self.resolve(name)
            relation = {
                "id": new_id(),
                "source_id": who,
                "type": "participated_in",
                "target_id": event_id,
                "source_refs": self.refs,
            }
            self.events.append(NewEvent(WorldEvent.RELATION_ADDED, {"relation": relation}))


def _artifacts(event: RecordedEvent) -> list[JSON]:
    if event.type not in _TURN_TYPES:
        return []
    found: list[JSON] = []
    for artifact in event.payload.get("artifacts") or []:
        if not isinstance(artifact, dict) or artifact.get("kind") not in _KINDS:
            continue
        if not artifact.get("world_id") or not artifact.get("id"):
            continue  # not a world artifact (another extractor's)
        found.append(
            {
                "id": str(artifact["id"]),
                "workspace_id": event.workspace_id,
                "world_id": str(artifact["world_id"]),
                "session_id": event.stream_id,
                "turn_id": str(event.payload.get("turn_id", "")),
                "position": event.position,
                "kind": artifact["kind"],
                "payload": artifact.get("payload") or {},
                "confidence": artifact.get("confidence") or {},
                "extraction_version": str(artifact.get("extraction_version", "unknown"))[:40],
                "status": "pending",
                "decision": None,
                "created_at": event.recorded_at,
                "reviewed_at": None,
                "reviewed_by": None,
                "source": artifact.get("source"),
            }
        )
    return found


async def _insert_new(conn: AsyncConnection, found: list[JSON]) -> list[JSON]:
    if not found:
        return []
    # Only artifacts for worlds of the turn's own workspace are queued.
    world_ids = list({a["world_id"] for a in found})
    owners = {
        r.id: r.workspace_id
        for r in await conn.execute(
            sa.select(worlds.c.id, worlds.c.workspace_id).where(worlds.c.id.in_(world_ids))
        )
    }
    ids = [a["id"] for a in found]
    existing = set(
        (await conn.execute(sa.select(world_artifacts.c.id).where(world_artifacts.c.id.in_(ids))))
        .scalars()
        .all()
    )
    new = [
        a
        for a in found
        if a["id"] not in existing and owners.get(a["world_id"]) == a["workspace_id"]
    ]
    if new:
        await conn.execute(
            world_artifacts.insert(), [{k: v for k, v in a.items() if k != "source"} for a in new]
        )
    return new


async def _save_checkpoint(conn: AsyncConnection, position: int) -> None:
    now = datetime.now(UTC)
    updated = await conn.execute(
        checkpoints.update()
        .where(checkpoints.c.name == CHECKPOINT)
        .values(position=position, updated_at=now)
    )
    if updated.rowcount == 0:
        await conn.execute(
            checkpoints.insert().values(name=CHECKPOINT, position=position, updated_at=now)
        )


async def _artifact(
    conn: AsyncConnection, workspace_id: str, world_id: str, artifact_id: str
) -> JSON:
    row = (
        await conn.execute(
            sa.select(world_artifacts).where(
                world_artifacts.c.workspace_id == workspace_id,
                world_artifacts.c.world_id == world_id,
                world_artifacts.c.id == artifact_id,
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"artifact {artifact_id} not found")
    found = rows.plain(row)
    found["source"] = {"session_id": found["session_id"], "turn_id": found["turn_id"]}
    return found
