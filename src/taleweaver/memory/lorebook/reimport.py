"""Re-imports: an imported lorebook that matches one already in the workspace.

A match is a book of the same format with the same entries ("same content"), or
failing that one of the same name ("same name": most likely a newer copy of the
same file). The importer then asks which of update, copy or skip the caller wants.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.errors import AlreadyImported
from taleweaver.domain.lorebook import Book, entry_to_json
from taleweaver.store.lorebook_schema import lorebook_entries, lorebooks

# What a book without a name of its own, or a file name, is called: never a match.
PLACEHOLDER_NAMES = frozenset({"imported lorebook", "novelai lorebook", "character lorebook"})
# "ask": refuse a match with AlreadyImported; the others say what to do with one.
OnDuplicate = Literal["ask", "update", "copy", "skip"]


def file_stem(filename: str | None) -> str | None:
    """What a book without a name field is called: its file's name, less the suffix."""
    if not filename:
        return None
    stem = PurePath(filename.replace("\\", "/")).name
    for suffix in (".lorebook", ".json"):
        stem = stem.removesuffix(suffix)
    return stem.strip() or None


async def find_match(
    conn: AsyncConnection, workspace_id: str, book: Book, name: str
) -> tuple[Any, str] | None:
    """(row, "same content" | "same name") of the book this import matches, if any."""
    rows = (
        await conn.execute(
            sa.select(lorebooks)
            .where(lorebooks.c.workspace_id == workspace_id)
            .where(lorebooks.c.format == book.format)
            .where(
                sa.or_(
                    lorebooks.c.entry_count == len(book.entries),
                    sa.func.lower(lorebooks.c.name) == name.casefold(),
                )
            )
            .order_by(lorebooks.c.created_at, lorebooks.c.id)
        )
    ).all()
    wanted = [entry_to_json(e) for e in book.entries]
    for row in rows:
        if row.entry_count != len(wanted):
            continue
        stored = await conn.scalars(
            sa.select(lorebook_entries.c.data)
            .where(lorebook_entries.c.lorebook_id == row.id)
            .order_by(lorebook_entries.c.seq)
        )
        if list(stored) == wanted:
            return row, "same content"
    if name.casefold() in PLACEHOLDER_NAMES:
        return None
    named = [row for row in rows if row.name.casefold() == name.casefold()]
    return (named[0], "same name") if named else None


def ask(row: Any, why: str) -> AlreadyImported:
    return AlreadyImported(
        f"this lorebook was already imported ({why} as '{row.name}', id {row.id}): "
        "import it again with on_duplicate=update (replace that book's entries), "
        "copy (keep both) or skip",
        {"id": row.id, "name": row.name, "entries": row.entry_count, "match": why},
    )


def copy_name(name: str) -> str:
    return f"{name} (copy)"


__all__ = ["OnDuplicate", "ask", "copy_name", "file_stem", "find_match"]
