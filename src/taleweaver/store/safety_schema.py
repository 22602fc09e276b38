"""Safety tables: crisis flags (and the pause they hold), therapist webhooks and their
deliveries, content rules per world or workspace, and players' own preferences."""

from __future__ import annotations

import sqlalchemy as sa

from taleweaver.store.schema import Id, Json, Stamp, metadata
from taleweaver.store.sealed_columns import SealedColumn, declare, reseal_or_seal


def webhook_secret_aad(workspace_id: str, user_id: str) -> str:
    """Binds a sealed webhook secret to its row: moved anywhere else, it fails to open."""
    return f"safety-webhook\x00{workspace_id}\x00{user_id}"


# One row per crisis raised; an open, pausing flag holds its session's story.
safety_flags = sa.Table(
    "safety_flags",
    metadata,
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
    sa.Index("ix_safety_flags_session", "workspace_id", "session_id", "status"),
)

# A therapist's webhook; the secret signs every delivery and is shown once. It is
# stored sealed, always (migration 0012: Text, as a ciphertext outgrows 128
# characters); a row written before then holds it in plaintext, which still signs
# and which `taleweaver keys rotate` seals.
safety_webhooks = sa.Table(
    "safety_webhooks",
    metadata,
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), primary_key=True),
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
)

declare(
    SealedColumn(
        "webhooks",
        safety_webhooks,
        (safety_webhooks.c.workspace_id, safety_webhooks.c.user_id),
        safety_webhooks.c.secret,
        safety_webhooks.c.secret,
        lambda row, keys: reseal_or_seal(
            keys, row.secret, webhook_secret_aad(row.workspace_id, row.user_id)
        ),
    )
)

safety_deliveries = sa.Table(
    "safety_deliveries",
    metadata,
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
    sa.Index("ix_safety_deliveries_flag", "workspace_id", "flag_id"),
)

# scope: "workspace", or "world:<world id>".
safety_content_rules = sa.Table(
    "safety_content_rules",
    metadata,
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), primary_key=True),
    sa.Column("scope", sa.String(120), primary_key=True),
    sa.Column("content_warnings", Json, nullable=False),
    sa.Column("forbidden", Json, nullable=False),
    sa.Column("locale", sa.String(20), nullable=True),
    sa.Column("updated_at", Stamp, nullable=False),
)

safety_preferences = sa.Table(
    "safety_preferences",
    metadata,
    sa.Column("workspace_id", Id, sa.ForeignKey("workspaces.id"), primary_key=True),
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("avoid_topics", Json, nullable=False),
    sa.Column("trigger_warnings", Json, nullable=False),
    sa.Column("locale", sa.String(20), nullable=True),
    sa.Column("updated_at", Stamp, nullable=False),
)
