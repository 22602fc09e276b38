"""Tables for world memory: worlds, entities, facts, relations, entries, vectors,
the review queue and continuity findings; keyword indexes over entities.

SQLite indexes entities with an FTS5 table kept in step by triggers (keyed by the
entity row's rowid); PostgreSQL with a generated tsvector column and a GIN index.
Vectors live in world_vectors on both, as float32 blobs (any dimension: the
embedding model's, unknown here); recall searches them in process.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The tables as this revision made them, spelled out: this file never reads the
# live schema module, so a later change there cannot change what it did.
Json = sa.JSON().with_variant(JSONB(), "postgresql")
Stamp = sa.DateTime(timezone=True)
Id = sa.String(64)

_FTS_COLUMNS = "rowid, search_text, entity_id, world_id, workspace_id"
_FTS_NEW = "new.rowid, new.search_text, new.id, new.world_id, new.workspace_id"


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "worlds",
        sa.Column("id", Id, primary_key=True),
        sa.Column("workspace_id", Id, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("settings", Json, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("vectors_version", sa.Integer, nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
    )
    op.create_index("ix_worlds_workspace", "worlds", ["workspace_id", "name"])
    op.create_table(
        "world_entities",
        sa.Column("id", Id, primary_key=True),
        sa.Column("workspace_id", Id, nullable=False),
        sa.Column("world_id", Id, primary_key=True),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("aliases", Json, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("tags", Json, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("source_refs", Json, nullable=False),
        sa.Column("search_text", sa.Text, nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
    )
    op.create_index("ix_world_entities_world_status", "world_entities", ["world_id", "status"])
    op.create_index("ix_world_entities_world_name", "world_entities", ["world_id", "name"])
    op.create_table(
        "world_facts",
        sa.Column("id", Id, primary_key=True),
        sa.Column("workspace_id", Id, nullable=False),
        sa.Column("world_id", Id, primary_key=True),
        sa.Column("entity_id", Id, nullable=False),
        sa.Column("attribute", sa.String(100), nullable=False),
        sa.Column("value", Json, nullable=False),
        sa.Column("valid_from", Json, nullable=True),
        sa.Column("valid_to", Json, nullable=True),
        sa.Column("source_refs", Json, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
    )
    op.create_index("ix_world_facts_entity", "world_facts", ["world_id", "entity_id"])
    op.create_table(
        "world_relations",
        sa.Column("id", Id, primary_key=True),
        sa.Column("workspace_id", Id, nullable=False),
        sa.Column("world_id", Id, primary_key=True),
        sa.Column("source_id", Id, nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("target_id", Id, nullable=False),
        sa.Column("source_refs", Json, nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
    )
    op.create_index("ix_world_relations_source", "world_relations", ["world_id", "source_id"])
    op.create_index("ix_world_relations_target", "world_relations", ["world_id", "target_id"])
    op.create_table(
        "world_entries",
        sa.Column("id", Id, primary_key=True),
        sa.Column("workspace_id", Id, nullable=False),
        sa.Column("world_id", Id, primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("tags", Json, nullable=False),
        sa.Column("links", Json, nullable=False),
        sa.Column("entity_ids", Json, nullable=False),
        sa.Column("source_refs", Json, nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
    )
    op.create_index("ix_world_entries_world", "world_entries", ["world_id", "updated_at"])
    op.create_table(
        "world_vectors",
        sa.Column("entity_id", Id, primary_key=True),
        sa.Column("workspace_id", Id, nullable=False),
        sa.Column("world_id", Id, primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
    )
    op.create_index("ix_world_vectors_world", "world_vectors", ["world_id"])
    op.create_table(
        "world_artifacts",
        sa.Column("id", Id, primary_key=True),
        sa.Column("workspace_id", Id, nullable=False),
        sa.Column("world_id", Id, nullable=False),
        sa.Column("session_id", Id, nullable=False),
        sa.Column("turn_id", Id, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.Column("confidence", Json, nullable=False),
        sa.Column("extraction_version", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("decision", Json, nullable=True),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("reviewed_at", Stamp, nullable=True),
        sa.Column("reviewed_by", sa.String(100), nullable=True),
    )
    op.create_index(
        "ix_world_artifacts_queue", "world_artifacts", ["world_id", "status", "position"]
    )
    op.create_table(
        "world_findings",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("world_id", Id, primary_key=True),
        sa.Column("workspace_id", Id, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("entity_ids", Json, nullable=False),
        sa.Column("citations", Json, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("resolution", Json, nullable=True),
        sa.Column("found_at", Stamp, nullable=False),
        sa.Column("resolved_at", Stamp, nullable=True),
    )
    if bind.dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE world_entities ADD COLUMN search tsvector "
            "GENERATED ALWAYS AS (to_tsvector('english', search_text)) STORED"
        )
        op.execute("CREATE INDEX ix_world_entities_search ON world_entities USING gin (search)")
        return
    # world_id is indexed so that a query names its world inside MATCH: the index,
    # not a row lookup per match, keeps one world's search out of another's words.
    op.execute(
        "CREATE VIRTUAL TABLE world_fts USING fts5("
        "search_text, entity_id UNINDEXED, world_id, workspace_id UNINDEXED, "
        "tokenize = 'porter unicode61 remove_diacritics 2')"
    )
    # Deprecated entities are never recalled: they stay out of the index.
    op.execute(
        "CREATE TRIGGER world_fts_insert AFTER INSERT ON world_entities "
        "WHEN new.status != 'deprecated' BEGIN "
        f"INSERT INTO world_fts({_FTS_COLUMNS}) VALUES ({_FTS_NEW}); END"
    )
    op.execute(
        "CREATE TRIGGER world_fts_update AFTER UPDATE OF search_text, status ON world_entities "
        "BEGIN DELETE FROM world_fts WHERE rowid = old.rowid; "
        f"INSERT INTO world_fts({_FTS_COLUMNS}) SELECT {_FTS_NEW} "
        "WHERE new.status != 'deprecated'; END"
    )
    op.execute(
        "CREATE TRIGGER world_fts_delete AFTER DELETE ON world_entities BEGIN "
        "DELETE FROM world_fts WHERE rowid = old.rowid; END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for trigger in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS world_fts_{trigger}")
        op.execute("DROP TABLE IF EXISTS world_fts")
    # Each table takes its indexes (and world_entities its search column) along.
    for table in (
        "world_findings",
        "world_artifacts",
        "world_vectors",
        "world_entries",
        "world_relations",
        "world_facts",
        "world_entities",
        "worlds",
    ):
        op.drop_table(table)
