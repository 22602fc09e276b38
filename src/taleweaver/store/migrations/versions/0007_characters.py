"""Tables for characters and companions: cards, tags, assets (bytes in the database, so
backups are whole), companion session links and relationship state.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
Stamp = sa.DateTime(timezone=True)
Id = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "characters",
        sa.Column("id", Id, primary_key=True),
        sa.Column(
            "workspace_id",
            Id,
            sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("card", Json, nullable=False),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Column("source_format", sa.String(10), nullable=False),
        sa.Column("source_spec", sa.String(10), nullable=False),
        sa.Column("edited", sa.Boolean, nullable=False),
        sa.Column("voice", Json, nullable=False),
        sa.Column("avatar_url", sa.Text, nullable=True),
        sa.Column("model_url", sa.Text, nullable=True),
        sa.Column("extra", Json, nullable=False),
        sa.Column("lorebook_id", Id, nullable=True),
        sa.Column("created_by", Id, nullable=True),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
    )
    op.create_index("ix_characters_workspace", "characters", ["workspace_id", "created_at"])
    op.create_table(
        "character_tags",
        sa.Column(
            "character_id",
            Id,
            sa.ForeignKey("characters.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tag", sa.String(200), primary_key=True),
        sa.Column("workspace_id", Id, nullable=False),
    )
    op.create_index("ix_character_tags_workspace_tag", "character_tags", ["workspace_id", "tag"])
    op.create_table(
        "character_assets",
        sa.Column("id", Id, primary_key=True),
        sa.Column("workspace_id", Id, nullable=False),
        sa.Column(
            "character_id",
            Id,
            sa.ForeignKey("characters.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_character_assets_character", "character_assets", ["character_id"])
    op.create_table(
        "character_sessions",
        sa.Column("character_id", Id, primary_key=True),
        sa.Column("session_id", Id, primary_key=True),
        sa.Column("workspace_id", Id, nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("checkpoint", sa.Integer, nullable=False),
    )
    op.create_index("ix_character_sessions_user", "character_sessions", ["character_id", "user_id"])
    op.create_table(
        "character_relationships",
        sa.Column("character_id", Id, primary_key=True),
        sa.Column("user_id", Id, primary_key=True),
        sa.Column("workspace_id", Id, nullable=False),
        sa.Column("affinity", sa.Float, nullable=False),
        sa.Column("trust", sa.Float, nullable=False),
        sa.Column("mood", sa.String(20), nullable=False),
        sa.Column("recent", Json, nullable=False),
        sa.Column("turns", sa.Integer, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("character_relationships")
    op.drop_index("ix_character_sessions_user", table_name="character_sessions")
    op.drop_table("character_sessions")
    op.drop_index("ix_character_assets_character", table_name="character_assets")
    op.drop_table("character_assets")
    op.drop_index("ix_character_tags_workspace_tag", table_name="character_tags")
    op.drop_table("character_tags")
    op.drop_index("ix_characters_workspace", table_name="characters")
    op.drop_table("characters")
