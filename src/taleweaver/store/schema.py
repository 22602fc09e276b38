"""Tables, shared by SQLite and PostgreSQL; migrations create them, code reads them."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()

Json = sa.JSON().with_variant(JSONB(), "postgresql")
Stamp = sa.DateTime(timezone=True)
Id = sa.String(64)

DEFAULT_WORKSPACE_ID = "local"

workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
)

# position is assigned by the append transaction (max + 1 under the write lock),
# not by a sequence: sequences leave gaps on rollback and hand out numbers in
# insert order, not commit order.
events = sa.Table(
    "events",
    metadata,
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

snapshots = sa.Table(
    "snapshots",
    metadata,
    sa.Column("stream_id", Id, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("state", Json, nullable=False),
    sa.Column("taken_at", Stamp, nullable=False),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("pinned", sa.Boolean, nullable=False, default=False),
    sa.Column("archived", sa.Boolean, nullable=False, default=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("turn_count", sa.Integer, nullable=False, default=0),
    sa.Column("forked_from", Id, nullable=True),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    sa.Index("ix_sessions_workspace_updated", "workspace_id", "updated_at"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("session_id", Id, nullable=False),
    sa.Column("turn_id", Id, nullable=False),
    sa.Column("turn_number", sa.Integer, nullable=False),
    # seq orders a session's messages: 2 * turn_number, +1 for the narrator.
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("choices", Json, nullable=False),
    sa.Column("alternatives", Json, nullable=False),
    sa.Column("active", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", Stamp, nullable=False),
    sa.UniqueConstraint("session_id", "seq", name="uq_messages_session_seq"),
)

checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
)

model_usage = sa.Table(
    "model_usage",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("session_id", Id, nullable=True),
    sa.Column("turn_id", Id, nullable=True),
    sa.Column("task", sa.String(20), nullable=False),
    sa.Column("provider", sa.String(100), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("completion_tokens", sa.Integer, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
)
