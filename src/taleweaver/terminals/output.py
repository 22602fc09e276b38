"""A terminal's screen output as numbered chunks in a capped table: each write
appends chunks and deletes those the retention window no longer holds. In a
sensitive workspace each chunk's text is sealed, bound to its terminal and number."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from taleweaver.domain.terminals import Frame
from taleweaver.store.database import Database
from taleweaver.store.sealing import Sealer
from taleweaver.store.terminals_schema import output_aad, terminal_output, terminals

__all__ = ["OutputLog"]


class OutputLog:
    def __init__(self, db: Database, sealer: Sealer | None = None) -> None:
        self.db = db
        self.sealer = sealer

    async def append(
        self,
        workspace_id: str,
        terminal_id: str,
        chunks: Sequence[tuple[int, str, int]],
        *,
        keep_from: int,
    ) -> None:
        """Store `chunks` ((seq, text, bytes), in order) and drop every chunk before
        `keep_from`, in one transaction. Output is not an event: the events table's
        lock (taken by `Database.write`) is not needed, and a flood must not hold it."""
        if not chunks:
            return
        now = datetime.now(UTC)
        async with self.db.engine.begin() as conn:
            sealer = self.sealer
            seal = sealer is not None and await sealer.sensitive(conn, workspace_id)
            await conn.execute(
                terminal_output.insert(),
                [
                    {
                        "terminal_id": terminal_id,
                        "seq": seq,
                        "data": sealer.keys.encrypt(text, output_aad(terminal_id, seq))
                        if seal and sealer is not None
                        else text,
                        "bytes": size,
                        "at": now,
                        "sealed": seal,
                    }
                    for seq, text, size in chunks
                ],
            )
            await conn.execute(
                terminal_output.delete().where(
                    terminal_output.c.terminal_id == terminal_id,
                    terminal_output.c.seq < keep_from,
                )
            )
            await conn.execute(
                terminals.update()
                .where(terminals.c.id == terminal_id)
                .values(
                    output_seq=chunks[-1][0],
                    output_bytes=terminals.c.output_bytes + sum(c[2] for c in chunks),
                )
            )

    async def replay(self, terminal_id: str, after: int = 0) -> list[Frame]:
        """The chunks kept after chunk `after`, oldest first; led by a `truncated`
        frame when the window dropped some the caller has not seen."""
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(
                        terminal_output.c.seq, terminal_output.c.data, terminal_output.c.sealed
                    )
                    .where(terminal_output.c.terminal_id == terminal_id)
                    .where(terminal_output.c.seq > after)
                    .order_by(terminal_output.c.seq)
                )
            ).all()
        frames = [
            Frame("output", int(seq), self._open(terminal_id, int(seq), str(data), bool(sealed)))
            for seq, data, sealed in rows
        ]
        if frames and frames[0].seq > after + 1:
            frames.insert(0, Frame("truncated", frames[0].seq))
        return frames

    def _open(self, terminal_id: str, seq: int, data: str, sealed: bool) -> str:
        if not sealed:
            return data
        assert self.sealer is not None, "sealed terminal output needs the key ring to open"
        return self.sealer.keys.decrypt(data, output_aad(terminal_id, seq))

    async def kept(self, terminal_id: str) -> tuple[int, int]:
        """(chunks, bytes) kept for a terminal now."""
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(
                        sa.func.count(), sa.func.coalesce(sa.func.sum(terminal_output.c.bytes), 0)
                    ).where(terminal_output.c.terminal_id == terminal_id)
                )
            ).one()
        return int(row[0]), int(row[1])
