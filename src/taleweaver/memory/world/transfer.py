"""A world as one JSON document (`format: taleweaver.world`), and back.

Export holds everything the bible holds (entities with their statuses and source
references, facts, relations, entries); import replays it as events into a new
world (or an existing one), keeping every id, so an export re-imported exports
the same again.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.errors import Conflict, InvalidInput
from taleweaver.domain.events import JSON, EventMetadata, NewEvent
from taleweaver.domain.world import WorldEvent
from taleweaver.domain.world.model import clean_name, clean_tags
from taleweaver.memory.world import rows
from taleweaver.memory.world.bible import (
    WorldBible,
    clean_entity,
    clean_fact,
    clean_refs,
    clean_relation_type,
)

FORMAT = "taleweaver.world"
VERSION = 1
_ENTITY_KEYS = ("id", "type", "name", "aliases", "summary", "tags", "status", "source_refs")
_FACT_KEYS = (
    "id",
    "entity_id",
    "attribute",
    "value",
    "valid_from",
    "valid_to",
    "source_refs",
    "status",
)
_RELATION_KEYS = ("id", "source_id", "type", "target_id", "source_refs")
_ENTRY_KEYS = ("id", "kind", "title", "body", "tags", "links", "entity_ids", "source_refs")


def is_world_export(data: Any) -> bool:
    return isinstance(data, dict) and data.get("format") == FORMAT


async def export_world(bible: WorldBible, workspace_id: str, world_id: str) -> JSON:
    world = await bible.world(workspace_id, world_id)
    async with bible.db.read() as conn:
        entities = await rows.entities(conn, world_id)
        facts = await rows.facts(conn, world_id)
        relations = await rows.relations(conn, world_id)
    entries = await bible.entries(workspace_id, world_id)
    return {
        "format": FORMAT,
        "version": VERSION,
        "world": {k: world[k] for k in ("id", "name", "description", "settings")},
        "entities": [
            {k: e[k] for k in _ENTITY_KEYS}
            for e in sorted(entities.values(), key=lambda e: (e["name"], e["id"]))
        ],
        "facts": [{k: f[k] for k in _FACT_KEYS} for f in sorted(facts, key=lambda f: f["id"])],
        "relations": [
            {k: r[k] for k in _RELATION_KEYS} for r in sorted(relations, key=lambda r: r["id"])
        ],
        "entries": [{k: e[k] for k in _ENTRY_KEYS} for e in sorted(entries, key=lambda e: e["id"])],
    }


async def import_world(
    bible: WorldBible,
    workspace_id: str,
    data: JSON,
    meta: EventMetadata,
    *,
    world_id: str | None = None,
) -> JSON:
    """Import an export into `world_id` (which must exist) or into a new world."""
    if not is_world_export(data):
        raise InvalidInput(f"not a Taleweaver world export (format must be {FORMAT!r})")
    version = data.get("version")
    if isinstance(version, bool) or version != VERSION:
        raise InvalidInput(f"unsupported world export version {version!r}")
    source = _header(data.get("world"))
    events = _events(data)

    async def decide(conn: AsyncConnection, world: JSON) -> list[NewEvent]:
        existing = await rows.entities(
            conn,
            world["id"],
            [e.payload["entity"]["id"] for e in events if e.type == WorldEvent.ENTITY_CREATED],
        )
        if existing:
            raise Conflict(f"the world already has {len(existing)} of these entities")
        return events

    try:
        if world_id is None:  # the world and all it holds in one transaction
            created = await bible.create_world(
                workspace_id,
                name=str(source.get("name") or "Imported world"),
                description=str(source.get("description") or ""),
                settings=source.get("settings") or {},
                meta=meta,
                then=events,
            )
            world_id = str(created["id"])
        else:
            await bible.commit(workspace_id, world_id, meta, decide)
    except sa.exc.IntegrityError as exc:  # a fact, relation or entry id the world has
        raise Conflict("the world already holds an item with one of this export's ids") from exc
    return await bible.world(workspace_id, world_id)


def _header(source: Any) -> JSON:
    """The export's `world` object, its fields of the types an export writes."""
    if source is None:
        return {}
    if not isinstance(source, dict):
        raise InvalidInput("the export's 'world' must be an object")
    for key, kind in (("name", str), ("description", str), ("settings", dict)):
        if source.get(key) is not None and not isinstance(source[key], kind):
            raise InvalidInput(f"the export's world {key} must be a {kind.__name__}")
    return source


def _events(data: JSON) -> list[NewEvent]:
    """Validated events for everything in the export, entities first."""
    try:
        entities = [_entity(e) for e in data.get("entities") or []]
        ids = {e["id"] for e in entities}
        facts = [_fact(f, ids) for f in data.get("facts") or []]
        relations = [_relation(r, ids) for r in data.get("relations") or []]
        entries = [_entry(e) for e in data.get("entries") or []]
    except (KeyError, TypeError, AttributeError) as exc:
        raise InvalidInput(f"the export is malformed: {exc!r}") from exc
    for kind, items in (
        ("entity", entities),
        ("fact", facts),
        ("relation", relations),
        ("entry", entries),
    ):
        if len({item["id"] for item in items}) != len(items):
            raise InvalidInput(f"the export repeats a{'n' if kind[0] in 'ae' else ''} {kind} id")
    return [
        *(NewEvent(WorldEvent.ENTITY_CREATED, {"entity": e}) for e in entities),
        *(NewEvent(WorldEvent.FACT_ADDED, {"fact": f}) for f in facts),
        *(NewEvent(WorldEvent.RELATION_ADDED, {"relation": r}) for r in relations),
        *(NewEvent(WorldEvent.ENTRY_CREATED, {"entry": e}) for e in entries),
    ]


def _entity(e: JSON) -> JSON:
    return clean_entity(e) | {"id": _id(e)}


def _fact(f: JSON, ids: set[str]) -> JSON:
    if f["entity_id"] not in ids:
        raise InvalidInput(f"fact {f.get('id')!r} is about an entity the export lacks")
    status = f.get("status", "active")
    if status not in ("active", "superseded"):
        raise InvalidInput(f"fact status {status!r} is not active or superseded")
    return clean_fact(f) | {"id": _id(f), "entity_id": f["entity_id"], "status": status}


def _relation(r: JSON, ids: set[str]) -> JSON:
    if r["source_id"] not in ids or r["target_id"] not in ids:
        raise InvalidInput(f"relation {r.get('id')!r} joins an entity the export lacks")
    return {
        "id": _id(r),
        "source_id": r["source_id"],
        "type": clean_relation_type(r["type"]),
        "target_id": r["target_id"],
        "source_refs": clean_refs(r.get("source_refs")),
    }


def _entry(e: JSON) -> JSON:
    return {
        "id": _id(e),
        "kind": str(e.get("kind") or "note"),
        "title": clean_name(e["title"], "title"),
        "body": str(e.get("body") or ""),
        "tags": clean_tags(e.get("tags") or []),
        "links": [str(x) for x in e.get("links") or []],
        "entity_ids": [str(x) for x in e.get("entity_ids") or []],
        "source_refs": clean_refs(e.get("source_refs")),
    }


def _id(item: JSON) -> str:
    value = item.get("id")
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise InvalidInput("every exported item needs an id of 1-64 characters")
    return value
