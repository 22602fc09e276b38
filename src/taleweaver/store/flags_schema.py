"""Feature flags a workspace has set (migration 0014); a flag with no row has its
default (`domain.flags`). Flags belong to the workspace and go with it."""

from __future__ import annotations

import sqlalchemy as sa

from taleweaver.store.schema import Id, Stamp, metadata

__all__ = ["workspace_flags"]

workspace_flags = sa.Table(
    "workspace_flags",
    metadata,
    sa.Column(
        "workspace_id", Id, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    # The user who set it, as recorded in the audit log.
    sa.Column("updated_by", sa.String(200), nullable=False),
)
