"""Event store, snapshots, session and message read models, full-text search.

Revision ID: 0001
Revises:
"""

from datetime import UTC, datetime

from alembic import op

from taleweaver.store.schema import (
    DEFAULT_WORKSPACE_ID,
    checkpoints,
    events,
    messages,
    metadata,
    sessions,
    snapshots,
    workspaces,
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = [workspaces, events, snapshots, sessions, messages, checkpoints]


def upgrade() -> None:
    bind = op.get_bind()
    metadata.create_all(bind, tables=TABLES)
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
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        op.execute("DROP TABLE messages_fts")
    metadata.drop_all(bind, tables=list(reversed(TABLES)))
