"""Terminal sessions' tables (migration 0017), owned by `taleweaver.terminals`.

`terminals` is the read model of each terminal's stream (`terminal:<id>`), written
in its events' transaction. `terminal_output` is not a projection: it holds the
screen's bytes as numbered chunks, capped per terminal by the retention window
(older chunks are deleted as new ones arrive), so that the event log records who
did what and a flood of output cannot grow the store without bound.

In a sensitive workspace each chunk's text is sealed (`sealed` set, migration 0019),
bound to its terminal and number; key rotation re-seals it (declared below).
"""

from __future__ import annotations

import sqlalchemy as sa

from taleweaver.store.schema import Id, Stamp, metadata
from taleweaver.store.sealed_columns import SealedColumn, declare

__all__ = ["output_aad", "terminal_output", "terminals"]


def output_aad(terminal_id: str, seq: int) -> str:
    """Binds a sealed chunk to its terminal and place (terminal ids are unique)."""
    return f"terminal-output\x00{terminal_id}\x00{seq}"


terminals = sa.Table(
    "terminals",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("command", sa.Text, nullable=False),  # JSON list of the argv, as text
    sa.Column("cwd", sa.Text, nullable=False),
    sa.Column("cols", sa.Integer, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    # running or closed; a running terminal is served by the process named in owner
    # (host:pid): input reaches it only there.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("close_reason", sa.String(40), nullable=True),
    # The newest output chunk's number, and how many bytes of output there were.
    sa.Column("output_seq", sa.Integer, nullable=False),
    sa.Column("output_bytes", sa.BigInteger, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_by", Id, nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("closed_at", Stamp, nullable=True),
    sa.Index("ix_terminals_workspace", "workspace_id", "created_at"),
)

terminal_output = sa.Table(
    "terminal_output",
    metadata,
    sa.Column("terminal_id", Id, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("bytes", sa.Integer, nullable=False),
    sa.Column("at", Stamp, nullable=False),
    # `data` is sealed (migration 0019).
    sa.Column("sealed", sa.Boolean, nullable=False, server_default=sa.false()),
)

declare(
    SealedColumn(
        "terminal_output",
        terminal_output,
        (terminal_output.c.terminal_id, terminal_output.c.seq),
        sa.case((terminal_output.c.sealed, terminal_output.c.data)),
        terminal_output.c.data,
        lambda row, keys: keys.reseal(row.data, output_aad(row.terminal_id, row.seq)),
    )
)
