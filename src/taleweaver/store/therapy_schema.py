"""Tables of the therapeutic layer (migration 0010): one player's records per row,
always with its workspace. Nothing is written here without the player's consent."""

from __future__ import annotations

import sqlalchemy as sa

from taleweaver.store.schema import Id, Json, Stamp, metadata
from taleweaver.store.sealed_columns import SealedColumn, declare
from taleweaver.store.sealing import SEALED


def assessment_aad(workspace_id: str, assessment_id: str) -> str:
    """Binds an assessment's sealed answers to its row."""
    return f"therapy-assessment\x00{workspace_id}\x00{assessment_id}"


therapy_profiles = sa.Table(
    "therapy_profiles",
    metadata,
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), primary_key=True),
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("approaches", Json, nullable=False),
    sa.Column("intensity", sa.Integer, nullable=False),
    sa.Column("avoid_topics", Json, nullable=False),
    sa.Column("crisis_contacts", Json, nullable=False),
    # {"therapy_data": bool, "emotion_tracking": bool, "at": iso time, "by": user id}
    sa.Column("consent", Json, nullable=False),
    sa.Column("retention_days", sa.Integer, nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
)

therapy_goals = sa.Table(
    "therapy_goals",
    metadata,
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
    sa.Index("ix_therapy_goals_player", "workspace_id", "user_id"),
)

# Every change of a goal's progress, for the progress-over-time series.
therapy_goal_progress = sa.Table(
    "therapy_goal_progress",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("user_id", Id, nullable=False),
    sa.Column("goal_id", Id, nullable=False),
    sa.Column("progress", sa.Integer, nullable=False),
    sa.Column("source", sa.String(40), nullable=False),  # "manual", "choice", ...
    sa.Column("at", Stamp, nullable=False),
    sa.Index("ix_therapy_goal_progress_player", "workspace_id", "user_id", "at"),
)

therapy_markers = sa.Table(
    "therapy_markers",
    metadata,
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
    sa.Index("ix_therapy_markers_player", "workspace_id", "user_id", "at"),
)

therapy_assessments = sa.Table(
    "therapy_assessments",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("user_id", Id, nullable=False),
    sa.Column("instrument", sa.String(20), nullable=False),
    # The item answers; in a sensitive workspace {"sealed": ciphertext} instead
    # (therapy.records), the shape saying which, so no flag column is needed.
    sa.Column("answers", Json, nullable=False),
    sa.Column("score", sa.Integer, nullable=False),
    sa.Column("severity", sa.String(40), nullable=False),
    sa.Column("crisis_level", sa.String(20), nullable=True),
    sa.Column("taken_at", Stamp, nullable=False),
    sa.Index("ix_therapy_assessments_player", "workspace_id", "user_id", "taken_at"),
)

# The emotional-state projection: one reading per turn of a therapy session.
therapy_emotions = sa.Table(
    "therapy_emotions",
    metadata,
    sa.Column("session_id", Id, primary_key=True),
    sa.Column("turn_number", sa.Integer, primary_key=True),
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("user_id", Id, nullable=False),
    sa.Column("valence", sa.Float, nullable=False),
    sa.Column("arousal", sa.Float, nullable=False),
    sa.Column("emotions", Json, nullable=False),
    sa.Column("at", Stamp, nullable=False),
    sa.Index("ix_therapy_emotions_player", "workspace_id", "user_id", "at"),
)

# How far the projection has read each therapy session's stream (its version).
therapy_checkpoints = sa.Table(
    "therapy_checkpoints",
    metadata,
    sa.Column("session_id", Id, primary_key=True),
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
)

declare(
    SealedColumn(
        "assessments",
        therapy_assessments,
        (therapy_assessments.c.id,),
        therapy_assessments.c.answers[SEALED].as_string(),
        therapy_assessments.c.answers,
        lambda row, keys: {
            SEALED: keys.reseal(row.answers[SEALED], assessment_aad(row.workspace_id, row.id))
        },
    )
)

TABLES = [
    therapy_profiles,
    therapy_goals,
    therapy_goal_progress,
    therapy_markers,
    therapy_assessments,
    therapy_emotions,
    therapy_checkpoints,
]
