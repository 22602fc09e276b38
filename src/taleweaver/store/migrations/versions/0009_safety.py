"""Tables for safety (flags, crisis events, content rules).

Revision ID: 0009
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None

# The tables as this revision made them, spelled out: this file never reads the
# live schema module, so a later change there cannot change what it did.
Json = sa.JSON().with_variant(JSONB(), "postgresql")
Stamp = sa.DateTime(timezone=True)
Id = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "safety_flags",
        sa.Column("id", Id, primary_key=True),
        sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("session_id", Id, nullable=True),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("level", sa.String(20), nullable=False),
        sa.Column("categories", Json, nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("ref", sa.String(100), nullable=True),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),  # open | resolved
        sa.Column("detail", Json, nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("resolved_at", Stamp, nullable=True),
        sa.Column("resolved_by", Id, nullable=True),
    )
    op.create_index(
        "ix_safety_flags_session", "safety_flags", ["workspace_id", "session_id", "status"]
    )
    op.create_table(
        "safety_webhooks",
        sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), primary_key=True),
        sa.Column("user_id", Id, primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),  # Text on PostgreSQL from 0012
        sa.Column("created_at", Stamp, nullable=False),
    )
    op.create_table(
        "safety_deliveries",
        sa.Column("id", Id, primary_key=True),
        sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("flag_id", Id, nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),  # pending | delivered | failed
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("response_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
    )
    op.create_index("ix_safety_deliveries_flag", "safety_deliveries", ["workspace_id", "flag_id"])
    op.create_table(
        "safety_content_rules",
        sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), primary_key=True),
        sa.Column("scope", sa.String(120), primary_key=True),
        sa.Column("content_warnings", Json, nullable=False),
        sa.Column("forbidden", Json, nullable=False),
        sa.Column("locale", sa.String(20), nullable=True),
        sa.Column("updated_at", Stamp, nullable=False),
    )
    op.create_table(
        "safety_preferences",
        sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), primary_key=True),
        sa.Column("user_id", Id, primary_key=True),
        sa.Column("avoid_topics", Json, nullable=False),
        sa.Column("trigger_warnings", Json, nullable=False),
        sa.Column("locale", sa.String(20), nullable=True),
        sa.Column("updated_at", Stamp, nullable=False),
    )


def downgrade() -> None:
    # Each table takes its indexes along.
    for table in (
        "safety_preferences",
        "safety_content_rules",
        "safety_deliveries",
        "safety_webhooks",
        "safety_flags",
    ):
        op.drop_table(table)
