"""Tables for characters and companions (migration 0007).

Card files' images and CHARX assets are rows here, not files on disk, so that a
database backup holds everything a character is made of.
"""

from __future__ import annotations

import sqlalchemy as sa

from taleweaver.store.schema import Id, Json, Stamp, metadata

characters = sa.Table(
    "characters",
    metadata,
    sa.Column("id", Id, primary_key=True),
    # A deleted workspace takes its characters (and their tags and assets) with it.
    sa.Column(
        "workspace_id", Id, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("display_name", sa.Text, nullable=False),  # the nickname, else the name
    # The card as normalised V3 JSON, every unknown key kept.
    sa.Column("card", Json, nullable=False),
    # The card's JSON text exactly as it arrived.
    sa.Column("raw", sa.Text, nullable=False),
    sa.Column("source_format", sa.String(10), nullable=False),  # png | json | charx
    sa.Column("source_spec", sa.String(10), nullable=False),  # v1 | v2 | v3
    # Changed since import (an unchanged V2 card is written back as it came).
    sa.Column("edited", sa.Boolean, nullable=False),
    # Taleweaver's own settings (extensions.taleweaver on export).
    sa.Column("voice", Json, nullable=False),
    sa.Column("avatar_url", sa.Text, nullable=True),
    sa.Column("model_url", sa.Text, nullable=True),
    sa.Column("extra", Json, nullable=False),  # unknown keys of extensions.taleweaver
    # The lorebook its embedded character_book was registered as.
    sa.Column("lorebook_id", Id, nullable=True),
    sa.Column("created_by", Id, nullable=True),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    sa.Index("ix_characters_workspace", "workspace_id", "created_at"),
)

character_tags = sa.Table(
    "character_tags",
    metadata,
    sa.Column(
        "character_id", Id, sa.ForeignKey("characters.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("tag", sa.String(200), primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Index("ix_character_tags_workspace_tag", "workspace_id", "tag"),
)

character_assets = sa.Table(
    "character_assets",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column(
        "character_id", Id, sa.ForeignKey("characters.id", ondelete="CASCADE"), nullable=False
    ),
    # "image": a PNG card's picture; "file": a CHARX entry, kept at its path.
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("media_type", sa.String(100), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Index("ix_character_assets_character", "character_id"),
)

# Which companion sessions a character speaks in, for whom, and how far the
# relationship projection has read each (the turn number last scored).
character_sessions = sa.Table(
    "character_sessions",
    metadata,
    sa.Column("character_id", Id, primary_key=True),
    sa.Column("session_id", Id, primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("user_id", Id, nullable=False),
    sa.Column("checkpoint", sa.Integer, nullable=False),
    sa.Index("ix_character_sessions_user", "character_id", "user_id"),
)

relationships = sa.Table(
    "character_relationships",
    metadata,
    sa.Column("character_id", Id, primary_key=True),
    sa.Column("user_id", Id, primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("affinity", sa.Float, nullable=False),
    sa.Column("trust", sa.Float, nullable=False),
    sa.Column("mood", sa.String(20), nullable=False),
    # The tone scores of the last few player messages, newest last.
    sa.Column("recent", Json, nullable=False),
    sa.Column("turns", sa.Integer, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
)
