"""Sealed (encrypted) session content: flags on messages and sessions; search skips it.

Full-text search cannot index ciphertext and must not index the plaintext of a
sensitive workspace, so sealed messages are left out of the index on both
backends. Sealed titles outgrow VARCHAR(200), which PostgreSQL enforces.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_COLUMNS = "rowid, content, message_id, session_id, workspace_id"
_NEW_ROW = "new.rowid, new.content, new.id, new.session_id, new.workspace_id"


def _add_flag(table: str, dialect: str) -> None:
    # On SQLite a plain-text default keeps this an ALTER TABLE ADD COLUMN: an
    # expression default would make Alembic copy the table, renumbering the rowids
    # that messages_fts is keyed by.
    default = sa.false() if dialect == "postgresql" else "0"
    op.add_column(table, sa.Column("sealed", sa.Boolean, nullable=False, server_default=default))


def _tsvector(source: str) -> None:
    op.execute("DROP INDEX IF EXISTS ix_messages_search")
    op.execute("ALTER TABLE messages DROP COLUMN IF EXISTS search")
    op.execute(
        f"ALTER TABLE messages ADD COLUMN search tsvector GENERATED ALWAYS AS ({source}) STORED"
    )
    op.execute("CREATE INDEX ix_messages_search ON messages USING gin (search)")


def _sqlite_triggers(*, skip_sealed: bool) -> None:
    when, where, watched = (
        ("WHEN NOT new.sealed ", " WHERE NOT new.sealed", "content, sealed")
        if skip_sealed
        else ("", "", "content")
    )
    op.execute("DROP TRIGGER IF EXISTS messages_fts_insert")
    op.execute("DROP TRIGGER IF EXISTS messages_fts_update")
    op.execute(
        f"CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages {when}BEGIN "
        f"INSERT INTO messages_fts({_COLUMNS}) VALUES ({_NEW_ROW}); END"
    )
    op.execute(
        f"CREATE TRIGGER messages_fts_update AFTER UPDATE OF {watched} ON messages BEGIN "
        "DELETE FROM messages_fts WHERE rowid = old.rowid; "
        f"INSERT INTO messages_fts({_COLUMNS}) SELECT {_NEW_ROW}{where}; END"
    )


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    _add_flag("messages", dialect)
    _add_flag("sessions", dialect)
    if dialect == "postgresql":
        op.alter_column("sessions", "title", type_=sa.Text, existing_nullable=False)
        # A generated column's expression cannot be altered in place before PG 17.
        _tsvector("CASE WHEN sealed THEN ''::tsvector ELSE to_tsvector('english', content) END")
    else:
        _sqlite_triggers(skip_sealed=True)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        _tsvector("to_tsvector('english', content)")
        op.alter_column("sessions", "title", type_=sa.String(200), existing_nullable=False)
    else:
        _sqlite_triggers(skip_sealed=False)
    for table in ("sessions", "messages"):
        op.execute(f"ALTER TABLE {table} DROP COLUMN sealed")  # in place, rowids kept
