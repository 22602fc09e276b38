"""Keyword retrieval over one world, with a bounded cost however large the world.

A word that appears in thousands of a world's entities says little about which
one is meant (its inverse document frequency is near zero) and ranking every one
of its matches is what made recall slow at 100,000 entities. So each query word's
document frequency in the world is probed first, counting at most `COMMON`
matches, and only the distinctive words are ranked (bm25 on SQLite, ts_rank_cd on
PostgreSQL). Words skipped as common are reported with the hits.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.config import WorldSettings
from taleweaver.store.schema import Json
from taleweaver.store.sqlite_fast import Row, fetch_all

_SAFE = re.compile(r"[^\w]+", re.UNICODE)
MAX_TERMS = 12


COMMON = WorldSettings.read().world_keyword_common


@dataclass(slots=True)
class KeywordHit:
    id: str
    name: str
    aliases: list[str]
    score: float
    term: str
    # (created_at, id, source_id, type, target_id) of relations touching the entity,
    # when they came with the hit (SQLite: it saves the graph walk a round trip).
    relations: list[tuple[Any, ...]] | None = None


@dataclass(slots=True)
class KeywordResult:
    hits: list[KeywordHit] = field(default_factory=list)
    # Words that matched at least COMMON entities, left out of the ranking.
    common: list[str] = field(default_factory=list)
    # The world's `vectors_version`, read in the same statement as the word counts
    # (one round trip less); None when the workspace has no such world.
    vectors_version: int | None = None


def terms_of(words: list[str]) -> list[str]:
    """Query words reduced to plain word characters, distinct, at most MAX_TERMS."""
    cleaned = " ".join(t for t in (_SAFE.sub(" ", w).strip() for w in words) if t)
    return list(dict.fromkeys(cleaned.split()))[:MAX_TERMS]


async def keyword_search(
    conn: AsyncConnection, workspace_id: str, world_id: str, words: list[str], limit: int
) -> KeywordResult:
    """The world's best `limit` live entities for `words`, best first."""
    terms = terms_of(words)
    if conn.dialect.name == "postgresql":
        return await _postgres(conn, workspace_id, world_id, terms, limit)
    return await _sqlite(conn, workspace_id, world_id, terms, limit)


_VERSION = "(SELECT vectors_version FROM worlds WHERE id = :world AND workspace_id = :ws)"


def _phrase(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


async def _sqlite(
    conn: AsyncConnection, workspace_id: str, world_id: str, terms: list[str], limit: int
) -> KeywordResult:
    # Each word is counted twice, up to COMMON: in this world and in the whole index.
    world = f"world_id : {_phrase(world_id)}"
    probe = "(SELECT count(*) FROM (SELECT 1 FROM world_fts WHERE world_fts MATCH :{} LIMIT :c))"
    params: dict[str, object] = {"c": COMMON}
    columns = []
    for i, term in enumerate(terms):
        params[f"w{i}"] = f"{world} AND search_text : {_phrase(term)}"
        params[f"a{i}"] = f"search_text : {_phrase(term)}"
        columns += [probe.format(f"w{i}"), probe.format(f"a{i}")]
    params |= {"world": world_id, "ws": workspace_id}
    [(version, *counts)] = await fetch_all(
        conn, f"SELECT {', '.join([_VERSION, *columns])}", params
    )
    in_world, everywhere = counts[0::2], counts[1::2]
    rare = [t for t, n in zip(terms, in_world, strict=True) if 0 < n < COMMON]
    common = [t for t, n in zip(terms, in_world, strict=True) if n >= COMMON]
    if version is None or not rare:
        return KeywordResult([], common, version)
    words = f"search_text : ({' OR '.join(_phrase(t) for t in rare)})"
    if all(n < COMMON for t, n in zip(terms, everywhere, strict=True) if t in rare):
        # Rare everywhere: rank all their matches and keep this world's. Naming the
        # world in MATCH would cost more: bm25 counts every row of the world then.
        match, where = words, "AND world_fts.world_id = :world"
    else:
        # Rare here, common in other worlds: let the index pick this world's rows.
        match, where = f"{world} AND {words}", ""
    rows = await fetch_all(
        conn,
        f"SELECT e.id, e.name, e.aliases, e.summary, f.score, {_TOUCHING} FROM ("
        "SELECT rowid, -bm25(world_fts, 1.0, 0.0, 0.0, 0.0) AS score FROM world_fts "
        f"WHERE world_fts MATCH :match {where} ORDER BY score DESC LIMIT :pool) AS f "
        "JOIN world_entities e ON e.rowid = f.rowid "
        "WHERE e.world_id = :world AND e.workspace_id = :ws AND e.status != 'deprecated' "
        "ORDER BY f.score DESC, e.id LIMIT :limit",
        {"match": match, "pool": limit * 2, "world": world_id, "ws": workspace_id, "limit": limit},
    )
    return KeywordResult(_sqlite_hits(rows, rare), common, version)


def _sqlite_hits(rows: list[Row], rare: list[str]) -> list[KeywordHit]:
    hits = []
    for entity_id, name, aliases_json, summary, score, outgoing, incoming in rows:
        aliases = _aliases(aliases_json)
        relations = [tuple(r) for r in json.loads(outgoing) + json.loads(incoming)]
        term = matched(rare, name, aliases, summary)
        hits.append(KeywordHit(entity_id, name, aliases, float(score), term, relations))
    return hits


# Each hit's relations, both ways (two indexed lookups per hit, in the same statement).
_TOUCHING = ", ".join(
    "(SELECT json_group_array(json_array(r.created_at, r.id, r.source_id, r.type, "
    f"r.target_id)) FROM world_relations r WHERE r.world_id = e.world_id AND r.{end} = e.id)"
    for end in ("source_id", "target_id")
)


async def _postgres(
    conn: AsyncConnection, workspace_id: str, world_id: str, terms: list[str], limit: int
) -> KeywordResult:
    probes = ", ".join(
        "(SELECT count(*) FROM (SELECT 1 FROM world_entities WHERE world_id = :world "
        f"AND search @@ plainto_tsquery('english', :t{i}) LIMIT :common) AS p{i})"
        for i in range(len(terms))
    )
    params: dict[str, object] = {f"t{i}": t for i, t in enumerate(terms)}
    columns = ", ".join([_VERSION, probes]) if probes else _VERSION
    version, *counts = (
        await conn.execute(
            sa.text(f"SELECT {columns}"),
            params | {"world": world_id, "ws": workspace_id, "common": COMMON},
        )
    ).one()
    rare = [t for t, n in zip(terms, counts, strict=True) if 0 < n < COMMON]
    common = [t for t, n in zip(terms, counts, strict=True) if n >= COMMON]
    if version is None or not rare:
        return KeywordResult([], common, version)
    # One constant tsquery (terms are plain word characters, quoted): the planner
    # then searches the GIN index, where a joined query made it scan the table.
    result = await conn.execute(
        sa.text(
            "SELECT id, name, aliases, summary, ts_rank_cd(search, q) AS score "
            "FROM world_entities, to_tsquery('english', :query) AS q "
            "WHERE search @@ q AND world_id = :world AND workspace_id = :ws "
            "AND status != 'deprecated' ORDER BY score DESC, id LIMIT :limit"
        ).columns(aliases=Json),
        {
            "query": " | ".join(f"'{t}'" for t in rare),
            "world": world_id,
            "ws": workspace_id,
            "limit": limit,
        },
    )
    hits = []
    for row in result:
        aliases = row.aliases if isinstance(row.aliases, list) else []
        hits.append(
            KeywordHit(
                row.id,
                row.name,
                aliases,
                float(row.score),
                matched(rare, row.name, aliases, row.summary),
            )
        )
    return KeywordResult(hits, common, version)


def _aliases(value: object) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return [str(a) for a in value] if isinstance(value, list) else []


def matched(terms: list[str], name: str, aliases: list[str], summary: str) -> str:
    """The query word that best explains a hit: one in the name first, then aliases."""
    for text in (name, " ".join(aliases), summary):
        folded = text.casefold()
        for term in terms:
            stem = term.casefold()[: max(4, len(term) - 2)]
            if re.search(rf"(?<!\w){re.escape(stem)}", folded):
                return term
    return terms[0]
