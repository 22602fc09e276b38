"""The studio's read models (migration 0015): project blueprints and prompt recipes.

Each row is the projection of its own event stream (`blueprint:<id>`,
`recipe:<id>`), written in the events' transaction; the versions themselves are
read from the stream. Every row carries its workspace.
"""

from __future__ import annotations

import sqlalchemy as sa

from taleweaver.store.schema import Id, Json, Stamp, metadata

studio_blueprints = sa.Table(
    "studio_blueprints",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    # The world whose content rules take the table's lines and veils, if any.
    sa.Column("world_id", Id, nullable=True),
    sa.Column("fields", Json, nullable=False),
    # field -> where its current value came from (a studio reply, or an edit's version).
    sa.Column("field_sources", Json, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    sa.Column("updated_by", sa.String(100), nullable=False),
    sa.Index("ix_studio_blueprints_workspace", "workspace_id", "updated_at"),
)

studio_recipes = sa.Table(
    "studio_recipes",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("recipe", Json, nullable=False),
    sa.Column("tags", Json, nullable=False),
    sa.Column("field_sources", Json, nullable=False),
    # name, description, template and tags in lower case: what the vault's search reads.
    sa.Column("search_text", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    sa.Column("updated_by", sa.String(100), nullable=False),
    sa.Index("ix_studio_recipes_workspace", "workspace_id", "name"),
)
