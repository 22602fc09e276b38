"""Tables for lorebooks.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# The tables as this revision made them, spelled out: this file never reads the
# live schema module, so a later change there cannot change what it did.
Json = sa.JSON().with_variant(JSONB(), "postgresql")
Stamp = sa.DateTime(timezone=True)
Id = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "lorebooks",
        sa.Column("id", Id, primary_key=True),
        sa.Column(
            "workspace_id", Id, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("world_id", Id, nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("format", sa.String(20), nullable=False),
        sa.Column("settings", Json, nullable=False),
        sa.Column("envelope", Json, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("entry_count", sa.Integer, nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
    )
    op.create_index("ix_lorebooks_workspace_world", "lorebooks", ["workspace_id", "world_id"])
    op.create_table(
        "lorebook_entries",
        sa.Column(
            "lorebook_id", Id, sa.ForeignKey("lorebooks.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("uid", sa.String(200), primary_key=True),
        sa.Column("workspace_id", Id, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("data", Json, nullable=False),  # the normalised fields
        sa.Column("raw", Json, nullable=True),  # the entry as imported; None if made here
    )
    op.create_index("ix_lorebook_entries_order", "lorebook_entries", ["lorebook_id", "seq"])
    op.create_table(
        "lorebook_timed",
        sa.Column("session_id", Id, primary_key=True),
        sa.Column("workspace_id", Id, nullable=False),
        sa.Column("state", Json, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
    )


def downgrade() -> None:
    # Each table takes its indexes along.
    for table in (
        "lorebook_timed",
        "lorebook_entries",
        "lorebooks",
    ):
        op.drop_table(table)
