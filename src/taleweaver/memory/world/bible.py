"""The world bible: worlds, entities, facts, relations and entries, changed only by
appending events to the world's stream (`world:<id>`) and projecting them in the
same transaction. Every check runs against the rows the write lock protects, so
two editors never both win."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.errors import Conflict, InvalidInput, NotFound
from taleweaver.domain.events import JSON, EventMetadata, NewEvent, RecordedEvent
from taleweaver.domain.json_values import free_json_problem
from taleweaver.domain.world import (
    EntityStatus,
    WorldEvent,
    check_transition,
    clean_aliases,
    clean_name,
    clean_tags,
    clean_time,
    clean_type,
    stream_id,
)
from taleweaver.domain.world.model import clean_summary
from taleweaver.domain.world.text import hashtags, wiki_links
from taleweaver.memory.world import rows
from taleweaver.memory.world.projector import project
from taleweaver.store.database import Database
from taleweaver.store.events import EventStore
from taleweaver.store.world_schema import world_entities, world_entries, worlds

Decide = Callable[[AsyncConnection, JSON], Awaitable[list[NewEvent]]]
Changed = Callable[[str, str, set[str]], Awaitable[None]]

ENTRY_KINDS = frozenset({"note", "blueprint", "recipe"})
MAX_BODY = 200_000
MAX_VALUE = 4_000
MAX_REFS = 50
_RELATION = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
_ENTITY_FIELDS = ("type", "name", "aliases", "summary", "tags", "status", "source_refs")


def new_id() -> str:
    return uuid.uuid4().hex


def clean_refs(refs: Any) -> list[JSON]:
    if refs is None:
        return []
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise InvalidInput("source_refs must be a list of objects")
    if len(refs) > MAX_REFS:
        raise InvalidInput(f"at most {MAX_REFS} source references")
    return [dict(r) for r in refs]


def clean_relation_type(kind: str) -> str:
    cleaned = "_".join(str(kind).strip().lower().split())
    if not _RELATION.match(cleaned):
        raise InvalidInput(f"relation type {kind!r} must be letters, digits and '_'")
    return cleaned


def clean_attribute(attribute: str) -> str:
    cleaned = " ".join(str(attribute).split())
    if not cleaned or len(cleaned) > 100:
        raise InvalidInput("a fact's attribute must be 1-100 characters")
    return cleaned


def clean_value(value: Any) -> Any:
    if value is None or isinstance(value, (dict, list)):
        raise InvalidInput("a fact's value must be a string, number or boolean")
    if isinstance(value, str):
        value = value.strip()
        if not value or len(value) > MAX_VALUE:
            raise InvalidInput(f"a fact's value must be 1-{MAX_VALUE} characters")
    return value


class WorldBible:
    def __init__(self, db: Database, store: EventStore) -> None:
        self.db = db
        self.store = store
        # Told which entities changed after each commit (vectors follow them).
        self.listeners: list[Changed] = []

    # --- writing ---------------------------------------------------------------------

    async def commit(
        self, workspace_id: str, world_id: str, meta: EventMetadata, decide: Decide
    ) -> list[RecordedEvent]:
        """Decide events against the world's current rows and commit them with the
        read models, under the write lock; NotFound for a world not in the workspace."""
        async with self.db.write() as conn:
            await self.db.lock(conn)
            world = await rows.world(conn, workspace_id, world_id)
            if world is None:
                raise NotFound(f"world {world_id} not found")
            new = await decide(conn, world)
            recorded = await self._append(conn, workspace_id, world_id, world["version"], new, meta)
        await self._notify(workspace_id, world_id, recorded)
        return recorded

    async def _append(
        self,
        conn: AsyncConnection,
        workspace_id: str,
        world_id: str,
        version: int,
        new: list[NewEvent],
        meta: EventMetadata,
    ) -> list[RecordedEvent]:
        recorded = await self.store.append(
            conn,
            stream_id=stream_id(world_id),
            workspace_id=workspace_id,
            expected_version=version,
            new_events=new,
            metadata=meta,
        )
        await project(conn, recorded)
        return recorded

    async def _notify(
        self, workspace_id: str, world_id: str, recorded: list[RecordedEvent]
    ) -> None:
        touched: set[str] = set()
        for event in recorded:
            p = event.payload
            if event.type == WorldEvent.ENTITY_CREATED:
                touched.add(p["entity"]["id"])
            elif event.type in (WorldEvent.ENTITY_UPDATED, WorldEvent.ENTITY_DELETED):
                touched.add(p["entity_id"])
            elif event.type == WorldEvent.ENTITIES_MERGED:
                touched |= {p["into"], p["merged"]}
        if touched:
            for listener in self.listeners:
                await listener(workspace_id, world_id, touched)

    # --- worlds ----------------------------------------------------------------------

    async def create_world(
        self,
        workspace_id: str,
        *,
        name: str,
        description: str = "",
        settings: JSON | None = None,
        meta: EventMetadata,
        world_id: str | None = None,
        then: Sequence[NewEvent] = (),
    ) -> JSON:
        """A new world; `then` are events that fill it in the same transaction
        (an import), so a failure leaves no world behind."""
        world_id = world_id or new_id()
        payload = {
            "name": clean_name(name),
            "description": clean_summary(description),
            "settings": clean_world_settings(settings or {}),
        }
        async with self.db.write() as conn:
            await self.db.lock(conn)
            taken = await conn.scalar(sa.select(worlds.c.id).where(worlds.c.id == world_id))
            if taken is not None:
                raise Conflict(f"world {world_id} already exists")
            first = NewEvent(WorldEvent.WORLD_CREATED, payload)
            recorded = await self._append(conn, workspace_id, world_id, 0, [first, *then], meta)
            created = await rows.world(conn, workspace_id, world_id)
        assert created is not None
        if then:
            await self._notify(workspace_id, world_id, recorded)
        return created

    async def update_world(
        self, workspace_id: str, world_id: str, changes: JSON, meta: EventMetadata
    ) -> JSON:
        clean: JSON = {}
        if changes.get("name") is not None:
            clean["name"] = clean_name(changes["name"])
        if changes.get("description") is not None:
            clean["description"] = clean_summary(changes["description"])
        if changes.get("settings") is not None:
            clean["settings"] = clean_world_settings(changes["settings"])

        async def decide(conn: AsyncConnection, world: JSON) -> list[NewEvent]:
            return [NewEvent(WorldEvent.WORLD_UPDATED, {"changes": clean})] if clean else []

        await self.commit(workspace_id, world_id, meta, decide)
        return await self.world(workspace_id, world_id)

    async def delete_world(self, workspace_id: str, world_id: str, meta: EventMetadata) -> None:
        async def decide(conn: AsyncConnection, world: JSON) -> list[NewEvent]:
            return [NewEvent(WorldEvent.WORLD_DELETED, {})]

        await self.commit(workspace_id, world_id, meta, decide)

    async def world(self, workspace_id: str, world_id: str) -> JSON:
        async with self.db.read() as conn:
            found = await rows.world(conn, workspace_id, world_id)
        if found is None:
            raise NotFound(f"world {world_id} not found")
        return found

    async def worlds(self, workspace_id: str) -> list[JSON]:
        async with self.db.read() as conn:
            result = await conn.execute(
                sa.select(worlds)
                .where(worlds.c.workspace_id == workspace_id)
                .order_by(worlds.c.name)
            )
            return [rows.plain(r) for r in result]

    # --- entities --------------------------------------------------------------------

    async def create_entity(
        self, workspace_id: str, world_id: str, data: JSON, meta: EventMetadata
    ) -> JSON:
        entity = clean_entity(data)
        entity["id"] = str(data.get("id") or new_id())

        async def decide(conn: AsyncConnection, world: JSON) -> list[NewEvent]:
            if await rows.entity(conn, world_id, entity["id"]) is not None:
                raise Conflict(f"entity {entity['id']} already exists")
            return [NewEvent(WorldEvent.ENTITY_CREATED, {"entity": entity})]

        await self.commit(workspace_id, world_id, meta, decide)
        return await self.entity(workspace_id, world_id, entity["id"])

    async def update_entity(
        self, workspace_id: str, world_id: str, entity_id: str, changes: JSON, meta: EventMetadata
    ) -> JSON:
        async def decide(conn: AsyncConnection, world: JSON) -> list[NewEvent]:
            current = await _entity_or_404(conn, world_id, entity_id)
            clean = clean_entity_changes(current, changes)
            if not clean:
                return []
            return [NewEvent(WorldEvent.ENTITY_UPDATED, {"entity_id": entity_id, "changes": clean})]

        await self.commit(workspace_id, world_id, meta, decide)
        return await self.entity(workspace_id, world_id, entity_id)

    async def delete_entity(
        self, workspace_id: str, world_id: str, entity_id: str, meta: EventMetadata
    ) -> None:
        async def decide(conn: AsyncConnection, world: JSON) -> list[NewEvent]:
            await _entity_or_404(conn, world_id, entity_id)
            return [NewEvent(WorldEvent.ENTITY_DELETED, {"entity_id": entity_id})]

        await self.commit(workspace_id, world_id, meta, decide)

    async def entity(self, workspace_id: str, world_id: str, entity_id: str) -> JSON:
        """The entity with its facts and relations."""
        async with self.db.read() as conn:
            if await rows.world(conn, workspace_id, world_id) is None:
                raise NotFound(f"world {world_id} not found")
            found = await _entity_or_404(conn, world_id, entity_id)
            found["facts"] = await rows.facts(conn, world_id, [entity_id])
            found["relations"] = await rows.relations(conn, world_id, [entity_id])
        return found

    async def entity_named(self, workspace_id: str, world_id: str, label: str) -> JSON | None:
        """The live entity a `[[label]]` names (by name, then alias), with its facts;
        None when the world has none by that name."""
        async with self.db.read() as conn:
            if await rows.world(conn, workspace_id, world_id) is None:
                raise NotFound(f"world {world_id} not found")
            found = await rows.entity_by_label(conn, world_id, label)
            if found is None:
                return None
            found["facts"] = await rows.facts(conn, world_id, [found["id"]])
        return found

    async def entities(
        self,
        workspace_id: str,
        world_id: str,
        *,
        type: str | None = None,
        status: str | None = None,
        tag: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JSON]:
        query = sa.select(world_entities).where(
            world_entities.c.world_id == world_id, world_entities.c.workspace_id == workspace_id
        )
        if type is not None:
            query = query.where(world_entities.c.type == type)
        if status is not None:
            query = query.where(world_entities.c.status == status)
        async with self.db.read() as conn:
            if await rows.world(conn, workspace_id, world_id) is None:
                raise NotFound(f"world {world_id} not found")
            result = await conn.execute(
                query.order_by(world_entities.c.name, world_entities.c.id)
                .limit(limit)
                .offset(offset)
            )
            found = [rows.plain(r) for r in result]
        if tag is not None:
            found = [e for e in found if tag.lower() in e["tags"]]
        return found

    async def history(self, workspace_id: str, world_id: str, entity_id: str) -> list[JSON]:
        """Every event that touched the entity, oldest first, with who and when."""
        await self.world(workspace_id, world_id)
        events = await self.store.read_stream(stream_id(world_id))
        touched = [e for e in events if entity_id in _entities_in(e)]
        if not touched:
            raise NotFound(f"entity {entity_id} not found")
        return [
            {
                "version": e.version,
                "type": e.type,
                "payload": e.payload,
                "actor": e.metadata.get("actor"),
                "at": e.recorded_at,
            }
            for e in touched
        ]

    # --- facts and relations -----------------------------------------------------------

    async def add_fact(
        self, workspace_id: str, world_id: str, entity_id: str, data: JSON, meta: EventMetadata
    ) -> JSON:
        fact = clean_fact(data)
        fact |= {"id": str(data.get("id") or new_id()), "entity_id": entity_id, "status": "active"}

        async def decide(conn: AsyncConnection, world: JSON) -> list[NewEvent]:
            await _entity_or_404(conn, world_id, entity_id)
            return [NewEvent(WorldEvent.FACT_ADDED, {"fact": fact})]

        await self.commit(workspace_id, world_id, meta, decide)
        return await self._read_fact(world_id, fact["id"])

    async def remove_fact(
        self, workspace_id: str, world_id: str, fact_id: str, meta: EventMetadata
    ) -> None:
        async def decide(conn: AsyncConnection, world: JSON) -> list[NewEvent]:
            found = await rows.fact(conn, world_id, fact_id)
            if found is None:
                raise NotFound(f"fact {fact_id} not found")
            payload = {"fact_id": fact_id, "entity_id": found["entity_id"]}
            return [NewEvent(WorldEvent.FACT_REMOVED, payload)]

        await self.commit(workspace_id, world_id, meta, decide)

    async def facts(self, workspace_id: str, world_id: str) -> list[JSON]:
        async with self.db.read() as conn:
            if await rows.world(conn, workspace_id, world_id) is None:
                raise NotFound(f"world {world_id} not found")
            return await rows.facts(conn, world_id)

    async def _read_fact(self, world_id: str, fact_id: str) -> JSON:
        async with self.db.read() as conn:
            found = await rows.fact(conn, world_id, fact_id)
        assert found is not None
        return found

    async def add_relation(
        self, workspace_id: str, world_id: str, source_id: str, data: JSON, meta: EventMetadata
    ) -> JSON:
        relation: JSON = {
            "id": str(data.get("id") or new_id()),
            "source_id": source_id,
            "type": clean_relation_type(data.get("type", "")),
            "target_id": str(data.get("target_id") or ""),
            "source_refs": clean_refs(data.get("source_refs")),
        }
        if relation["target_id"] == source_id:
            raise InvalidInput("an entity cannot be related to itself")

        async def decide(conn: AsyncConnection, world: JSON) -> list[NewEvent]:
            await _entity_or_404(conn, world_id, source_id)
            if await rows.entity(conn, world_id, relation["target_id"]) is None:
                raise InvalidInput(f"target entity {relation['target_id']!r} is not in this world")
            return [NewEvent(WorldEvent.RELATION_ADDED, {"relation": relation})]

        await self.commit(workspace_id, world_id, meta, decide)
        async with self.db.read() as conn:
            found = await rows.relation(conn, world_id, relation["id"])
        assert found is not None
        return found

    async def remove_relation(
        self, workspace_id: str, world_id: str, relation_id: str, meta: EventMetadata
    ) -> None:
        async def decide(conn: AsyncConnection, world: JSON) -> list[NewEvent]:
            found = await rows.relation(conn, world_id, relation_id)
            if found is None:
                raise NotFound(f"relation {relation_id} not found")
            ends = [found["source_id"], found["target_id"]]
            payload = {"relation_id": relation_id, "entity_ids": ends}
            return [NewEvent(WorldEvent.RELATION_REMOVED, payload)]

        await self.commit(workspace_id, world_id, meta, decide)

    # --- entries ------------------------------------------------------------------------

    async def create_entry(
        self, workspace_id: str, world_id: str, data: JSON, meta: EventMetadata
    ) -> JSON:
        entry_id = str(data.get("id") or new_id())
        kind = str(data.get("kind") or "note")
        if kind not in ENTRY_KINDS:
            raise InvalidInput(f"entry kind must be one of {', '.join(sorted(ENTRY_KINDS))}")

        async def decide(conn: AsyncConnection, world: JSON) -> list[NewEvent]:
            if await rows.entry(conn, world_id, entry_id) is not None:
                raise Conflict(f"entry {entry_id} already exists")
            entry = await clean_entry(conn, world_id, data)
            entry |= {"id": entry_id, "kind": kind}
            return [NewEvent(WorldEvent.ENTRY_CREATED, {"entry": entry})]

        await self.commit(workspace_id, world_id, meta, decide)
        return await self.entry(workspace_id, world_id, entry_id)

    async def update_entry(
        self, workspace_id: str, world_id: str, entry_id: str, changes: JSON, meta: EventMetadata
    ) -> JSON:
        async def decide(conn: AsyncConnection, world: JSON) -> list[NewEvent]:
            current = await rows.entry(conn, world_id, entry_id)
            if current is None:
                raise NotFound(f"entry {entry_id} not found")
            merged = {
                "title": changes.get("title") or current["title"],
                "body": current["body"] if changes.get("body") is None else changes["body"],
                "tags": current["tags"] if changes.get("tags") is None else changes["tags"],
                "source_refs": changes.get("source_refs", current["source_refs"]),
            }
            clean = await clean_entry(conn, world_id, merged)
            return [NewEvent(WorldEvent.ENTRY_UPDATED, {"entry_id": entry_id, "changes": clean})]

        await self.commit(workspace_id, world_id, meta, decide)
        return await self.entry(workspace_id, world_id, entry_id)

    async def delete_entry(
        self, workspace_id: str, world_id: str, entry_id: str, meta: EventMetadata
    ) -> None:
        async def decide(conn: AsyncConnection, world: JSON) -> list[NewEvent]:
            if await rows.entry(conn, world_id, entry_id) is None:
                raise NotFound(f"entry {entry_id} not found")
            return [NewEvent(WorldEvent.ENTRY_DELETED, {"entry_id": entry_id})]

        await self.commit(workspace_id, world_id, meta, decide)

    async def entry(self, workspace_id: str, world_id: str, entry_id: str) -> JSON:
        async with self.db.read() as conn:
            if await rows.world(conn, workspace_id, world_id) is None:
                raise NotFound(f"world {world_id} not found")
            found = await rows.entry(conn, world_id, entry_id)
        if found is None:
            raise NotFound(f"entry {entry_id} not found")
        return found

    async def entries(self, workspace_id: str, world_id: str) -> list[JSON]:
        async with self.db.read() as conn:
            if await rows.world(conn, workspace_id, world_id) is None:
                raise NotFound(f"world {world_id} not found")
            result = await conn.execute(
                sa.select(world_entries)
                .where(world_entries.c.world_id == world_id)
                .order_by(world_entries.c.title)
            )
            return [rows.plain(r) for r in result]


# --- cleaning input ---------------------------------------------------------------------


def clean_world_settings(settings: Any) -> JSON:
    if not isinstance(settings, dict):
        raise InvalidInput("world settings must be an object")
    wrong = free_json_problem(settings)  # an import's, as a body's (api/schemas.py)
    if wrong is not None:
        raise InvalidInput(f"world settings: {wrong}")
    threshold = settings.get("auto_accept_threshold")
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not 0 <= threshold <= 1
    ):
        raise InvalidInput("auto_accept_threshold must be a number from 0 to 1, or null")
    return dict(settings)


def clean_entity(data: JSON) -> JSON:
    name = clean_name(data.get("name", ""))
    status = str(data.get("status") or EntityStatus.DRAFT)
    if status not in set(EntityStatus):
        raise InvalidInput(f"status {status!r} is not one of {', '.join(EntityStatus)}")
    return {
        "type": clean_type(data.get("type", "")),
        "name": name,
        "aliases": clean_aliases(data.get("aliases") or [], name),
        "summary": clean_summary(data.get("summary") or ""),
        "tags": clean_tags(data.get("tags") or []),
        "status": EntityStatus(status).value,
        "source_refs": clean_refs(data.get("source_refs")),
    }


def clean_entity_changes(current: JSON, changes: JSON) -> JSON:
    clean: JSON = {}
    unknown = set(changes) - set(_ENTITY_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown entity fields: {', '.join(sorted(unknown))}")
    name = current["name"]
    if changes.get("name") is not None:
        name = clean_name(changes["name"])
        if name != current["name"]:
            clean["name"] = name
    if changes.get("type") is not None:
        clean["type"] = clean_type(changes["type"])
    if changes.get("aliases") is not None:
        clean["aliases"] = clean_aliases(changes["aliases"], name)
    if changes.get("summary") is not None:
        clean["summary"] = clean_summary(changes["summary"])
    if changes.get("tags") is not None:
        clean["tags"] = clean_tags(changes["tags"])
    if changes.get("status") is not None:
        clean["status"] = check_transition(current["status"], changes["status"]).value
    if changes.get("source_refs") is not None:
        clean["source_refs"] = clean_refs(changes["source_refs"])
    return {k: v for k, v in clean.items() if current.get(k) != v}


def clean_fact(data: JSON) -> JSON:
    return {
        "attribute": clean_attribute(data.get("attribute", "")),
        "value": clean_value(data.get("value")),
        "valid_from": clean_time(data.get("valid_from"), "valid_from"),
        "valid_to": clean_time(data.get("valid_to"), "valid_to"),
        "source_refs": clean_refs(data.get("source_refs")),
    }


async def clean_entry(conn: AsyncConnection, world_id: str, data: JSON) -> JSON:
    title = clean_name(data.get("title", ""), "title")
    body = str(data.get("body") or "")
    if len(body) > MAX_BODY:
        raise InvalidInput(f"an entry's body must be at most {MAX_BODY} characters")
    links = wiki_links(body)
    entity_ids: list[str] = []
    for link in links:
        found = await rows.entity_by_label(conn, world_id, link)
        if found is not None and found["id"] not in entity_ids:
            entity_ids.append(found["id"])
    return {
        "title": title,
        "body": body,
        "tags": clean_tags([*(data.get("tags") or []), *hashtags(body)]),
        "links": links,
        "entity_ids": entity_ids,
        "source_refs": clean_refs(data.get("source_refs")),
    }


async def _entity_or_404(conn: AsyncConnection, world_id: str, entity_id: str) -> JSON:
    found = await rows.entity(conn, world_id, entity_id)
    if found is None:
        raise NotFound(f"entity {entity_id} not found")
    return found


def _entities_in(event: RecordedEvent) -> Iterable[str]:
    p = event.payload
    if "entity" in p and isinstance(p["entity"], dict):
        yield p["entity"]["id"]
    if "entity_id" in p:
        yield p["entity_id"]
    if "fact" in p:
        yield p["fact"]["entity_id"]
    if "relation" in p:
        yield p["relation"]["source_id"]
        yield p["relation"]["target_id"]
    for key in ("into", "merged"):
        if key in p:
            yield p[key]
    for key in ("entity_ids",):
        yield from p.get(key) or []
