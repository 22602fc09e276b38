"""The file a `file` session edits, as a piece of its assistant's context pack: the
text as the read model holds it now, with its revision in the trace (the proposal
the turn makes is a diff against that revision)."""

from __future__ import annotations

from taleweaver.domain.errors import NotFound
from taleweaver.domain.pipeline import ContextPiece, RecallQuery
from taleweaver.domain.sessions import SessionKind
from taleweaver.files.service import FileSessions

__all__ = ["FileSource", "revision_seen"]

NAME = "file"


def revision_seen(trace: list[dict[str, object]], file_id: str) -> int | None:
    """The revision of `file_id` a turn's context pack held (its trace says)."""
    for entry in trace:
        detail = entry.get("detail")
        if entry.get("source") != NAME or not isinstance(detail, dict):
            continue
        if detail.get("file_id") == file_id and isinstance(detail.get("revision"), int):
            return int(detail["revision"])
    return None


class FileSource:
    name = NAME

    def __init__(self, files: FileSessions) -> None:
        self.files = files

    async def gather(self, query: RecallQuery) -> list[ContextPiece]:
        file_id = query.settings.get("file_id")
        if query.kind != SessionKind.FILE or not isinstance(file_id, str):
            return []
        try:
            row = await self.files.current(query.workspace_id, file_id)
        except NotFound:
            return []
        body = row["text"] if row["text"].endswith("\n") else row["text"] + "\n"
        text = f"The current text of '{row['path']}' (revision {row['revision']}):\n```\n{body}```"
        return [
            ContextPiece(
                text=text,
                source=NAME,
                ref=f"{file_id}@r{row['revision']}",
                reason="the file this session edits",
                priority=1000,
                placement="system",
                ignore_budget=True,
                detail={"file_id": file_id, "revision": row["revision"]},
            )
        ]
