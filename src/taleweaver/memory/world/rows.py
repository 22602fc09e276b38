"""Reading world rows inside a caller's connection (read or write transaction)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.events import JSON
from taleweaver.domain.world.names import NameMatch, core, match_name
from taleweaver.store.world_schema import (
    world_entities,
    world_entries,
    world_facts,
    world_relations,
    worlds,
)

# SQLite and PostgreSQL both bind at most tens of thousands of parameters.
CHUNK = 500


def plain(row: Any) -> JSON:
    """A row as a dict, timestamps in UTC (SQLite hands back naive ones)."""
    data = dict(row._mapping)
    for key, value in data.items():
        if isinstance(value, datetime) and value.tzinfo is None:
            data[key] = value.replace(tzinfo=UTC)
    data.pop("search_text", None)
    data.pop("search", None)
    return data


async def _one(conn: AsyncConnection, table: sa.Table, world_id: str, row_id: str) -> JSON | None:
    """One row of a world's table by id (None when it is not in that world)."""
    found = (
        await conn.execute(
            sa.select(table).where(table.c.world_id == world_id, table.c.id == row_id)
        )
    ).first()
    return plain(found) if found else None


async def world(conn: AsyncConnection, workspace_id: str, world_id: str) -> JSON | None:
    row = (
        await conn.execute(
            sa.select(worlds).where(worlds.c.id == world_id, worlds.c.workspace_id == workspace_id)
        )
    ).first()
    return plain(row) if row else None


async def entity(conn: AsyncConnection, world_id: str, entity_id: str) -> JSON | None:
    return await _one(conn, world_entities, world_id, entity_id)


async def entities(
    conn: AsyncConnection, world_id: str, ids: Iterable[str] | None = None
) -> dict[str, JSON]:
    """The world's entities by id (all of them, or those in `ids`)."""
    if ids is None:
        result = await conn.execute(
            sa.select(world_entities).where(world_entities.c.world_id == world_id)
        )
        return {r.id: plain(r) for r in result}
    found: dict[str, JSON] = {}
    wanted = list(dict.fromkeys(ids))
    for start in range(0, len(wanted), CHUNK):
        result = await conn.execute(
            sa.select(world_entities).where(
                world_entities.c.world_id == world_id,
                world_entities.c.id.in_(wanted[start : start + CHUNK]),
            )
        )
        found |= {r.id: plain(r) for r in result}
    return found


async def facts(
    conn: AsyncConnection, world_id: str, entity_ids: Sequence[str] | None = None
) -> list[JSON]:
    query = sa.select(world_facts).where(world_facts.c.world_id == world_id)
    if entity_ids is None:
        result = await conn.execute(query.order_by(world_facts.c.created_at, world_facts.c.id))
        return [plain(r) for r in result]
    rows: list[JSON] = []
    for start in range(0, len(entity_ids), CHUNK):
        chunk = list(entity_ids[start : start + CHUNK])
        result = await conn.execute(
            query.where(world_facts.c.entity_id.in_(chunk)).order_by(
                world_facts.c.created_at, world_facts.c.id
            )
        )
        rows += [plain(r) for r in result]
    return rows


async def fact(conn: AsyncConnection, world_id: str, fact_id: str) -> JSON | None:
    return await _one(conn, world_facts, world_id, fact_id)


async def relations(
    conn: AsyncConnection, world_id: str, entity_ids: Sequence[str] | None = None
) -> list[JSON]:
    query = sa.select(world_relations).where(world_relations.c.world_id == world_id)
    if entity_ids is None:
        result = await conn.execute(query.order_by(world_relations.c.created_at))
        return [plain(r) for r in result]
    rows: dict[str, JSON] = {}
    for start in range(0, len(entity_ids), CHUNK):
        chunk = list(entity_ids[start : start + CHUNK])
        # Two index searches: an OR across both columns makes the planner scan the world.
        for column in (world_relations.c.source_id, world_relations.c.target_id):
            result = await conn.execute(query.where(column.in_(chunk)))
            rows |= {r.id: plain(r) for r in result}
    return sorted(rows.values(), key=lambda r: (r["created_at"], r["id"]))


async def relation(conn: AsyncConnection, world_id: str, relation_id: str) -> JSON | None:
    return await _one(conn, world_relations, world_id, relation_id)


async def entry(conn: AsyncConnection, world_id: str, entry_id: str) -> JSON | None:
    return await _one(conn, world_entries, world_id, entry_id)


async def entity_by_label(conn: AsyncConnection, world_id: str, label: str) -> JSON | None:
    """An entity whose name (or, failing that, an alias) is `label`, case-insensitively."""
    folded = label.casefold()
    row = (
        await conn.execute(
            sa.select(world_entities)
            .where(
                world_entities.c.world_id == world_id,
                sa.func.lower(world_entities.c.name) == folded,
                world_entities.c.status != "deprecated",
            )
            .limit(1)
        )
    ).first()
    if row is not None:
        return plain(row)
    # Aliases are JSON lists: a text pre-filter, then an exact check here.
    result = await conn.execute(
        sa.select(world_entities).where(
            world_entities.c.world_id == world_id,
            world_entities.c.status != "deprecated",
            world_entities.c.search_text.ilike(f"%{_like(label)}%", escape="\\"),
        )
    )
    for candidate in result:
        if any(a.casefold() == folded for a in candidate.aliases):
            return plain(candidate)
    return None


async def entity_like(conn: AsyncConnection, world_id: str, label: str) -> NameMatch | None:
    """The one live entity `label` most likely names when none has it as its name or
    alias (see domain.world.names): "Malvek" for "Lord Malvek"."""
    cored = core(label)
    if not cored:
        return None
    # Candidates share the start of one of the name's words; the matcher decides.
    stems = {w[:4] for w in cored.split() if len(w) >= 3} or {cored[:4]}
    result = await conn.execute(
        sa.select(world_entities).where(
            world_entities.c.world_id == world_id,
            world_entities.c.status != "deprecated",
            sa.or_(
                *(
                    world_entities.c.search_text.ilike(f"%{_like(stem)}%", escape="\\")
                    for stem in stems
                )
            ),
        )
    )
    return match_name(label, [plain(row) for row in result])


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
