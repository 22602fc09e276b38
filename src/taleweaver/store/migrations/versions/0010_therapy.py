"""Tables for therapy (profiles, goals, assessments, progress).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The tables as this revision made them, spelled out: this file never reads the
# live schema module, so a later change there cannot change what it did.
Json = sa.JSON().with_variant(JSONB(), "postgresql")
Stamp = sa.DateTime(timezone=True)
Id = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "therapy_profiles",
        sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), primary_key=True),
        sa.Column("user_id", Id, primary_key=True),
        sa.Column("approaches", Json, nullable=False),
        sa.Column("intensity", sa.Integer, nullable=False),
        sa.Column("avoid_topics", Json, nullable=False),
        sa.Column("crisis_contacts", Json, nullable=False),
        sa.Column("consent", Json, nullable=False),
        sa.Column("retention_days", sa.Integer, nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
    )
    op.create_table(
        "therapy_goals",
        sa.Column("id", Id, primary_key=True),
        sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("approach", sa.String(40), nullable=True),
        sa.Column("progress", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
    )
    op.create_index("ix_therapy_goals_player", "therapy_goals", ["workspace_id", "user_id"])
    op.create_table(
        "therapy_goal_progress",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("goal_id", Id, nullable=False),
        sa.Column("progress", sa.Integer, nullable=False),
        sa.Column("source", sa.String(40), nullable=False),  # "manual", "choice", ...
        sa.Column("at", Stamp, nullable=False),
    )
    op.create_index(
        "ix_therapy_goal_progress_player",
        "therapy_goal_progress",
        ["workspace_id", "user_id", "at"],
    )
    op.create_table(
        "therapy_markers",
        sa.Column("id", Id, primary_key=True),
        sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("goal_id", Id, nullable=True),
        sa.Column("session_id", Id, nullable=True),
        sa.Column("turn_number", sa.Integer, nullable=True),
        sa.Column("source", sa.String(40), nullable=False),  # "manual", "choice", "emotion"
        sa.Column("at", Stamp, nullable=False),
    )
    op.create_index(
        "ix_therapy_markers_player", "therapy_markers", ["workspace_id", "user_id", "at"]
    )
    op.create_table(
        "therapy_assessments",
        sa.Column("id", Id, primary_key=True),
        sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("instrument", sa.String(20), nullable=False),
        sa.Column("answers", Json, nullable=False),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("severity", sa.String(40), nullable=False),
        sa.Column("crisis_level", sa.String(20), nullable=True),
        sa.Column("taken_at", Stamp, nullable=False),
    )
    op.create_index(
        "ix_therapy_assessments_player",
        "therapy_assessments",
        ["workspace_id", "user_id", "taken_at"],
    )
    op.create_table(
        "therapy_emotions",
        sa.Column("session_id", Id, primary_key=True),
        sa.Column("turn_number", sa.Integer, primary_key=True),
        sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("valence", sa.Float, nullable=False),
        sa.Column("arousal", sa.Float, nullable=False),
        sa.Column("emotions", Json, nullable=False),
        sa.Column("at", Stamp, nullable=False),
    )
    op.create_index(
        "ix_therapy_emotions_player", "therapy_emotions", ["workspace_id", "user_id", "at"]
    )
    op.create_table(
        "therapy_checkpoints",
        sa.Column("session_id", Id, primary_key=True),
        sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
    )


def downgrade() -> None:
    # Each table takes its indexes along.
    for table in (
        "therapy_checkpoints",
        "therapy_emotions",
        "therapy_assessments",
        "therapy_markers",
        "therapy_goal_progress",
        "therapy_goals",
        "therapy_profiles",
    ):
        op.drop_table(table)
