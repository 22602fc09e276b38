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
    # Sensitive workspaces keep session content encrypted at rest (migration 0003).
    sa.Column("sensitive", sa.Boolean, nullable=False, server_default=sa.false()),
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
    # Text: a sealed title outgrows 200 characters (migration 0004).
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("pinned", sa.Boolean, nullable=False, default=False),
    sa.Column("archived", sa.Boolean, nullable=False, default=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("turn_count", sa.Integer, nullable=False, default=0),
    sa.Column("forked_from", Id, nullable=True),
    sa.Column("owner_id", Id, nullable=True),  # the user who started it (migration 0003)
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    # The title is encrypted (store.sealing; migration 0004).
    sa.Column("sealed", sa.Boolean, nullable=False, server_default=sa.false()),
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
    # content holds content, choices and alternatives encrypted, and full-text search
    # leaves the row out (store.sealing; migration 0004).
    sa.Column("sealed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("session_id", "seq", name="uq_messages_session_seq"),
    sa.Index("ix_messages_session_turn", "session_id", "turn_number"),
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
    # ok, failed or cancelled: a call that broke off mid-reply still used tokens.
    sa.Column("outcome", sa.String(20), nullable=False),
    # True when the provider reported no usage and the tokens were estimated.
    sa.Column("estimated", sa.Boolean, nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Index("ix_model_usage_workspace", "workspace_id", "created_at"),
    sa.Index("ix_model_usage_session", "session_id"),
)

# --- accounts, access and audit (migration 0003) ------------------------------------

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("password_hash", sa.String(200), nullable=True),  # None: single sign-on only
    sa.Column("is_active", sa.Boolean, nullable=False),
    sa.Column("is_instance_admin", sa.Boolean, nullable=False),
    sa.Column("failed_logins", sa.Integer, nullable=False),
    sa.Column("locked_until", Stamp, nullable=True),
    sa.Column("created_at", Stamp, nullable=False),
)

identities = sa.Table(
    "identities",
    metadata,
    sa.Column("provider", sa.String(100), primary_key=True),
    sa.Column("subject", sa.String(255), primary_key=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("created_at", Stamp, nullable=False),
)

memberships = sa.Table(
    "memberships",
    metadata,
    sa.Column(
        "workspace_id", Id, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Index("ix_memberships_user", "user_id"),
)

# A therapist reads the progress and safety flags of the players assigned to them.
assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column(
        "workspace_id", Id, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("therapist_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("player_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
)

login_sessions = sa.Table(
    "login_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("expires_at", Stamp, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("scopes", Json, nullable=False),
    sa.Column("workspace_id", Id, nullable=True),  # None: every workspace of the user
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("last_used_at", Stamp, nullable=True),
    sa.Column("revoked_at", Stamp, nullable=True),
    sa.Index("ix_api_keys_user", "user_id"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("at", Stamp, nullable=False),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("workspace_id", Id, nullable=True),
    sa.Column("target", sa.String(200), nullable=True),
    sa.Column("details", Json, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

instance_state = sa.Table(
    "instance_state",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

secrets = sa.Table(
    "secrets",
    metadata,
    sa.Column(
        "workspace_id", Id, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("ciphertext", sa.Text, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
)
