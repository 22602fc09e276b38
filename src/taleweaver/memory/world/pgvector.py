"""World vectors searched in PostgreSQL through pgvector: an HNSW index (cosine) per
vector size over `world_vectors_pg`, written in the same transactions as the
float32 blobs of `world_vectors`.

Chosen at start-up when the server has the `vector` extension and migration 0018
made the table (a PostgreSQL without pgvector keeps the in-process search). A
search first asks, with index probes only, whether the world holds vectors of
another model or size (then nothing compares, as in process), then lets the
planner take the HNSW index for big worlds or the world's btree for small ones
(an exact sort). pgvector 0.8's iterative scans keep a filtered HNSW scan going
until `k` rows of this world are found.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.store.world_vectors_schema import INDEXED_DIM, hnsw_index_sql

log = logging.getLogger(__name__)

# Candidates the HNSW scan keeps per step: pgvector's default (40) loses recall on
# a million vectors; 100 costs a millisecond or two more.
EF_SEARCH = 100


@dataclass(frozen=True, slots=True)
class PgVectorInfo:
    version: str  # the extension's, e.g. "0.8.0"

    @property
    def iterative(self) -> bool:
        major, minor, *_ = (int(p) for p in self.version.split(".") if p.isdigit())
        return (major, minor) >= (0, 8)


async def detect(conn: AsyncConnection) -> PgVectorInfo | None:
    """pgvector's version when it is enabled here and migration 0018 made its table."""
    if conn.dialect.name != "postgresql":
        return None
    row = (
        await conn.execute(
            sa.text(
                "SELECT extversion, to_regclass('world_vectors_pg') IS NOT NULL "
                "FROM pg_extension WHERE extname = 'vector'"
            )
        )
    ).first()
    if row is None:
        return None
    if not row[1]:
        log.warning(
            "pgvector %s is enabled but world_vectors_pg is missing (enabled after "
            "migration 0018 ran?): world vectors stay in process",
            row[0],
        )
        return None
    return PgVectorInfo(str(row[0]))


async def forget(conn: AsyncConnection, world_id: str, ids: Sequence[str]) -> None:
    """Delete entities' pgvector rows where the table exists (the projector deletes
    their blobs in the same transaction)."""
    if conn.dialect.name != "postgresql" or not ids:
        return
    exists = (await conn.execute(sa.text("SELECT to_regclass('world_vectors_pg')"))).scalar()
    if exists is not None:
        await conn.execute(
            sa.text("DELETE FROM world_vectors_pg WHERE world_id = :w AND entity_id = ANY(:ids)"),
            {"w": world_id, "ids": list(ids)},
        )


def literal(vector: Sequence[float]) -> str:
    """pgvector's text form of a vector."""
    return "[" + ",".join(f"{float(x):.8g}" for x in vector) + "]"


class PgVectorStore:
    def __init__(self, info: PgVectorInfo) -> None:
        self.info = info
        self._indexed: set[int] = {INDEXED_DIM}

    async def write(
        self,
        conn: AsyncConnection,
        workspace_id: str,
        world_id: str,
        model: str,
        items: Sequence[tuple[str, Sequence[float]]],
        now: datetime,
    ) -> None:
        """Replace the given entities' vectors (in the caller's transaction)."""
        await self.remove(conn, world_id, [entity_id for entity_id, _ in items])
        for dim in {len(v) for _, v in items} - self._indexed:
            if dim > 0:
                await conn.execute(sa.text(hnsw_index_sql(dim)))
                self._indexed.add(dim)
        rows = [
            {
                "e": entity_id,
                "w": world_id,
                "ws": workspace_id,
                "m": model,
                "d": len(vector),
                "v": literal(vector),
                "at": now,
            }
            for entity_id, vector in items
            if len(vector) > 0
        ]
        if rows:
            await conn.execute(
                sa.text(
                    "INSERT INTO world_vectors_pg (entity_id, world_id, workspace_id, model, "
                    "dim, embedding, updated_at) "
                    "VALUES (:e, :w, :ws, :m, :d, CAST(:v AS vector), :at)"
                ),
                rows,
            )

    async def remove(self, conn: AsyncConnection, world_id: str, ids: Sequence[str]) -> None:
        if ids:
            await conn.execute(
                sa.text(
                    "DELETE FROM world_vectors_pg WHERE world_id = :w AND entity_id = ANY(:ids)"
                ),
                {"w": world_id, "ids": list(ids)},
            )

    async def drop_other_models(self, conn: AsyncConnection, world_id: str, model: str) -> None:
        await conn.execute(
            sa.text("DELETE FROM world_vectors_pg WHERE world_id = :w AND model <> :m"),
            {"w": world_id, "m": model},
        )

    async def nearest(
        self,
        conn: AsyncConnection,
        workspace_id: str,
        world_id: str,
        query: Sequence[float],
        k: int,
        model: str,
    ) -> tuple[list[tuple[str, float]], bool, bool]:
        """(found, stale, empty) as `vectors.Nearest` has them."""
        dim = len(query)
        params = {"w": world_id, "m": model, "d": dim}
        probe = "SELECT 1 FROM world_vectors_pg WHERE world_id = :w AND "
        row = (
            await conn.execute(
                sa.text(
                    f"SELECT EXISTS({probe} model < :m) OR EXISTS({probe} model > :m) "
                    f"OR EXISTS({probe} model = :m AND dim < :d) "
                    f"OR EXISTS({probe} model = :m AND dim > :d), "
                    f"EXISTS({probe} model = :m AND dim = :d)"
                ),
                params,
            )
        ).one()
        if row[0]:
            return [], True, False
        if not row[1]:
            return [], False, True
        await conn.execute(sa.text(f"SET LOCAL hnsw.ef_search = {EF_SEARCH}"))
        if self.info.iterative:
            await conn.execute(sa.text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
        # The size is in the SQL (not a parameter): the planner matches the partial
        # index's expression and predicate only against literals.
        distance = f"(embedding::vector({dim})) <=> CAST(:q AS vector({dim}))"
        result = await conn.execute(
            sa.text(
                f"WITH near AS MATERIALIZED (SELECT entity_id, {distance} AS distance "
                "FROM world_vectors_pg WHERE world_id = :w AND workspace_id = :ws "
                f"AND model = :m AND dim = {dim} ORDER BY distance LIMIT :k) "
                "SELECT entity_id, distance FROM near ORDER BY distance"
            ),
            {"w": world_id, "ws": workspace_id, "m": model, "q": literal(query), "k": k},
        )
        return [(str(r[0]), float(r[1])) for r in result], False, False
