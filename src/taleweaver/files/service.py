"""File-editor sessions: text files in a workspace's folder, each a stream of its
revisions; edits by the user, proposals (unified diffs) by the assistant that the
user accepts or rejects; versions, diffs between any two, and reverts.

Each change is written to a file beside the target first, recorded (events and the
read model) in one transaction, and then moved into place: a change that is not
recorded never reaches the file.

In a sensitive workspace the read model's text and each proposal's diff and note are
sealed as messages are (the events are sealed by the event store); reads open them.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.config import Settings
from taleweaver.domain.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from taleweaver.domain.events import JSON, EventMetadata, NewEvent, RecordedEvent
from taleweaver.domain.files import (
    FileEvent,
    apply_diff,
    check_text,
    clean_path,
    file_stream,
    unified_diff,
)
from taleweaver.files.folder import WorkspaceFolder, workspace_folder
from taleweaver.store.database import Database
from taleweaver.store.events import EventStore
from taleweaver.store.files_schema import (
    file_proposals,
    file_text_aad,
    proposal_aad,
    workspace_files,
)
from taleweaver.store.sealing import Sealer

__all__ = ["FileSessions"]

_CONTENT = (FileEvent.CREATED, FileEvent.EDITED)


def _plain(row: Any) -> JSON:
    data = dict(row._mapping)
    for key, value in data.items():
        if isinstance(value, datetime) and value.tzinfo is None:
            data[key] = value.replace(tzinfo=UTC)
    data.pop("workspace_id", None)
    return data


class FileSessions:
    def __init__(self, db: Database, store: EventStore, settings: Settings) -> None:
        self.db = db
        self.store = store
        self.settings = settings
        self.sealer: Sealer | None = store.sealer

    @property
    def max_bytes(self) -> int:
        return self.settings.file_max_bytes

    def folder(self, workspace_id: str) -> WorkspaceFolder:
        return WorkspaceFolder(workspace_folder(self.settings.data_dir, workspace_id))

    # --- sealing ----------------------------------------------------------------------

    async def _seals(self, conn: AsyncConnection, workspace_id: str) -> bool:
        return self.sealer is not None and await self.sealer.sensitive(conn, workspace_id)

    def _sealed_text(self, workspace_id: str, file_id: str, text: str) -> str:
        assert self.sealer is not None
        return self.sealer.keys.encrypt(text, file_text_aad(workspace_id, file_id))

    def _open_file(self, workspace_id: str, row: JSON) -> JSON:
        if row.pop("sealed", False) and "text" in row:
            assert self.sealer is not None, "a sealed file needs the key ring to open"
            row["text"] = self.sealer.keys.decrypt(
                row["text"], file_text_aad(workspace_id, row["id"])
            )
        return row

    def _open_proposal(self, workspace_id: str, row: JSON) -> JSON:
        if row.pop("sealed", False):
            assert self.sealer is not None, "a sealed proposal needs the key ring to open"
            body = json.loads(
                self.sealer.keys.decrypt(row["diff"], proposal_aad(workspace_id, row["id"]))
            )
            row["diff"], row["note"] = body["diff"], body["note"]
        return row

    # --- reading ----------------------------------------------------------------------

    async def _row(self, conn: AsyncConnection, workspace_id: str, file_id: str) -> JSON:
        found = (
            await conn.execute(
                sa.select(workspace_files).where(
                    workspace_files.c.id == file_id, workspace_files.c.workspace_id == workspace_id
                )
            )
        ).first()
        if found is None:
            raise NotFound(f"file {file_id} not found")
        return self._open_file(workspace_id, _plain(found))

    async def get(self, workspace_id: str, file_id: str) -> JSON:
        """The file as last recorded, and whether the file on disk still holds it
        (a terminal may have changed it)."""
        async with self.db.read() as conn:
            row = await self._row(conn, workspace_id, file_id)
        try:
            on_disk = self.folder(workspace_id).read(row["path"], self.max_bytes)
        except (InvalidInput, PayloadTooLarge, OSError):
            row["on_disk"] = "changed"
        else:
            same = on_disk == row["text"]
            row["on_disk"] = "missing" if on_disk is None else "same" if same else "changed"
        return row

    async def current(self, workspace_id: str, file_id: str) -> JSON:
        """The file as last recorded (without looking at the disk)."""
        async with self.db.read() as conn:
            return await self._row(conn, workspace_id, file_id)

    async def assistant(self, workspace_id: str, file_id: str) -> str | None:
        """The session of kind `file` that proposes changes to it, once there is one."""
        for e in reversed(await self._stream(workspace_id, file_id)):
            if e.type == FileEvent.ASSISTANT_LINKED:
                return str(e.payload["session_id"])
        return None

    async def link_assistant(
        self, workspace_id: str, file_id: str, session_id: str, meta: EventMetadata
    ) -> str:
        """Make `session_id` the file's assistant (`file.assistant_linked`) unless it
        has one already; the one it has."""
        async with self._change(workspace_id, "", None) as conn:
            row = await self._row(conn, workspace_id, file_id)
            for e in await self.store.read_stream(file_stream(file_id)):
                if e.type == FileEvent.ASSISTANT_LINKED:
                    return str(e.payload["session_id"])
            linked = NewEvent(FileEvent.ASSISTANT_LINKED, {"session_id": session_id})
            recorded = await self._append(
                conn, workspace_id, file_id, row["version"], [linked], meta
            )
            await conn.execute(
                workspace_files.update()
                .where(workspace_files.c.id == file_id)
                .values(version=recorded[-1].version)
            )
        return session_id

    async def all(self, workspace_id: str) -> list[JSON]:
        hidden = ("text", "workspace_id", "sealed")
        columns = [c for c in workspace_files.c if c.name not in hidden]
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(*columns)
                .where(workspace_files.c.workspace_id == workspace_id)
                .order_by(workspace_files.c.path)
            )
            return [_plain(r) for r in rows]

    async def _stream(self, workspace_id: str, file_id: str) -> list[RecordedEvent]:
        async with self.db.read() as conn:
            await self._row(conn, workspace_id, file_id)
        return await self.store.read_stream(file_stream(file_id))

    async def versions(self, workspace_id: str, file_id: str) -> list[JSON]:
        """Every revision, oldest first: who made it, when, how, and its size."""
        return [
            {
                "revision": e.payload["revision"],
                "at": e.recorded_at,
                "actor": e.metadata.get("actor"),
                "how": e.payload.get("how", "created"),
                "proposal_id": e.payload.get("proposal_id"),
                "reverted_to": e.payload.get("reverted_to"),
                "bytes": len(e.payload["text"].encode("utf-8")),
            }
            for e in await self._stream(workspace_id, file_id)
            if e.type in _CONTENT
        ]

    async def version(self, workspace_id: str, file_id: str, revision: int) -> JSON:
        """A revision's whole text."""
        for e in await self._stream(workspace_id, file_id):
            if e.type in _CONTENT and e.payload["revision"] == revision:
                return {"id": file_id, "revision": revision, "text": e.payload["text"]}
        raise NotFound(f"file {file_id} has no revision {revision}")

    async def diff(self, workspace_id: str, file_id: str, old: int, new: int) -> JSON:
        """Revision `old` -> `new` as a unified diff."""
        texts: dict[int, str] = {}
        path = ""
        for e in await self._stream(workspace_id, file_id):
            if e.type == FileEvent.CREATED:
                path = e.payload["path"]
            if e.type in _CONTENT and e.payload["revision"] in (old, new):
                texts[e.payload["revision"]] = e.payload["text"]
        for revision in (old, new):
            if revision not in texts:
                raise NotFound(f"file {file_id} has no revision {revision}")
        patch = unified_diff(texts[old], texts[new], path=path, old=f"r{old}", new=f"r{new}")
        return {"id": file_id, "from": old, "to": new, "diff": patch}

    async def proposals(
        self, workspace_id: str, file_id: str, status: str | None = None
    ) -> list[JSON]:
        async with self.db.read() as conn:
            await self._row(conn, workspace_id, file_id)
            query = sa.select(file_proposals).where(file_proposals.c.file_id == file_id)
            if status is not None:
                query = query.where(file_proposals.c.status == status)
            rows = await conn.execute(
                query.order_by(file_proposals.c.created_at, file_proposals.c.id)
            )
            return [self._open_proposal(workspace_id, _plain(r)) for r in rows]

    # --- writing ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _change(
        self, workspace_id: str, path: str, text: str | None
    ) -> AsyncIterator[AsyncConnection]:
        """A write transaction; with `text`, the file on disk becomes it once the
        transaction commits (and stays as it was if it does not)."""
        staged: tuple[Path, Path] | None = None
        folder = self.folder(workspace_id)
        if text is not None:
            staged = folder.stage(path, text)
        try:
            async with self.db.write() as conn:
                await self.db.lock(conn)
                yield conn
        except BaseException:
            if staged is not None:
                folder.discard(staged[0])
            raise
        if staged is not None:
            folder.commit(*staged)

    async def _append(
        self,
        conn: AsyncConnection,
        workspace_id: str,
        file_id: str,
        version: int,
        events: Sequence[NewEvent],
        meta: EventMetadata,
    ) -> list[RecordedEvent]:
        return await self.store.append(
            conn,
            stream_id=file_stream(file_id),
            workspace_id=workspace_id,
            expected_version=version,
            new_events=events,
            metadata=meta,
        )

    async def create(
        self, workspace_id: str, path: str, text: str | None, meta: EventMetadata
    ) -> JSON:
        """A file at `path` (revision 1): with `text`, a new one; without, the file
        already on disk there (or an empty one)."""
        path = clean_path(path)
        folder = self.folder(workspace_id)
        on_disk = folder.read(path, self.max_bytes)
        if text is not None and on_disk is not None:
            raise Conflict(f"'{path}' exists already; leave out the text to open it")
        content = check_text(text if text is not None else on_disk or "", self.max_bytes)
        file_id = uuid.uuid4().hex
        async with self._change(workspace_id, path, content) as conn:
            taken = await conn.scalar(
                sa.select(workspace_files.c.id).where(
                    workspace_files.c.workspace_id == workspace_id,
                    workspace_files.c.path == path,
                )
            )
            if taken is not None:
                raise Conflict(f"'{path}' is open as file {taken} already")
            recorded = await self._append(
                conn,
                workspace_id,
                file_id,
                0,
                [NewEvent(FileEvent.CREATED, {"path": path, "text": content, "revision": 1})],
                meta,
            )
            event = recorded[-1]
            seal = await self._seals(conn, workspace_id)
            await conn.execute(
                workspace_files.insert().values(
                    id=file_id,
                    workspace_id=workspace_id,
                    path=path,
                    text=self._sealed_text(workspace_id, file_id, content) if seal else content,
                    sealed=seal,
                    revision=1,
                    bytes=len(content.encode("utf-8")),
                    version=event.version,
                    created_at=event.recorded_at,
                    updated_at=event.recorded_at,
                    updated_by=meta.actor[:100],
                )
            )
        return await self.get(workspace_id, file_id)

    async def _edit_in(
        self,
        conn: AsyncConnection,
        workspace_id: str,
        row: JSON,
        text: str,
        meta: EventMetadata,
        how: JSON,
        before: Sequence[NewEvent] = (),
    ) -> None:
        """Record `text` as the next revision (after the events in `before`)."""
        revision = row["revision"] + 1
        edited = NewEvent(FileEvent.EDITED, {"text": text, "revision": revision} | how)
        recorded = await self._append(
            conn, workspace_id, row["id"], row["version"], [*before, edited], meta
        )
        seal = await self._seals(conn, workspace_id)
        await conn.execute(
            workspace_files.update()
            .where(workspace_files.c.id == row["id"])
            .values(
                text=self._sealed_text(workspace_id, row["id"], text) if seal else text,
                sealed=seal,
                revision=revision,
                bytes=len(text.encode("utf-8")),
                version=recorded[-1].version,
                updated_at=recorded[-1].recorded_at,
                updated_by=meta.actor[:100],
            )
        )

    async def edit(
        self,
        workspace_id: str,
        file_id: str,
        text: str,
        meta: EventMetadata,
        *,
        expected_revision: int | None = None,
    ) -> JSON:
        """The user's new text as the next revision (unchanged text: no revision);
        Conflict when the file is no longer at `expected_revision`."""
        check_text(text, self.max_bytes)
        async with self.db.read() as conn:
            row = await self._row(conn, workspace_id, file_id)
        if text == row["text"] and expected_revision in (None, row["revision"]):
            return await self.get(workspace_id, file_id)
        async with self._change(workspace_id, row["path"], text) as conn:
            row = await self._row(conn, workspace_id, file_id)
            if expected_revision is not None and expected_revision != row["revision"]:
                raise Conflict(
                    f"file {file_id} is at revision {row['revision']}, not "
                    f"{expected_revision}: reload it and edit again"
                )
            await self._edit_in(conn, workspace_id, row, text, meta, {"how": "user"})
        return await self.get(workspace_id, file_id)

    async def revert(
        self, workspace_id: str, file_id: str, revision: int, meta: EventMetadata
    ) -> JSON:
        """A new revision holding what `revision` held."""
        old = (await self.version(workspace_id, file_id, revision))["text"]
        async with self.db.read() as conn:
            row = await self._row(conn, workspace_id, file_id)
        async with self._change(workspace_id, row["path"], old) as conn:
            row = await self._row(conn, workspace_id, file_id)
            how = {"how": "revert", "reverted_to": revision}
            await self._edit_in(conn, workspace_id, row, old, meta, how)
        return await self.get(workspace_id, file_id)

    # --- proposals --------------------------------------------------------------------

    async def propose(
        self,
        workspace_id: str,
        file_id: str,
        meta: EventMetadata,
        *,
        diff: str | None = None,
        text: str | None = None,
        note: str = "",
        author: str = "assistant",
        base_revision: int | None = None,
        origin: JSON | None = None,
    ) -> JSON:
        """A change for the user to accept or reject, as a unified diff against the
        current revision (or the whole new `text`, turned into one). InvalidInput
        for a diff that does not parse or changes nothing, Conflict for one that
        does not apply to the current text.

        With `base_revision`, the whole new `text` was made from that revision: the
        diff is against it, and it must still apply to the current text. `origin`
        (the turn that made it) is recorded in the event."""
        if (diff is None) == (text is None):
            raise InvalidInput("propose either a diff or the whole new text")
        async with self.db.read() as conn:
            row = await self._row(conn, workspace_id, file_id)
        current = row["text"]
        base, based_on = current, row["revision"]
        if text is not None and base_revision not in (None, row["revision"]):
            assert base_revision is not None
            base = (await self.version(workspace_id, file_id, base_revision))["text"]
            based_on = base_revision
        if text is not None:
            check_text(text, self.max_bytes)
            diff = unified_diff(base, text, path=row["path"], old=f"r{based_on}", new="proposed")
            result = text if base == current else apply_diff(current, diff)
            if text == base:
                raise InvalidInput("the proposal changes nothing")
        else:
            assert diff is not None
            result = check_text(apply_diff(current, diff), self.max_bytes)
        if result == current:
            raise InvalidInput("the proposal changes nothing")
        proposal_id = uuid.uuid4().hex
        payload = {
            "proposal_id": proposal_id,
            "base_revision": based_on,
            "diff": diff,
            "note": note,
            "author": author,
        } | ({"origin": origin} if origin else {})
        async with self._change(workspace_id, row["path"], None) as conn:
            row = await self._row(conn, workspace_id, file_id)
            if row["text"] != current:
                raise Conflict(f"file {file_id} changed while the proposal was made; again")
            recorded = await self._append(
                conn,
                workspace_id,
                file_id,
                row["version"],
                [NewEvent(FileEvent.PROPOSAL_MADE, payload)],
                meta,
            )
            await conn.execute(
                workspace_files.update()
                .where(workspace_files.c.id == file_id)
                .values(version=recorded[-1].version)
            )
            stored_diff, stored_note, seal = diff, note, await self._seals(conn, workspace_id)
            if seal:
                assert self.sealer is not None
                body = json.dumps({"diff": diff, "note": note}, ensure_ascii=False)
                stored_diff = self.sealer.keys.encrypt(
                    body, proposal_aad(workspace_id, proposal_id)
                )
                stored_note = ""
            await conn.execute(
                file_proposals.insert().values(
                    id=proposal_id,
                    workspace_id=workspace_id,
                    file_id=file_id,
                    base_revision=based_on,
                    diff=stored_diff,
                    note=stored_note,
                    sealed=seal,
                    author=author,
                    status="open",
                    created_by=meta.actor[:100],
                    created_at=recorded[-1].recorded_at,
                )
            )
        return await self._proposal(workspace_id, file_id, proposal_id)

    async def _proposal(self, workspace_id: str, file_id: str, proposal_id: str) -> JSON:
        async with self.db.read() as conn:
            await self._row(conn, workspace_id, file_id)
            found = (
                await conn.execute(
                    sa.select(file_proposals).where(
                        file_proposals.c.id == proposal_id,
                        file_proposals.c.file_id == file_id,
                    )
                )
            ).first()
        if found is None:
            raise NotFound(f"proposal {proposal_id} not found")
        return self._open_proposal(workspace_id, _plain(found))

    async def accept(
        self, workspace_id: str, file_id: str, proposal_id: str, meta: EventMetadata
    ) -> JSON:
        """Apply an open proposal to the current text as the next revision; Conflict
        when it was decided already or no longer applies (the file moved on)."""
        proposal = await self._proposal(workspace_id, file_id, proposal_id)
        if proposal["status"] != "open":
            raise Conflict(f"proposal {proposal_id} was {proposal['status']} already")
        async with self.db.read() as conn:
            row = await self._row(conn, workspace_id, file_id)
        text = check_text(apply_diff(row["text"], proposal["diff"]), self.max_bytes)
        async with self._change(workspace_id, row["path"], text) as conn:
            latest = await self._row(conn, workspace_id, file_id)
            state = await conn.scalar(
                sa.select(file_proposals.c.status).where(file_proposals.c.id == proposal_id)
            )
            if latest["text"] != row["text"] or state != "open":
                raise Conflict(f"file {file_id} changed while the proposal was accepted; again")
            accepted = NewEvent(
                FileEvent.PROPOSAL_ACCEPTED,
                {"proposal_id": proposal_id, "revision": latest["revision"] + 1},
            )
            how = {"how": "proposal", "proposal_id": proposal_id}
            await self._edit_in(conn, workspace_id, latest, text, meta, how, before=[accepted])
            await conn.execute(
                file_proposals.update()
                .where(file_proposals.c.id == proposal_id)
                .values(
                    status="accepted",
                    result_revision=latest["revision"] + 1,
                    decided_by=meta.actor[:100],
                    decided_at=datetime.now(UTC),
                )
            )
        return await self._proposal(workspace_id, file_id, proposal_id)

    async def reject(
        self,
        workspace_id: str,
        file_id: str,
        proposal_id: str,
        meta: EventMetadata,
        reason: str = "",
    ) -> JSON:
        """Decline an open proposal; the file stays as it is."""
        async with self._change(workspace_id, "", None) as conn:
            row = await self._row(conn, workspace_id, file_id)
            state = await conn.scalar(
                sa.select(file_proposals.c.status).where(
                    file_proposals.c.id == proposal_id, file_proposals.c.file_id == file_id
                )
            )
            if state is None:
                raise NotFound(f"proposal {proposal_id} not found")
            if state != "open":
                raise Conflict(f"proposal {proposal_id} was {state} already")
            recorded = await self._append(
                conn,
                workspace_id,
                file_id,
                row["version"],
                [
                    NewEvent(
                        FileEvent.PROPOSAL_REJECTED, {"proposal_id": proposal_id, "reason": reason}
                    )
                ],
                meta,
            )
            await conn.execute(
                workspace_files.update()
                .where(workspace_files.c.id == file_id)
                .values(version=recorded[-1].version)
            )
            await conn.execute(
                file_proposals.update()
                .where(file_proposals.c.id == proposal_id)
                .values(
                    status="rejected",
                    reason=reason,
                    decided_by=meta.actor[:100],
                    decided_at=recorded[-1].recorded_at,
                )
            )
        return await self._proposal(workspace_id, file_id, proposal_id)
