"""Tables for rolling session summaries (migration 0011).

A summary's text is sealed like a message when its workspace is sensitive
(`sealed` set; `memory.summaries.store` seals and opens it). Nothing else in a
row holds words of the story: ranges, ids, the model's name, counters.
"""

from __future__ import annotations

import sqlalchemy as sa

from taleweaver.store.schema import Id, Json, Stamp, metadata
from taleweaver.store.sealed_columns import SealedColumn, declare

__all__ = ["summaries", "summary_aad", "summary_progress"]


def summary_aad(workspace_id: str, summary_id: str) -> str:
    """Binds a sealed summary to its row: moved anywhere else, it fails to open."""
    return f"summary\x00{workspace_id}\x00{summary_id}"


summaries = sa.Table(
    "summaries",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column(
        "workspace_id", Id, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("session_id", Id, nullable=False),
    sa.Column("level", sa.Integer, nullable=False),
    sa.Column("first_turn", sa.Integer, nullable=False),
    sa.Column("last_turn", sa.Integer, nullable=False),
    # The summary, or (sealed) its ciphertext.
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("sealed", sa.Boolean, nullable=False, server_default=sa.false()),
    # "model", or "extractive" when the model failed or said nothing usable.
    sa.Column("method", sa.String(20), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("prompt_version", sa.Integer, nullable=False),
    # What it was made from: turn numbers (level 1) or summaries (above).
    sa.Column("sources", Json, nullable=False),
    # The session's stream version its sources were read at: a turn replaced by a
    # later event makes it stale.
    sa.Column("source_version", sa.Integer, nullable=False),
    sa.Column("stale", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("fallback_reason", sa.String(500), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("retry_at", Stamp, nullable=True),
    sa.Column("created_at", Stamp, nullable=False),
    sa.UniqueConstraint("session_id", "level", "first_turn", name="uq_summaries_span"),
    sa.Index("ix_summaries_workspace_session", "workspace_id", "session_id"),
)

# Per session: how far its stream has been scanned for replaced turns, and a
# counter bumped by every change to its summaries (recall's cache checks it).
summary_progress = sa.Table(
    "summary_progress",
    metadata,
    sa.Column("session_id", Id, primary_key=True),
    sa.Column(
        "workspace_id", Id, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("checked_version", sa.Integer, nullable=False),
    sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated_at", Stamp, nullable=False),
)

declare(
    SealedColumn(
        "summaries",
        summaries,
        (summaries.c.id,),
        sa.case((summaries.c.sealed, summaries.c.text)),
        summaries.c.text,
        lambda row, keys: keys.reseal(row.text, summary_aad(row.workspace_id, row.id)),
    )
)
