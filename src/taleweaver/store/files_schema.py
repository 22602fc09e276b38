"""File-editor sessions' read models (migration 0017), owned by `taleweaver.files`.

Each file is the projection of its stream (`file:<id>`), written in its events'
transaction; its revisions, diffs and reverts read the stream. The text itself also
lives on disk, under the workspace's folder. A proposal is an assistant's diff
waiting for the user's decision.
"""

from __future__ import annotations

import sqlalchemy as sa

from taleweaver.store.schema import Id, Stamp, metadata

__all__ = ["file_proposals", "workspace_files"]

workspace_files = sa.Table(
    "workspace_files",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("path", sa.String(512), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("bytes", sa.Integer, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),  # of the stream
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    sa.Column("updated_by", sa.String(100), nullable=False),
    sa.UniqueConstraint("workspace_id", "path", name="uq_workspace_files_path"),
)

file_proposals = sa.Table(
    "file_proposals",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("file_id", Id, nullable=False),
    sa.Column("base_revision", sa.Integer, nullable=False),
    sa.Column("diff", sa.Text, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("author", sa.String(100), nullable=False),
    # open, accepted or rejected; an accepted one names the revision it made.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("result_revision", sa.Integer, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("created_by", sa.String(100), nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("decided_by", sa.String(100), nullable=True),
    sa.Column("decided_at", Stamp, nullable=True),
    sa.Index("ix_file_proposals_file", "file_id", "created_at"),
)
