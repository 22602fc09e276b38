"""Event store, snapshots, session and message read models, full-text search.

Revision ID: 0001
Revises:
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The tables as this revision made them, spelled out: later revisions alter them
# (0003, 0004), so this file never reads the live schema module.
Json = sa.JSON().with_variant(JSONB(), "postgresql")
Stamp = sa.DateTime(timezone=True)
Id = sa.String(64)
DEFAULT_WORKSPACE_ID = "local"


def upgrade() -> None:
    bind = op.get_bind()
    workspaces = op.create_table(
        "workspaces",
        sa.Column("id", Id, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("stream_id", Id, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.Column("metadata", Json, nullable=False),
        sa.Column("recorded_at", Stamp, nullable=False),
        sa.UniqueConstraint("stream_id", "version", name="uq_events_stream_version"),
    )
    op.create_table(
        "snapshots",
        sa.Column("stream_id", Id, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("state", Json, nullable=False),
        sa.Column("taken_at", Stamp, nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("id", Id, primary_key=True),
        sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),  # Text on PostgreSQL from 0004
        sa.Column("pinned", sa.Boolean, nullable=False),
        sa.Column("archived", sa.Boolean, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("turn_count", sa.Integer, nullable=False),
        sa.Column("forked_from", Id, nullable=True),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
    )
    op.create_index("ix_sessions_workspace_updated", "sessions", ["workspace_id", "updated_at"])
    op.create_table(
        "messages",
        sa.Column("id", Id, primary_key=True),
        sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("session_id", Id, nullable=False),
        sa.Column("turn_id", Id, nullable=False),
        sa.Column("turn_number", sa.Integer, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("choices", Json, nullable=False),
        sa.Column("alternatives", Json, nullable=False),
        sa.Column("active", sa.Integer, nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
        sa.UniqueConstraint("session_id", "seq", name="uq_messages_session_seq"),
    )
    op.create_table(
        "checkpoints",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
    )
    op.create_index("ix_messages_session_turn", "messages", ["session_id", "turn_number"])
    if bind.dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE messages ADD COLUMN search tsvector "
            "GENERATED ALWAYS AS (to_tsvector('english', content)) STORED"
        )
        op.execute("CREATE INDEX ix_messages_search ON messages USING gin (search)")
    else:
        op.execute(
            "CREATE VIRTUAL TABLE messages_fts USING fts5("
            "content, message_id UNINDEXED, session_id UNINDEXED, workspace_id UNINDEXED, "
            "tokenize = 'porter unicode61 remove_diacritics 2')"
        )
        # Triggers keep the index in step with messages inside the same statement,
        # keyed by the message row's rowid.
        columns = "rowid, content, message_id, session_id, workspace_id"
        new_row = "new.rowid, new.content, new.id, new.session_id, new.workspace_id"
        op.execute(
            "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
            f"INSERT INTO messages_fts({columns}) VALUES ({new_row}); END"
        )
        op.execute(
            "CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN "
            "DELETE FROM messages_fts WHERE rowid = old.rowid; "
            f"INSERT INTO messages_fts({columns}) VALUES ({new_row}); END"
        )
        op.execute(
            "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
            "DELETE FROM messages_fts WHERE rowid = old.rowid; END"
        )
    op.bulk_insert(
        workspaces,
        [{"id": DEFAULT_WORKSPACE_ID, "name": "Local", "created_at": datetime.now(UTC)}],
    )


def downgrade() -> None:
    # Each table takes its indexes, and messages its triggers and search column, along.
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TABLE messages_fts")
    for table in ("checkpoints", "messages", "sessions", "snapshots", "events", "workspaces"):
        op.drop_table(table)
