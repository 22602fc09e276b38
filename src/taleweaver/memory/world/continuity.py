"""Continuity: a reply's artifacts checked against canon before the turn commits, and
a whole world checked on demand; findings cite both sides, and each resolution
(merge, fork, supersede, ignore) is an event in the world's stream."""

from __future__ import annotations

import re

import sqlalchemy as sa
from rapidfuzz import fuzz
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.errors import InvalidInput, NotFound
from taleweaver.domain.events import JSON, EventMetadata, NewEvent
from taleweaver.domain.pipeline import ReplyUnderReview
from taleweaver.domain.world import WorldEvent, clean_time, overlaps
from taleweaver.domain.world.rules import (
    FUZZY_THRESHOLD,
    cite_entity,
    cite_fact,
    contradictions,
    death_time,
    duplicates,
    finding_id,
    norm_name,
    norm_value,
    timeline_drift,
)
from taleweaver.memory.world import rows
from taleweaver.memory.world.bible import WorldBible, new_id
from taleweaver.store.database import Database
from taleweaver.store.world_schema import world_entities, world_facts, world_findings

ACTIONS = frozenset({"merge", "fork", "supersede", "ignore"})
# A dead character's name followed by something they do ("Aldric draws his sword").
_ACTS = r"(?<!\w){name}(?!\w)\s+(?!(?:is|was|had|has|lies|lay|remains)\b)(\w+(?:s|ed))\b"


class WorldContinuity:
    def __init__(self, db: Database, bible: WorldBible) -> None:
        self.db = db
        self.bible = bible

    # --- before a reply commits ----------------------------------------------------------

    async def check(self, reply: ReplyUnderReview, artifacts: list[JSON]) -> list[JSON]:
        world_id = next((a["world_id"] for a in artifacts if a.get("world_id")), None)
        if world_id is None:
            world_id = reply.world_id
        if not world_id:
            return []
        async with self.db.read() as conn:
            if await rows.world(conn, reply.workspace_id, world_id) is None:
                return []
            findings = await self._artifact_findings(conn, world_id, artifacts)
            findings += await self._dead_acting(conn, world_id, reply)
        return findings

    async def _artifact_findings(
        self, conn: AsyncConnection, world_id: str, artifacts: list[JSON]
    ) -> list[JSON]:
        found: list[JSON] = []
        for artifact in artifacts:
            p = artifact.get("payload") or {}
            cited = {
                "kind": "artifact",
                "artifact_id": artifact.get("id"),
                "source_refs": [artifact.get("source") or {}],
                "payload": p,
            }
            if artifact.get("kind") == "fact":
                entity = await _resolve(conn, world_id, p)
                if entity is None:
                    continue
                for fact in await rows.facts(conn, world_id, [entity["id"]]):
                    if (
                        fact["status"] == "active"
                        and fact["attribute"].casefold() == str(p.get("attribute", "")).casefold()
                        and norm_value(fact["value"]) != norm_value(p.get("value"))
                        and overlaps(
                            fact["valid_from"],
                            fact["valid_to"],
                            _time(p.get("valid_from")),
                            _time(p.get("valid_to")),
                        )
                    ):
                        found.append(
                            {
                                "id": finding_id(
                                    "contradiction", fact["id"], str(artifact.get("id"))
                                ),
                                "kind": "contradiction",
                                "summary": f"{entity['name']}: the reply says {p.get('attribute')} "
                                f"is {p.get('value')!r}; canon says {fact['value']!r}",
                                "entity_ids": [entity["id"]],
                                "citations": [cite_fact(fact, entity), cited],
                            }
                        )
            elif artifact.get("kind") == "entity" and not p.get("entity_id") and p.get("name"):
                for entity in await _near_names(conn, world_id, str(p["name"])):
                    found.append(
                        {
                            "id": finding_id("duplicate", entity["id"], str(artifact.get("id"))),
                            "kind": "duplicate",
                            "summary": f"the reply's {p['name']!r} may be {entity['name']!r}",
                            "entity_ids": [entity["id"]],
                            "citations": [cite_entity(entity), cited],
                        }
                    )
        return found

    async def _dead_acting(
        self, conn: AsyncConnection, world_id: str, reply: ReplyUnderReview
    ) -> list[JSON]:
        found: list[JSON] = []
        for entity, death_fact in await _the_dead(conn, world_id):
            for name in [entity["name"], *entity["aliases"]]:
                pattern = _ACTS.format(name=re.escape(name))
                match = re.search(pattern, reply.reply_text, flags=re.IGNORECASE)
                if match is None:
                    continue
                found.append(
                    {
                        "id": finding_id("drift", death_fact["id"], reply.turn_id),
                        "kind": "timeline_drift",
                        "summary": f"{entity['name']} is dead, but in this reply "
                        f"{match.group(0)!r}",
                        "entity_ids": [entity["id"]],
                        "citations": [
                            cite_fact(death_fact, entity),
                            {
                                "kind": "reply",
                                "source_refs": [
                                    {"session_id": reply.session_id, "turn_id": reply.turn_id}
                                ],
                                "text": match.group(0),
                            },
                        ],
                    }
                )
                break
        return found

    # --- a whole world, on demand ----------------------------------------------------------

    async def run(self, workspace_id: str, world_id: str, meta: EventMetadata) -> list[JSON]:
        """Check the whole world, record the findings (an event), return the open ones."""

        async def decide(conn: AsyncConnection, world: JSON) -> list[NewEvent]:
            entities = await rows.entities(conn, world_id)
            live = {k: v for k, v in entities.items() if v["status"] != "deprecated"}
            facts = [f for f in await rows.facts(conn, world_id) if f["entity_id"] in live]
            relations = await rows.relations(conn, world_id)
            findings = contradictions(facts, live) + duplicates(live.values())
            findings += timeline_drift(live, facts, relations)
            return [NewEvent(WorldEvent.CONTINUITY_CHECKED, {"findings": findings})]

        await self.bible.commit(workspace_id, world_id, meta, decide)
        return await self.findings(workspace_id, world_id, status="open")

    async def findings(
        self, workspace_id: str, world_id: str, *, status: str | None = None
    ) -> list[JSON]:
        await self.bible.world(workspace_id, world_id)
        query = sa.select(world_findings).where(
            world_findings.c.workspace_id == workspace_id, world_findings.c.world_id == world_id
        )
        if status is not None:
            query = query.where(world_findings.c.status == status)
        async with self.db.read() as conn:
            result = await conn.execute(query.order_by(world_findings.c.kind, world_findings.c.id))
            return [rows.plain(r) for r in result]

    async def resolve(
        self,
        workspace_id: str,
        world_id: str,
        finding_id: str,
        action: str,
        meta: EventMetadata,
        *,
        keep: str | None = None,
    ) -> JSON:
        """merge (duplicates: into `keep`), supersede (the fact `keep` wins), fork (the
        other fact moves to a forked entity), ignore (never reported again)."""
        if action not in ACTIONS:
            raise InvalidInput(f"action must be one of {', '.join(sorted(ACTIONS))}")

        async def decide(conn: AsyncConnection, world: JSON) -> list[NewEvent]:
            finding = await _finding(conn, world_id, finding_id)
            if finding["status"] != "open":
                raise InvalidInput(f"finding {finding_id} is already {finding['status']}")
            events = await _resolution(conn, world_id, finding, action, keep)
            resolved = {
                "finding_id": finding_id,
                "action": action,
                "keep": keep,
                "kind": finding["kind"],
            }
            return [*events, NewEvent(WorldEvent.FINDING_RESOLVED, resolved)]

        await self.bible.commit(workspace_id, world_id, meta, decide)
        async with self.db.read() as conn:
            return await _finding(conn, world_id, finding_id)


async def _resolution(
    conn: AsyncConnection, world_id: str, finding: JSON, action: str, keep: str | None
) -> list[NewEvent]:
    if action == "ignore":
        return []
    citations = finding["citations"]
    if action == "merge":
        if finding["kind"] != "duplicate":
            raise InvalidInput("only duplicates can be merged")
        ids = [c["entity_id"] for c in citations if c.get("kind") == "entity"]
        if len(ids) != 2:
            raise InvalidInput("this finding does not name two entities to merge")
        into = keep or ids[0]
        if into not in ids:
            raise InvalidInput("keep must be one of the finding's entities")
        merged = ids[1] if into == ids[0] else ids[0]
        both = await rows.entities(conn, world_id, ids)
        if len(both) != 2:
            raise NotFound("one of the entities to merge no longer exists")
        target, other = both[into], both[merged]
        aliases = list(dict.fromkeys([*target["aliases"], other["name"], *other["aliases"]]))
        aliases = [a for a in aliases if a.casefold() != target["name"].casefold()]
        return [
            NewEvent(
                WorldEvent.ENTITIES_MERGED, {"into": into, "merged": merged, "aliases": aliases}
            )
        ]
    facts = [c["fact_id"] for c in citations if c.get("kind") == "fact"]
    if not facts:
        raise InvalidInput(f"{action} needs a finding about facts")
    winner = keep or facts[-1]
    losers = [f for f in facts if f != winner]
    if winner not in facts:
        raise InvalidInput("keep must be one of the finding's facts")
    if not losers:
        raise InvalidInput(f"nothing to {action}: the finding cites one fact")
    events: list[NewEvent] = []
    for loser in losers:
        fact = await rows.fact(conn, world_id, loser)
        if fact is None:
            raise NotFound(f"fact {loser} no longer exists")
        if action == "supersede":
            events.append(
                NewEvent(
                    WorldEvent.FACT_UPDATED,
                    {
                        "fact_id": loser,
                        "entity_id": fact["entity_id"],
                        "changes": {"status": "superseded"},
                    },
                )
            )
        else:  # fork: the losing claim lives on in a forked entity
            entity = await rows.entity(conn, world_id, fact["entity_id"])
            assert entity is not None
            fork = {k: entity[k] for k in ("type", "aliases", "summary", "tags", "source_refs")}
            fork |= {
                "id": new_id(),
                "name": f"{entity['name']} (fork)"[:200],
                "status": "draft",
                "aliases": [],
            }
            events += [
                NewEvent(WorldEvent.ENTITY_CREATED, {"entity": fork}),
                NewEvent(
                    WorldEvent.FACT_UPDATED,
                    {
                        "fact_id": loser,
                        "entity_id": fork["id"],
                        "changes": {"entity_id": fork["id"]},
                    },
                ),
                NewEvent(
                    WorldEvent.RELATION_ADDED,
                    {
                        "relation": {
                            "id": new_id(),
                            "source_id": fork["id"],
                            "type": "forked_from",
                            "target_id": entity["id"],
                            "source_refs": [],
                        }
                    },
                ),
            ]
    return events


async def _finding(conn: AsyncConnection, world_id: str, finding_id: str) -> JSON:
    row = (
        await conn.execute(
            sa.select(world_findings).where(
                world_findings.c.world_id == world_id, world_findings.c.id == finding_id
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"finding {finding_id} not found")
    return rows.plain(row)


async def _resolve(conn: AsyncConnection, world_id: str, p: JSON) -> JSON | None:
    if p.get("entity_id"):
        found = await rows.entity(conn, world_id, str(p["entity_id"]))
        if found is not None:
            return found
    name = p.get("entity")
    return await rows.entity_by_label(conn, world_id, name) if isinstance(name, str) else None


async def _near_names(conn: AsyncConnection, world_id: str, name: str) -> list[JSON]:
    """Live entities whose name nearly matches `name` (not exactly: that is the same one)."""
    wanted = norm_name(name)
    if not wanted:
        return []
    result = await conn.execute(
        sa.select(world_entities).where(
            world_entities.c.world_id == world_id,
            world_entities.c.status != "deprecated",
            sa.func.lower(sa.func.substr(world_entities.c.name, 1, 1)) == wanted[0],
        )
    )
    near: list[JSON] = []
    for row in result:
        score = fuzz.token_sort_ratio(wanted, norm_name(row.name))
        if FUZZY_THRESHOLD <= score < 100:
            near.append(rows.plain(row))
    return near


async def _the_dead(conn: AsyncConnection, world_id: str) -> list[tuple[JSON, JSON]]:
    result = await conn.execute(
        sa.select(world_facts).where(
            world_facts.c.world_id == world_id,
            world_facts.c.status == "active",
            sa.func.lower(world_facts.c.attribute).in_(
                [
                    "status",
                    "state",
                    "alive",
                    "condition",
                    "life",
                    "vital_status",
                    "died",
                    "died_at",
                    "death",
                    "date_of_death",
                ]
            ),
        )
    )
    by_entity: dict[str, list[JSON]] = {}
    for row in result:
        by_entity.setdefault(row.entity_id, []).append(rows.plain(row))
    entities = await rows.entities(conn, world_id, list(by_entity))
    dead: list[tuple[JSON, JSON]] = []
    for entity_id, facts in by_entity.items():
        death = death_time(facts)
        entity = entities.get(entity_id)
        if death is not None and entity is not None and entity["status"] != "deprecated":
            dead.append((entity, death[1]))
    return dead


def _time(value: object) -> int | str | None:
    try:
        return clean_time(value)
    except InvalidInput:
        return None
