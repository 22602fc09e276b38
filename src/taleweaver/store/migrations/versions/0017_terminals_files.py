"""Terminal and file-editor sessions (issue #20): terminals and their capped output,
workspace files and proposals.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_STAMP = sa.DateTime(timezone=True)
_ID = sa.String(64)


def upgrade() -> None:
    # Frozen copies of the tables as this revision created them.
    op.create_table(
        "terminals",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("workspace_id", _ID, nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("cwd", sa.Text(), nullable=False),
        sa.Column("cols", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("close_reason", sa.String(40), nullable=True),
        sa.Column("output_seq", sa.Integer(), nullable=False),
        sa.Column("output_bytes", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", _ID, nullable=False),
        sa.Column("created_at", _STAMP, nullable=False),
        sa.Column("closed_at", _STAMP, nullable=True),
    )
    op.create_index("ix_terminals_workspace", "terminals", ["workspace_id", "created_at"])
    op.create_table(
        "terminal_output",
        sa.Column("terminal_id", _ID, primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("at", _STAMP, nullable=False),
    )
    op.create_table(
        "workspace_files",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("workspace_id", _ID, nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", _STAMP, nullable=False),
        sa.Column("updated_at", _STAMP, nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
        sa.UniqueConstraint("workspace_id", "path", name="uq_workspace_files_path"),
    )
    op.create_table(
        "file_proposals",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("workspace_id", _ID, nullable=False),
        sa.Column("file_id", _ID, nullable=False),
        sa.Column("base_revision", sa.Integer(), nullable=False),
        sa.Column("diff", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("author", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result_revision", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", _STAMP, nullable=False),
        sa.Column("decided_by", sa.String(100), nullable=True),
        sa.Column("decided_at", _STAMP, nullable=True),
    )
    op.create_index("ix_file_proposals_file", "file_proposals", ["file_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_file_proposals_file", table_name="file_proposals")
    op.drop_table("file_proposals")
    op.drop_table("workspace_files")
    op.drop_table("terminal_output")
    op.drop_index("ix_terminals_workspace", table_name="terminals")
    op.drop_table("terminals")
