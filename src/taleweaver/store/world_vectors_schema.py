"""World vectors in pgvector (migration 0018): one row per entity vector, beside the
portable float32 blobs of `world_vectors`, on PostgreSQL servers that have the
`vector` extension, with an HNSW index (cosine) per dimension.

The table is not on the shared `metadata`: whether it exists depends on the server
(a PostgreSQL without pgvector, and SQLite, never have it), so it stands on a
metadata of its own, which the migration spells out and `memory.world.pgvector`
reads. `world_vectors` stays the source of truth (content hashes, models, exports);
this table is its index, written in the same transactions.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import UserDefinedType

from taleweaver.store.schema import Id, Stamp

pgvector_metadata = sa.MetaData()

# The dimension the migration builds an HNSW index for (the bundled sentence
# encoder's); vectors of other sizes get a partial index of their own on first write.
INDEXED_DIM = 384


class Vector(UserDefinedType[str]):
    """pgvector's `vector`, without a fixed size (each index casts to its own);
    written as its text form, `[1,2,3]`."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "vector"


def hnsw_index_name(dim: int) -> str:
    return f"ix_world_vectors_pg_hnsw_{dim}"


def hnsw_index_sql(dim: int) -> str:
    """The partial HNSW index (cosine) over the vectors of one size."""
    return (
        f"CREATE INDEX IF NOT EXISTS {hnsw_index_name(dim)} ON world_vectors_pg "
        f"USING hnsw ((embedding::vector({dim})) vector_cosine_ops) WHERE dim = {dim}"
    )


world_vectors_pg = sa.Table(
    "world_vectors_pg",
    pgvector_metadata,
    sa.Column("entity_id", Id, primary_key=True),
    sa.Column("world_id", Id, primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("embedding", Vector(), nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    # What a search asks before it trusts the index: does the world hold vectors of
    # another model or size (index probes, never a scan of the world).
    sa.Index("ix_world_vectors_pg_world", "world_id", "model", "dim"),
)
