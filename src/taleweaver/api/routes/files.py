"""File-editor sessions: text files in the workspace's folder (under the data
directory), each a stream of revisions. The user edits; the assistant proposes
unified diffs that the user accepts or rejects; any two revisions compare, and a
revert makes a new revision holding an earlier one's text. Paths that leave the
folder, links, NUL and files over the size limit are refused."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from taleweaver.api.deps import EngineDep, metadata_for
from taleweaver.api.schemas import Strict
from taleweaver.api.security import Access, requires
from taleweaver.auth import Action
from taleweaver.domain.events import JSON

router = APIRouter(prefix="/api/v1", tags=["files"])

Read = Annotated[Access, requires(Action.FILE_READ)]
Edit = Annotated[Access, requires(Action.FILE_EDIT)]
Revision = Annotated[int, Field(ge=1)]


class FileCreate(Strict):
    path: str = Field(min_length=1, max_length=512, description="Like 'notes/plot.md'.")
    text: str | None = Field(
        default=None, description="None: open the file already there (or an empty one)."
    )


class FileEdit(Strict):
    text: str
    expected_revision: int | None = Field(
        default=None, ge=1, description="Refuse (409) unless the file is at this revision."
    )


class FileRevert(Strict):
    revision: Revision


class ProposalCreate(Strict):
    diff: str | None = Field(default=None, description="A unified diff against the file.")
    text: str | None = Field(default=None, description="Or the whole new text.")
    note: str = Field(default="", max_length=2000, description="Why: shown to the user.")
    author: str = Field(default="assistant", min_length=1, max_length=100)


class AssistRequest(Strict):
    instruction: str = Field(
        min_length=1, max_length=8000, description="What to change, in the user's words."
    )


class ProposalReject(Strict):
    reason: str = Field(default="", max_length=2000)


@router.post("/files", status_code=201)
async def create_file(body: FileCreate, engine: EngineDep, access: Edit) -> JSON:
    """A file in the workspace's folder (revision 1)."""
    meta = metadata_for(access.principal.user_id)
    return await engine.files.create(access.workspace_id, body.path, body.text, meta)


@router.get("/files")
async def list_files(engine: EngineDep, access: Read) -> list[JSON]:
    return await engine.files.all(access.workspace_id)


@router.get("/files/{file_id}")
async def get_file(file_id: str, engine: EngineDep, access: Read) -> JSON:
    """Its text as last recorded; `on_disk` says whether the file still holds it."""
    return await engine.files.get(access.workspace_id, file_id)


@router.put("/files/{file_id}")
async def edit_file(file_id: str, body: FileEdit, engine: EngineDep, access: Edit) -> JSON:
    """The whole new text as the next revision (unchanged: no new revision)."""
    meta = metadata_for(access.principal.user_id)
    return await engine.files.edit(
        access.workspace_id, file_id, body.text, meta, expected_revision=body.expected_revision
    )


@router.get("/files/{file_id}/versions")
async def file_versions(file_id: str, engine: EngineDep, access: Read) -> list[JSON]:
    """Every revision: who, when, how (created, user, proposal, revert), its size."""
    return await engine.files.versions(access.workspace_id, file_id)


@router.get("/files/{file_id}/versions/{revision}")
async def file_version(file_id: str, revision: int, engine: EngineDep, access: Read) -> JSON:
    return await engine.files.version(access.workspace_id, file_id, revision)


@router.get("/files/{file_id}/diff")
async def diff_file(
    file_id: str,
    engine: EngineDep,
    access: Read,
    from_revision: Annotated[int, Query(alias="from", ge=1)],
    to_revision: Annotated[int, Query(alias="to", ge=1)],
) -> JSON:
    """Two revisions as a unified diff."""
    return await engine.files.diff(access.workspace_id, file_id, from_revision, to_revision)


@router.post("/files/{file_id}/revert")
async def revert_file(file_id: str, body: FileRevert, engine: EngineDep, access: Edit) -> JSON:
    """A new revision holding what an earlier one held."""
    meta = metadata_for(access.principal.user_id)
    return await engine.files.revert(access.workspace_id, file_id, body.revision, meta)


@router.post("/files/{file_id}/proposals", status_code=201)
async def propose_change(
    file_id: str, body: ProposalCreate, engine: EngineDep, access: Edit
) -> JSON:
    """A change for the user to decide on: a unified diff, or the whole new text."""
    meta = metadata_for(access.principal.user_id)
    return await engine.files.propose(
        access.workspace_id,
        file_id,
        meta,
        diff=body.diff,
        text=body.text,
        note=body.note,
        author=body.author,
    )


@router.get("/files/{file_id}/proposals")
async def list_proposals(
    file_id: str,
    engine: EngineDep,
    access: Read,
    status: Literal["open", "accepted", "rejected"] | None = None,
) -> list[JSON]:
    return await engine.files.proposals(access.workspace_id, file_id, status)


@router.post("/files/{file_id}/proposals/{proposal_id}/accept")
async def accept_proposal(file_id: str, proposal_id: str, engine: EngineDep, access: Edit) -> JSON:
    """Apply it as the next revision (409 if it no longer applies)."""
    meta = metadata_for(access.principal.user_id)
    return await engine.files.accept(access.workspace_id, file_id, proposal_id, meta)


@router.post("/files/{file_id}/proposals/{proposal_id}/reject")
async def reject_proposal(
    file_id: str, proposal_id: str, body: ProposalReject, engine: EngineDep, access: Edit
) -> JSON:
    meta = metadata_for(access.principal.user_id)
    return await engine.files.reject(access.workspace_id, file_id, proposal_id, meta, body.reason)


@router.post("/files/{file_id}/assist")
async def assist_file(file_id: str, body: AssistRequest, engine: EngineDep, access: Edit) -> JSON:
    """Ask the file's assistant for a change: the instruction is a turn of the file's
    assistant session (kind `file`, made on first use), through the turn pipeline and
    its safety checks; its reply becomes an open proposal (a unified diff against the
    revision the turn saw) to accept or reject. `proposal` is null and `reason` says
    why when safety blocked the turn or the reply changes nothing or does not apply."""
    meta = metadata_for(access.principal.user_id)
    return await engine.file_assistant.assist(access.workspace_id, file_id, body.instruction, meta)
