"""World vectors in pgvector (issue #17): on a PostgreSQL whose server offers the
`vector` extension, the extension, a `world_vectors_pg` table and an HNSW index
(cosine) for 384-dimensional vectors, filled from the stored float32 blobs.

Guarded: on SQLite, and on a PostgreSQL without pgvector (or where this role may not
create the extension), it does nothing, and world memory keeps searching in process.

Revision ID: 0018
Revises: 0017
"""

import logging

import sqlalchemy as sa
from alembic import op
from sqlalchemy.types import UserDefinedType

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

_STAMP = sa.DateTime(timezone=True)
_ID = sa.String(64)
_DIM = 384
_CHUNK = 2000


class _Vector(UserDefinedType[str]):
    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "vector"


def _pgvector(bind: sa.Connection) -> bool:
    """Whether the extension is (or could be made) available here."""
    if bind.dialect.name != "postgresql":
        return False
    offered = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    ).first()
    if offered is None:
        log.info("pgvector is not installed on this server: world vectors stay in process")
        return False
    try:
        with bind.begin_nested():  # a refusal must not abort the whole upgrade
            op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except sa.exc.DBAPIError as exc:
        log.warning("pgvector not enabled (%s): world vectors stay in process", exc.orig)
        return False
    return True


def upgrade() -> None:
    bind = op.get_bind()
    if not _pgvector(bind):
        return
    # A frozen copy of the table as this revision created it.
    op.create_table(
        "world_vectors_pg",
        sa.Column("entity_id", _ID, primary_key=True),
        sa.Column("world_id", _ID, primary_key=True),
        sa.Column("workspace_id", _ID, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("embedding", _Vector(), nullable=False),
        sa.Column("updated_at", _STAMP, nullable=False),
    )
    op.create_index("ix_world_vectors_pg_world", "world_vectors_pg", ["world_id", "model", "dim"])
    _copy_blobs(bind)
    # After the copy: building the graph once is cheaper than growing it row by row.
    op.execute(
        f"CREATE INDEX ix_world_vectors_pg_hnsw_{_DIM} ON world_vectors_pg "
        f"USING hnsw ((embedding::vector({_DIM})) vector_cosine_ops) WHERE dim = {_DIM}"
    )


def _copy_blobs(bind: sa.Connection) -> None:
    """The vectors already stored as float32 blobs, copied in chunks."""
    import struct

    last = ("", "")
    while True:
        rows = bind.execute(
            sa.text(
                "SELECT world_id, entity_id, workspace_id, model, dim, vector, updated_at "
                "FROM world_vectors WHERE (world_id, entity_id) > (:w, :e) "
                "ORDER BY world_id, entity_id LIMIT :n"
            ),
            {"w": last[0], "e": last[1], "n": _CHUNK},
        ).all()
        if not rows:
            return
        values = [
            {
                "e": r.entity_id,
                "w": r.world_id,
                "ws": r.workspace_id,
                "m": r.model,
                "d": r.dim,
                "v": "[" + ",".join(map(repr, struct.unpack(f"<{r.dim}f", r.vector))) + "]",
                "at": r.updated_at,
            }
            for r in rows
            if r.dim > 0
        ]
        if values:
            bind.execute(
                sa.text(
                    "INSERT INTO world_vectors_pg (entity_id, world_id, workspace_id, model, dim, "
                    "embedding, updated_at) VALUES (:e, :w, :ws, :m, :d, CAST(:v AS vector), :at)"
                ),
                values,
            )
        last = (rows[-1].world_id, rows[-1].entity_id)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("DROP TABLE IF EXISTS world_vectors_pg")
