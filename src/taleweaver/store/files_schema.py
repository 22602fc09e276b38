"""File-editor sessions' read models (migration 0017), owned by `taleweaver.files`.

Each file is the projection of its stream (`file:<id>`), written in its events'
transaction; its revisions, diffs and reverts read the stream. The text itself also
lives on disk, under the workspace's folder. A proposal is an assistant's diff
waiting for the user's decision.

In a sensitive workspace a file's text and a proposal's diff and note are sealed
(`sealed` set, migration 0019; `taleweaver.files` seals and opens them), and key
rotation re-seals them: they are declared below.
"""

from __future__ import annotations

import sqlalchemy as sa

from taleweaver.store.schema import Id, Stamp, metadata
from taleweaver.store.sealed_columns import SealedColumn, declare

__all__ = ["file_proposals", "file_text_aad", "proposal_aad", "workspace_files"]


def file_text_aad(workspace_id: str, file_id: str) -> str:
    """Binds a sealed file text to its row: moved anywhere else, it fails to open."""
    return f"file-text\x00{workspace_id}\x00{file_id}"


def proposal_aad(workspace_id: str, proposal_id: str) -> str:
    """Binds a sealed proposal (its diff and note, as one JSON value) to its row."""
    return f"file-proposal\x00{workspace_id}\x00{proposal_id}"


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
    # The text is sealed (migration 0019).
    sa.Column("sealed", sa.Boolean, nullable=False, server_default=sa.false()),
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
    # The diff holds the sealed JSON of the diff and the note; note is "" (migration 0019).
    sa.Column("sealed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_file_proposals_file", "file_id", "created_at"),
)

declare(
    SealedColumn(
        "workspace_files",
        workspace_files,
        (workspace_files.c.id,),
        sa.case((workspace_files.c.sealed, workspace_files.c.text)),
        workspace_files.c.text,
        lambda row, keys: keys.reseal(row.text, file_text_aad(row.workspace_id, row.id)),
    )
)

declare(
    SealedColumn(
        "file_proposals",
        file_proposals,
        (file_proposals.c.id,),
        sa.case((file_proposals.c.sealed, file_proposals.c.diff)),
        file_proposals.c.diff,
        lambda row, keys: keys.reseal(row.diff, proposal_aad(row.workspace_id, row.id)),
    )
)
