"""Entity vectors: embedded through the model router's `embed` task, kept in
`world_vectors` on both backends as float32 blobs, and searched by cosine distance
by one of three backends, chosen when the index first meets its database:

- pgvector: on a PostgreSQL with the `vector` extension (and migration 0018's
  table), each vector is also written to `world_vectors_pg` in the same
  transaction and searched there through an HNSW index (`pgvector.py`);
- ann: elsewhere, worlds of `ANN_MIN` vectors or more get an in-process HNSW index
  (usearch, `ann.py`), built in the background and kept in step with writes;
- exact: smaller worlds, worlds whose index is not ready, and processes without
  usearch: an exact search over an in-process matrix per world, as below.

The matrix is loaded on a world's first vector search and reused until the world's
`vectors_version` moves (every vector write bumps it, in the same transaction), so
a search costs one small read plus a matrix product: a few milliseconds for 100,000
entities of 64 dimensions. Matrices are kept for the most recently searched worlds
up to `TALEWEAVER_WORLD_VECTOR_CACHE_MB` (default 512).

Every vector records the model that made it. A search only ever compares vectors of
the query's own model: while a world still holds vectors of another (the embedding
model changed and the rebuild has not finished), `nearest` says so and finds nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.config import WorldSettings
from taleweaver.domain.events import JSON
from taleweaver.memory.world import ann as ann_module
from taleweaver.memory.world.ann import ANN_MIN, AnnIndexes, Stored
from taleweaver.memory.world.pgvector import PgVectorStore, detect
from taleweaver.store.database import Database
from taleweaver.store.world_schema import world_vectors, worlds

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

MAX_DIM = 8192

Backend = Literal["pgvector", "ann", "exact"]


class TextEmbedder(Protocol):
    name: str

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def entity_text(entity: JSON) -> str:
    """What an entity's vector stands for."""
    parts = [entity["name"], entity["type"], " ".join(entity.get("aliases") or [])]
    parts += [entity.get("summary") or "", " ".join(entity.get("tags") or [])]
    return "\n".join(p for p in parts if p)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def to_blob(vector: Sequence[float]) -> bytes:
    import numpy as np  # on first use: a process that never searches skips its import

    return np.asarray(vector, dtype="<f4").tobytes()


@dataclass(slots=True)
class _Matrix:
    version: int
    model: str
    ids: list[str]
    unit: np.ndarray  # one row per id, normalised to length 1
    foreign: bool  # the world also holds vectors of another model

    @property
    def nbytes(self) -> int:
        return int(self.unit.nbytes)


def _cache_bytes() -> int:
    return WorldSettings.read().world_vector_cache_mb << 20


@dataclass(slots=True)
class Nearest:
    """The k nearest of one model's vectors; `stale` when the world also holds
    another model's (then `found` is empty: two models' distances do not compare)."""

    found: list[tuple[str, float]]
    stale: bool = False
    empty: bool = False  # the world has no vectors of this model at all
    indexing: bool = False  # a big world's index is being built: no vectors meanwhile
    method: str = "exact"  # which search answered: exact, ann or pgvector


def _ann_folder(db: Database) -> Path | None:
    """Where a SQLite file's ANN indexes are saved: beside it; None in memory and on
    PostgreSQL (rebuilt at each start there)."""
    url = make_url(db.url)
    name = url.database or ""
    if url.get_backend_name() != "sqlite" or not name or "memory" in name:
        return None
    return Path(name).with_name(Path(name).name + ".world-ann")


class VectorIndex:
    def __init__(
        self,
        db: Database,
        *,
        ann_min: int = ANN_MIN,
        ann: bool = True,
        pgvector: bool = True,
    ) -> None:
        """`ann`, `pgvector`: whether those backends may be used where they can."""
        self.db = db
        self.limit_bytes = _cache_bytes()
        self._matrices: OrderedDict[str, _Matrix] = OrderedDict()
        self._allow_pg = pgvector
        self._pg: PgVectorStore | None = None
        self._detected = False
        self.ann: AnnIndexes | None = None
        if ann and ann_module.available():
            self.ann = AnnIndexes(self._stored, self._version, _ann_folder(db), min_size=ann_min)
        self._sizes: dict[str, int] = {}  # world -> vectors at the last count or load

    @property
    def backend(self) -> Backend:
        if self._pg is not None:
            return "pgvector"
        return "ann" if self.ann is not None else "exact"

    async def detect(self) -> Backend:
        """Choose the backend for this database (once), and say which in the log."""
        if not self._detected:
            if self._allow_pg and self.db.dialect == "postgresql":
                async with self.db.read() as conn:
                    info = await detect(conn)
                if info is not None:
                    self._pg = PgVectorStore(info)
                    self.ann = None
            self._detected = True
            if self._pg is not None:
                detail = f"pgvector {self._pg.info.version}, HNSW in the database"
            elif self.ann is not None:
                detail = f"usearch HNSW in process from {self.ann.min_size:,} vectors, exact below"
            else:
                detail = "exact in process (usearch is not installed)"
            log.info("world vectors: %s", detail)
        return self.backend

    def describe(self) -> dict[str, object]:
        """The backend, for readiness reports."""
        state: dict[str, object] = {"status": "ok", "backend": self.backend}
        if self._pg is not None:
            state["pgvector"] = self._pg.info.version
        elif self.ann is not None:
            state |= self.ann.describe()
        return state

    async def warm(self) -> None:
        """At start: choose the backend; restore or build the ANN index of every
        world big enough to have one, in the background."""
        await self.detect()
        if self.ann is None:
            return
        async with self.db.read() as conn:
            result = await conn.execute(
                sa.select(world_vectors.c.workspace_id, world_vectors.c.world_id, sa.func.count())
                .group_by(world_vectors.c.workspace_id, world_vectors.c.world_id)
                .having(sa.func.count() >= self.ann.min_size)
            )
            big = [(r[0], r[1], int(r[2])) for r in result]
            versions = {
                r.id: r.vectors_version
                for r in await conn.execute(
                    sa.select(worlds.c.id, worlds.c.vectors_version).where(
                        worlds.c.id.in_([w for _, w, _ in big])
                    )
                )
            }
        for workspace_id, world_id, count in big:
            self._sizes[world_id] = count
            if world_id in versions:
                self.ann.start(workspace_id, world_id, versions[world_id])

    async def aclose(self) -> None:
        """Stop builds under way and save the indexes that moved since their last save."""
        if self.ann is not None:
            await self.ann.close()

    async def stored_hashes(self, world_id: str, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """{entity_id: (content hash, model)} of the stored vectors among `ids`."""
        async with self.db.read() as conn:
            result = await conn.execute(
                sa.select(
                    world_vectors.c.entity_id, world_vectors.c.content_hash, world_vectors.c.model
                ).where(
                    world_vectors.c.world_id == world_id, world_vectors.c.entity_id.in_(list(ids))
                )
            )
            return {r.entity_id: (r.content_hash, r.model) for r in result}

    async def upsert(
        self,
        workspace_id: str,
        world_id: str,
        model: str,
        items: Sequence[tuple[str, list[float], str]],
    ) -> None:
        """Store (entity_id, vector, content hash) triples, replacing older vectors."""
        if not items:
            return
        now = datetime.now(UTC)
        ids = [entity_id for entity_id, _, _ in items]
        await self.detect()
        async with self.db.write() as conn:
            await conn.execute(
                world_vectors.delete().where(
                    world_vectors.c.world_id == world_id, world_vectors.c.entity_id.in_(ids)
                )
            )
            await conn.execute(
                world_vectors.insert(),
                [
                    {
                        "entity_id": entity_id,
                        "workspace_id": workspace_id,
                        "world_id": world_id,
                        "model": model,
                        "dim": len(vector),
                        "content_hash": content_hash,
                        "vector": to_blob(vector),
                        "updated_at": now,
                    }
                    for entity_id, vector, content_hash in items
                ],
            )
            if self._pg is not None:
                await self._pg.write(
                    conn, workspace_id, world_id, model, [(i, v) for i, v, _ in items], now
                )
            version = await bump(conn, world_id)
        if self.ann is not None and version is not None:
            self.ann.upserted(world_id, version, model, [(i, v) for i, v, _ in items])

    async def remove(self, world_id: str, ids: Sequence[str]) -> None:
        await self.detect()
        async with self.db.write() as conn:
            await conn.execute(
                world_vectors.delete().where(
                    world_vectors.c.world_id == world_id, world_vectors.c.entity_id.in_(ids)
                )
            )
            if self._pg is not None:
                await self._pg.remove(conn, world_id, ids)
            version = await bump(conn, world_id)
        if self.ann is not None and version is not None:
            self.ann.removed(world_id, version, ids)

    async def drop_other_models(self, world_id: str, model: str) -> int:
        """Delete the world's vectors not made by `model` (what a rebuild left over:
        those of entities that no longer have text to embed)."""
        await self.detect()
        async with self.db.write() as conn:
            result = await conn.execute(
                world_vectors.delete().where(
                    world_vectors.c.world_id == world_id, world_vectors.c.model != model
                )
            )
            if not result.rowcount:
                return 0
            if self._pg is not None:
                await self._pg.drop_other_models(conn, world_id, model)
            version = await bump(conn, world_id)
        if self.ann is not None and version is not None:
            self.ann.dropped(world_id, version, model)
        return int(result.rowcount or 0)

    async def nearest(
        self,
        conn: AsyncConnection,
        workspace_id: str,
        world_id: str,
        vector: Sequence[float],
        k: int,
        version: int,
        model: str,
    ) -> Nearest:
        """(entity_id, cosine distance) of the k nearest vectors of `model`, nearest
        first.

        `version` is the world's `vectors_version` as the caller read it in `conn`;
        deleted and deprecated entities have no vectors, and callers load the
        entities they keep anyway, so a row that vanished since is dropped there."""
        if not vector or len(vector) > MAX_DIM or k <= 0:
            return Nearest([])
        import numpy as np

        query = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(query))
        if norm == 0:
            return Nearest([])
        await self.detect()
        if self._pg is not None:
            found, stale, empty = await self._pg.nearest(
                conn, workspace_id, world_id, vector, k, model
            )
            return Nearest(found, stale=stale, empty=empty, method="pgvector")
        if self.ann is not None:
            ann = self.ann.ready(world_id, version, model)
            if ann is not None:
                if ann.dim != len(vector):
                    return Nearest([], stale=True)
                return Nearest(ann.search(query / norm, k), method="ann")
            if not await self._exact_now(conn, workspace_id, world_id, version, len(vector)):
                return Nearest([], indexing=True)
        matrix = await self._matrix(conn, workspace_id, world_id, version, model)
        if matrix.foreign:
            return Nearest([], stale=True)
        if not matrix.ids:
            return Nearest([], empty=True)
        if matrix.unit.shape[1] != len(vector):
            return Nearest([], stale=True)  # same name, other size: not one model
        # einsum, not `@`: a matrix-vector product through OpenBLAS spreads over all
        # cores, and on a busy host waiting for them cost 10x the product itself.
        scores = np.einsum("ij,j->i", matrix.unit, query / norm)
        take = min(len(matrix.ids), k)
        best = np.argpartition(scores, len(scores) - take)[-take:]
        best = best[np.argsort(-scores[best], kind="stable")]
        return Nearest([(matrix.ids[i], 1.0 - float(scores[i])) for i in best])

    async def _exact_now(
        self, conn: AsyncConnection, workspace_id: str, world_id: str, version: int, dim: int
    ) -> bool:
        """Whether to search this world exactly now (its ANN index is not ready):
        starts the index's build for a big world; while one runs, exact only where
        the matrix is cached or fits the cache budget."""
        assert self.ann is not None
        size = self._sizes.get(world_id)
        if size is None or size >= self.ann.min_size // 2:
            size = await _count(conn, world_id)
            self._sizes[world_id] = size
        if size >= self.ann.min_size:
            self.ann.start(workspace_id, world_id, version)
        if not self.ann.building(world_id):
            return True
        cached = self._matrices.get(world_id)
        if cached is not None and cached.version == version:
            return True
        return size * dim * 4 <= self.limit_bytes

    async def _matrix(
        self, conn: AsyncConnection, workspace_id: str, world_id: str, version: int, model: str
    ) -> _Matrix:
        matrix = self._matrices.get(world_id)
        if matrix is None or matrix.version != version or matrix.model != model:
            matrix = await self._load(conn, workspace_id, world_id, version, model)
            self._matrices[world_id] = matrix
            self._sizes[world_id] = len(matrix.ids)
        self._matrices.move_to_end(world_id)
        # Forget the least recently searched worlds beyond the budget (never this one).
        while len(self._matrices) > 1 and (
            sum(m.nbytes for m in self._matrices.values()) > self.limit_bytes
        ):
            self._matrices.popitem(last=False)
        if matrix.nbytes > self.limit_bytes:
            self._matrices.pop(world_id, None)
        return matrix

    async def _load(
        self, conn: AsyncConnection, workspace_id: str, world_id: str, version: int, model: str
    ) -> _Matrix:
        stored = await _read(conn, workspace_id, world_id, version, model)
        import numpy as np

        data = stored.data
        norms = np.linalg.norm(data, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return _Matrix(version, model, stored.ids, data / norms, stored.foreign)

    async def _stored(self, workspace_id: str, world_id: str) -> Stored | None:
        """The world's vectors for an ANN build: of its one model (`foreign` when it
        holds several); None when the world is gone."""
        async with self.db.read() as conn:
            version = await _version(conn, world_id)
            if version is None:
                return None
            model = (
                await conn.execute(
                    sa.select(world_vectors.c.model)
                    .where(world_vectors.c.world_id == world_id)
                    .limit(1)
                )
            ).scalar()
            if model is None:
                return Stored(version, "", [], _empty(), False)
            return await _read(conn, workspace_id, world_id, version, str(model))

    async def _version(self, world_id: str) -> int | None:
        async with self.db.read() as conn:
            return await _version(conn, world_id)


def _empty() -> np.ndarray:
    import numpy as np

    return np.zeros((0, 0), np.float32)


async def _count(conn: AsyncConnection, world_id: str) -> int:
    result = await conn.execute(
        sa.select(sa.func.count())
        .select_from(world_vectors)
        .where(world_vectors.c.world_id == world_id)
    )
    return int(result.scalar() or 0)


async def _version(conn: AsyncConnection, world_id: str) -> int | None:
    result = await conn.execute(sa.select(worlds.c.vectors_version).where(worlds.c.id == world_id))
    value = result.scalar()
    return None if value is None else int(value)


async def _read(
    conn: AsyncConnection, workspace_id: str, world_id: str, version: int, model: str
) -> Stored:
    """The world's stored vectors of `model`, as float32 rows."""
    result = await conn.execute(
        sa.select(
            world_vectors.c.entity_id,
            world_vectors.c.model,
            world_vectors.c.dim,
            world_vectors.c.vector,
        ).where(
            world_vectors.c.world_id == world_id,
            world_vectors.c.workspace_id == workspace_id,
        )
    )
    ids: list[str] = []
    blobs: list[bytes] = []
    dims: set[int] = set()
    foreign = False
    for row in result:
        if row.model != model:
            foreign = True
            continue
        ids.append(row.entity_id)
        dims.add(row.dim)
        blobs.append(bytes(row.vector))
    import numpy as np

    if len(dims) > 1:  # one name, two sizes: not one model's vectors; rebuild them
        return Stored(version, model, [], np.zeros((0, 0), np.float32), True)
    dim = dims.pop() if dims else 0
    data = np.frombuffer(b"".join(blobs), dtype="<f4").astype(np.float32)
    return Stored(version, model, ids, data.reshape(len(ids), dim), foreign)


async def bump(conn: AsyncConnection, world_id: str) -> int | None:
    """Mark the world's vectors changed, so cached matrices are reloaded; the new
    `vectors_version` (None when the world is gone)."""
    result = await conn.execute(
        worlds.update()
        .where(worlds.c.id == world_id)
        .values(vectors_version=worlds.c.vectors_version + 1)
        .returning(worlds.c.vectors_version)
    )
    value = result.scalar()
    return None if value is None else int(value)
