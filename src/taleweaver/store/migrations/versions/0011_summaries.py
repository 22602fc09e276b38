"""Tables for rolling session summaries (layered: summaries of summaries).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# The tables as this revision made them, spelled out: this file never reads the
# live schema module, so a later change there cannot change what it did.
Json = sa.JSON().with_variant(JSONB(), "postgresql")
Stamp = sa.DateTime(timezone=True)
Id = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "summaries",
        sa.Column("id", Id, primary_key=True),
        sa.Column(
            "workspace_id", Id, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("session_id", Id, nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("first_turn", sa.Integer, nullable=False),
        sa.Column("last_turn", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("sealed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("method", sa.String(20), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("prompt_version", sa.Integer, nullable=False),
        sa.Column("sources", Json, nullable=False),
        sa.Column("source_version", sa.Integer, nullable=False),
        sa.Column("stale", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("fallback_reason", sa.String(500), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("retry_at", Stamp, nullable=True),
        sa.Column("created_at", Stamp, nullable=False),
        sa.UniqueConstraint("session_id", "level", "first_turn", name="uq_summaries_span"),
    )
    op.create_index("ix_summaries_workspace_session", "summaries", ["workspace_id", "session_id"])
    op.create_table(
        "summary_progress",
        sa.Column("session_id", Id, primary_key=True),
        sa.Column(
            "workspace_id", Id, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("checked_version", sa.Integer, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", Stamp, nullable=False),
    )


def downgrade() -> None:
    # Each table takes its indexes along.
    for table in (
        "summary_progress",
        "summaries",
    ):
        op.drop_table(table)
