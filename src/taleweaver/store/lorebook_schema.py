"""Tables for lorebooks (migration 0006): books, their entries, and each session's timed effects."""

from __future__ import annotations

import sqlalchemy as sa

from taleweaver.store.schema import Id, Json, Stamp, metadata

lorebooks = sa.Table(
    "lorebooks",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column(
        "workspace_id", Id, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("world_id", Id, nullable=True),
    sa.Column("name", sa.String(200), nullable=False),
    # The format it was imported in: an export in it is lossless.
    sa.Column("format", sa.String(20), nullable=False),
    sa.Column("settings", Json, nullable=False),
    # The file's top level without its entries, kept verbatim.
    sa.Column("envelope", Json, nullable=False),
    # Bumped by every change; the prepared (indexed) book is cached per version.
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("entry_count", sa.Integer, nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    sa.Index("ix_lorebooks_workspace_world", "workspace_id", "world_id"),
)

lorebook_entries = sa.Table(
    "lorebook_entries",
    metadata,
    sa.Column(
        "lorebook_id", Id, sa.ForeignKey("lorebooks.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("uid", sa.String(200), primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    # Keeps the file's entry order for list formats and SillyTavern's object order.
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("data", Json, nullable=False),  # the normalised fields
    sa.Column("raw", Json, nullable=True),  # the entry as imported; None if made here
    sa.Index("ix_lorebook_entries_order", "lorebook_id", "seq"),
)

lorebook_timed = sa.Table(
    "lorebook_timed",
    metadata,
    sa.Column("session_id", Id, primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("state", Json, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
)

TABLES = [lorebooks, lorebook_entries, lorebook_timed]
