"""The world bible's read models, written from `world:<id>` events in the events' own
transaction (as session projections are), so a read never sees half a change."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.events import JSON, RecordedEvent
from taleweaver.domain.world import WorldEvent
from taleweaver.domain.world.model import search_text
from taleweaver.memory.world.pgvector import forget
from taleweaver.memory.world.vectors import bump
from taleweaver.store.world_schema import (
    world_artifacts,
    world_entities,
    world_entries,
    world_facts,
    world_findings,
    world_relations,
    world_vectors,
    worlds,
)


def world_of(event: RecordedEvent) -> str:
    return event.stream_id.removeprefix("world:")


async def project(conn: AsyncConnection, recorded: Sequence[RecordedEvent]) -> None:
    for event in recorded:
        await _one(conn, event)
    if recorded and recorded[-1].type != WorldEvent.WORLD_DELETED:
        last = recorded[-1]
        await conn.execute(
            worlds.update()
            .where(worlds.c.id == world_of(last))
            .values(version=last.version, updated_at=last.recorded_at)
        )


async def _one(conn: AsyncConnection, event: RecordedEvent) -> None:
    p = event.payload
    world_id = world_of(event)
    ws = event.workspace_id
    at = event.recorded_at
    actor = str(event.metadata.get("actor") or "system")
    match event.type:
        case WorldEvent.WORLD_CREATED:
            await conn.execute(
                worlds.insert().values(
                    id=world_id,
                    workspace_id=ws,
                    name=p["name"],
                    description=p.get("description", ""),
                    settings=p.get("settings") or {},
                    version=event.version,
                    vectors_version=0,
                    created_at=at,
                    updated_at=at,
                )
            )
        case WorldEvent.WORLD_UPDATED:
            await conn.execute(worlds.update().where(worlds.c.id == world_id).values(p["changes"]))
        case WorldEvent.WORLD_DELETED:
            for table in (
                world_entities,
                world_facts,
                world_relations,
                world_entries,
                world_vectors,
                world_artifacts,
                world_findings,
            ):
                await conn.execute(table.delete().where(table.c.world_id == world_id))
            await conn.execute(worlds.delete().where(worlds.c.id == world_id))
        case WorldEvent.ENTITY_CREATED:
            entity = p["entity"]
            await conn.execute(
                world_entities.insert().values(
                    **entity,
                    workspace_id=ws,
                    world_id=world_id,
                    search_text=_search(entity),
                    created_at=at,
                    updated_at=at,
                    updated_by=actor,
                )
            )
        case WorldEvent.ENTITY_UPDATED:
            await _update_entity(conn, world_id, p["entity_id"], p["changes"], at, actor)
        case WorldEvent.ENTITY_DELETED:
            await _delete_entity(conn, world_id, p["entity_id"])
        case WorldEvent.ENTITIES_MERGED:
            await _merge(conn, world_id, p, at, actor)
        case WorldEvent.FACT_ADDED:
            await conn.execute(
                world_facts.insert().values(
                    **p["fact"], workspace_id=ws, world_id=world_id, created_at=at, created_by=actor
                )
            )
        case WorldEvent.FACT_UPDATED:
            await conn.execute(
                world_facts.update()
                .where(world_facts.c.world_id == world_id, world_facts.c.id == p["fact_id"])
                .values(p["changes"])
            )
        case WorldEvent.FACT_REMOVED:
            await conn.execute(
                world_facts.delete().where(
                    world_facts.c.world_id == world_id, world_facts.c.id == p["fact_id"]
                )
            )
        case WorldEvent.RELATION_ADDED:
            await conn.execute(
                world_relations.insert().values(
                    **p["relation"], workspace_id=ws, world_id=world_id, created_at=at
                )
            )
        case WorldEvent.RELATION_REMOVED:
            await conn.execute(
                world_relations.delete().where(
                    world_relations.c.world_id == world_id,
                    world_relations.c.id == p["relation_id"],
                )
            )
        case WorldEvent.ENTRY_CREATED:
            await conn.execute(
                world_entries.insert().values(
                    **p["entry"],
                    workspace_id=ws,
                    world_id=world_id,
                    created_at=at,
                    updated_at=at,
                    updated_by=actor,
                )
            )
        case WorldEvent.ENTRY_UPDATED:
            await conn.execute(
                world_entries.update()
                .where(world_entries.c.world_id == world_id, world_entries.c.id == p["entry_id"])
                .values(**p["changes"], updated_at=at, updated_by=actor)
            )
        case WorldEvent.ENTRY_DELETED:
            await conn.execute(
                world_entries.delete().where(
                    world_entries.c.world_id == world_id, world_entries.c.id == p["entry_id"]
                )
            )
        case WorldEvent.ARTIFACT_REVIEWED:
            await conn.execute(
                world_artifacts.update()
                .where(
                    world_artifacts.c.world_id == world_id,
                    world_artifacts.c.id == p["artifact_id"],
                )
                .values(
                    status=p["status"], decision=p["decision"], reviewed_at=at, reviewed_by=actor
                )
            )
        case WorldEvent.CONTINUITY_CHECKED:
            await _record_findings(conn, world_id, ws, p["findings"], at)
        case WorldEvent.FINDING_RESOLVED:
            await conn.execute(
                world_findings.update()
                .where(
                    world_findings.c.world_id == world_id, world_findings.c.id == p["finding_id"]
                )
                .values(
                    status="ignored" if p["action"] == "ignore" else "resolved",
                    resolution={k: v for k, v in p.items() if k != "finding_id"},
                    resolved_at=at,
                )
            )
        case _:
            pass


def _search(entity: JSON) -> str:
    return search_text(entity["name"], entity["aliases"], entity["summary"], entity["tags"])


async def _update_entity(
    conn: AsyncConnection, world_id: str, entity_id: str, changes: JSON, at: object, actor: str
) -> None:
    row = (
        await conn.execute(
            sa.select(
                world_entities.c.name,
                world_entities.c.aliases,
                world_entities.c.summary,
                world_entities.c.tags,
            ).where(world_entities.c.world_id == world_id, world_entities.c.id == entity_id)
        )
    ).first()
    if row is None:
        return
    merged = dict(row._mapping) | changes
    await conn.execute(
        world_entities.update()
        .where(world_entities.c.world_id == world_id, world_entities.c.id == entity_id)
        .values(**changes, search_text=_search(merged), updated_at=at, updated_by=actor)
    )


async def _delete_entity(conn: AsyncConnection, world_id: str, entity_id: str) -> None:
    await conn.execute(
        world_facts.delete().where(
            world_facts.c.world_id == world_id, world_facts.c.entity_id == entity_id
        )
    )
    await conn.execute(
        world_relations.delete().where(
            world_relations.c.world_id == world_id,
            sa.or_(
                world_relations.c.source_id == entity_id, world_relations.c.target_id == entity_id
            ),
        )
    )
    await conn.execute(
        world_vectors.delete().where(
            world_vectors.c.world_id == world_id, world_vectors.c.entity_id == entity_id
        )
    )
    await forget(conn, world_id, [entity_id])
    await bump(conn, world_id)
    await conn.execute(
        world_entities.delete().where(
            world_entities.c.world_id == world_id, world_entities.c.id == entity_id
        )
    )


async def _merge(conn: AsyncConnection, world_id: str, p: JSON, at: object, actor: str) -> None:
    """`merged` folds into `into`: its facts and relations move, its names become aliases,
    and it stays behind deprecated (so references to it still resolve)."""
    into, merged = p["into"], p["merged"]
    await conn.execute(
        world_facts.update()
        .where(world_facts.c.world_id == world_id, world_facts.c.entity_id == merged)
        .values(entity_id=into)
    )
    for column in (world_relations.c.source_id, world_relations.c.target_id):
        await conn.execute(
            world_relations.update()
            .where(world_relations.c.world_id == world_id, column == merged)
            .values({column.name: into})
        )
    await conn.execute(
        world_relations.delete().where(
            world_relations.c.world_id == world_id,
            world_relations.c.source_id == world_relations.c.target_id,
        )
    )
    await _update_entity(conn, world_id, into, {"aliases": p["aliases"]}, at, actor)
    await _update_entity(conn, world_id, merged, {"status": "deprecated"}, at, actor)
    await conn.execute(
        world_vectors.delete().where(
            world_vectors.c.world_id == world_id, world_vectors.c.entity_id == merged
        )
    )
    await forget(conn, world_id, [merged])
    await bump(conn, world_id)


async def _record_findings(
    conn: AsyncConnection, world_id: str, ws: str, findings: list[JSON], at: object
) -> None:
    known = {
        r.id: r.status
        for r in await conn.execute(
            sa.select(world_findings.c.id, world_findings.c.status).where(
                world_findings.c.world_id == world_id
            )
        )
    }
    found = {f["id"] for f in findings}
    for finding in findings:
        status = known.get(finding["id"])
        if status is None:
            await conn.execute(
                world_findings.insert().values(
                    id=finding["id"],
                    world_id=world_id,
                    workspace_id=ws,
                    kind=finding["kind"],
                    summary=finding["summary"],
                    entity_ids=finding["entity_ids"],
                    citations=finding["citations"],
                    status="open",
                    resolution=None,
                    found_at=at,
                    resolved_at=None,
                )
            )
        elif status == "cleared":  # it came back
            await conn.execute(
                world_findings.update()
                .where(world_findings.c.world_id == world_id, world_findings.c.id == finding["id"])
                .values(status="open", citations=finding["citations"], found_at=at)
            )
    gone = [fid for fid, status in known.items() if status == "open" and fid not in found]
    if gone:
        await conn.execute(
            world_findings.update()
            .where(world_findings.c.world_id == world_id, world_findings.c.id.in_(gone))
            .values(status="cleared")
        )
