"""The studio's read models: project blueprints and prompt recipes (issue #18).

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_STAMP = sa.DateTime(timezone=True)
_ID = sa.String(64)


def upgrade() -> None:
    # Frozen copies of the tables as this revision created them.
    op.create_table(
        "studio_blueprints",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("workspace_id", _ID, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("world_id", _ID, nullable=True),
        sa.Column("fields", _JSON, nullable=False),
        sa.Column("field_sources", _JSON, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", _STAMP, nullable=False),
        sa.Column("updated_at", _STAMP, nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
    )
    op.create_index(
        "ix_studio_blueprints_workspace", "studio_blueprints", ["workspace_id", "updated_at"]
    )
    op.create_table(
        "studio_recipes",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("workspace_id", _ID, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("recipe", _JSON, nullable=False),
        sa.Column("tags", _JSON, nullable=False),
        sa.Column("field_sources", _JSON, nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", _STAMP, nullable=False),
        sa.Column("updated_at", _STAMP, nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
    )
    op.create_index("ix_studio_recipes_workspace", "studio_recipes", ["workspace_id", "name"])


def downgrade() -> None:
    op.drop_index("ix_studio_recipes_workspace", table_name="studio_recipes")
    op.drop_table("studio_recipes")
    op.drop_index("ix_studio_blueprints_workspace", table_name="studio_blueprints")
    op.drop_table("studio_blueprints")
