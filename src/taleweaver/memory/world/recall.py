"""World memory as a context source: the session's world, searched with the recent
story, handed to recall as pieces that say which retrieval found them."""

from __future__ import annotations

from taleweaver.config import WorldSettings
from taleweaver.domain.errors import NotFound
from taleweaver.domain.events import JSON
from taleweaver.domain.pipeline import ContextPiece, RecallQuery
from taleweaver.memory.world import rows
from taleweaver.memory.world.search import Hit, HybridSearch
from taleweaver.store.database import Database

# How many recent messages the query reads, and how many entities it hands on.
RECENT_MESSAGES = 4
FACTS_PER_ENTITY = 8
RELATIONS_PER_ENTITY = 6


class WorldRecall:
    name = "world"

    def __init__(self, db: Database, search: HybridSearch) -> None:
        self.db = db
        self.search = search
        configured = WorldSettings.read()
        self.limit = configured.world_recall_k
        self.hops = configured.world_recall_hops

    async def gather(self, query: RecallQuery) -> list[ContextPiece]:
        world_id = query.world_id
        if world_id is None:
            return []
        recent = [text for _, text in query.recent[-RECENT_MESSAGES:]]
        if query.current_text:
            recent.append(query.current_text)
        text = "\n".join(recent)
        if not text.strip():
            return []
        try:
            hits = await self.search.search(
                query.workspace_id, world_id, text, limit=self.limit, hops=self.hops
            )
        except NotFound:
            return []  # the world was deleted, or is another workspace's: nothing to tell
        if not hits:
            return []
        details = await self._details(world_id, [h.entity["id"] for h in hits])
        return [self._piece(rank, hit, details) for rank, hit in enumerate(hits, start=1)]

    async def _details(self, world_id: str, ids: list[str]) -> JSON:
        async with self.db.read() as conn:
            facts = await rows.facts(conn, world_id, ids)
            relations = await rows.relations(conn, world_id, ids)
            names = await rows.entities(
                conn,
                world_id,
                {r["source_id"] for r in relations} | {r["target_id"] for r in relations},
            )
        return {"facts": facts, "relations": relations, "names": names}

    def _piece(self, rank: int, hit: Hit, details: JSON) -> ContextPiece:
        entity = hit.entity
        status = entity["status"]
        label = "canon" if status == "canon" else f"{status}, not yet canon"
        lines = [f"[World] {entity['name']} ({entity['type']}, {label})"]
        if entity["aliases"]:
            lines.append(f"Also known as: {', '.join(entity['aliases'])}")
        if entity["summary"]:
            lines.append(entity["summary"])
        facts = [
            f
            for f in details["facts"]
            if f["entity_id"] == entity["id"] and f["status"] == "active"
        ][:FACTS_PER_ENTITY]
        for fact in facts:
            when = _when(fact)
            lines.append(f"- {fact['attribute']}: {fact['value']}{when}")
        names = details["names"]
        related = [
            r for r in details["relations"] if entity["id"] in (r["source_id"], r["target_id"])
        ][:RELATIONS_PER_ENTITY]
        for rel in related:
            source = names.get(rel["source_id"], {}).get("name", rel["source_id"])
            target = names.get(rel["target_id"], {}).get("name", rel["target_id"])
            lines.append(f"- {source} {rel['type'].replace('_', ' ')} {target}")
        return ContextPiece(
            text="\n".join(lines),
            source="world",
            ref=f"entity:{entity['id']}",
            reason="; ".join(hit.reasons),
            # Canon first, then by fused rank.
            priority=(200 if status == "canon" else 100) - rank,
            placement="before_history",
            order=rank,
            detail=hit.detail | {"name": entity["name"], "status": status, "score": hit.score},
        )


def _when(fact: JSON) -> str:
    start, end = fact.get("valid_from"), fact.get("valid_to")
    if start is None and end is None:
        return ""
    if end is None:
        return f" (from {start})"
    if start is None:
        return f" (until {end})"
    return f" ({start} to {end})"
