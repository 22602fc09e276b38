"""Sealed terminal and file content (issue #20): a `sealed` flag on the files' text,
the proposals' diffs and the terminals' output chunks, as messages have one.

In a sensitive workspace these values are written sealed, and the flag in the row
says so (never inferred from the workspace, which may change its mind later).

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_TABLES = ("workspace_files", "file_proposals", "terminal_output")


def upgrade() -> None:
    # A plain-text default on SQLite keeps this an ALTER TABLE ADD COLUMN (see 0004).
    default = sa.false() if op.get_bind().dialect.name == "postgresql" else "0"
    for table in _TABLES:
        op.add_column(
            table, sa.Column("sealed", sa.Boolean, nullable=False, server_default=default)
        )


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("sealed")
