"""Imports, exports, chat files, workspace bundles and backups.

Files travel as the raw request or response body (not multipart), so a client
can `curl --data-binary @chat.jsonl`; the upload limit
(TALEWEAVER_MAX_UPLOAD_BYTES) bounds what one upload may carry.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from taleweaver.api.deps import EngineDep, metadata_for
from taleweaver.api.interop_schemas import BundleImported, ChatImported
from taleweaver.api.security import Access, requires
from taleweaver.auth import Action
from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.sessions import MAX_TITLE_LENGTH
from taleweaver.engine.export import MEDIA_TYPES

router = APIRouter(prefix="/api/v1", tags=["interop"])

# A built-in format or one a plugin adds (GET /api/v1/formats lists them; unknown: 422).
ExportFormat = Annotated[
    str,
    Query(
        max_length=40,
        description="markdown (md), text (txt), json, jsonl (sillytavern), or a format a "
        "plugin adds: GET /api/v1/formats lists them.",
    ),
]
ImportFormat = Annotated[
    str,
    Query(
        max_length=40,
        description="sillytavern (chat JSONL), or a format an importer adds: GET "
        "/api/v1/formats lists them.",
    ),
]
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _filename(title: str, suffix: str) -> str:
    stem = _UNSAFE.sub("-", title).strip("-.")[:80] or "export"
    return f"{stem}.{suffix}"


@router.post("/sessions/import", status_code=201)
async def import_chat(
    request: Request,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SESSION_CREATE)],
    title: Annotated[str | None, Query(min_length=1, max_length=MAX_TITLE_LENGTH)] = None,
    format: ImportFormat = "sillytavern",
) -> ChatImported:
    """Import a SillyTavern chat (JSONL, as the request body) as a new companion
    session; its swipes become each reply's alternatives. Another `format` reads the
    body with that importer (a plugin's, or `taleweaver-json`: a JSON export read
    back). Nothing is written unless the whole file is valid."""
    data = await request.body()
    user = access.principal.user_id
    session = await engine.interop.import_as(
        access.workspace_id, data, format, title=title, owner_id=user, metadata=metadata_for(user)
    )
    await engine.audit.record(
        user, "session.imported", workspace_id=access.workspace_id, target=session["id"]
    )
    return ChatImported.model_validate(session)


@router.get(
    "/sessions/{session_id}/export",
    response_class=Response,
    responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}},
)
async def export_session(
    session_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SESSION_READ)],
    format: ExportFormat = "markdown",
) -> Response:
    """The session as Markdown, plain text, JSON (with its events), SillyTavern
    chat JSONL (swipes included), or a format a plugin adds."""
    exported = await engine.interop.export(access.workspace_id, session_id, format)
    session = await engine.sessions.get(access.workspace_id, session_id)
    name = _filename(session["title"], exported.suffix)
    return Response(
        exported.body,
        media_type=exported.media_type,
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


@router.get("/formats")
async def list_formats(
    engine: EngineDep, access: Annotated[Access, requires(Action.WORKSPACE_READ)]
) -> dict[str, list[dict[str, object]]]:
    """Every session export and import format: built in (plugin `taleweaver`) and
    those installed plugins add (a workspace may turn a plugin's off)."""
    described: dict[str, list[dict[str, object]]] = engine.formats.describe()
    return described


@router.get(
    "/workspaces/{workspace_id}/export",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
)
async def export_workspace(
    workspace_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.WORKSPACE_EXPORT)],
) -> Response:
    """The workspace as a bundle (zip): every event stream and feature table, to
    import elsewhere without loss."""
    data = await engine.interop.export_workspace(access.workspace_id)
    await engine.audit.record(
        access.principal.user_id, "workspace.exported", workspace_id=access.workspace_id
    )
    return Response(
        data,
        media_type="application/zip",
        headers={"content-disposition": f'attachment; filename="workspace-{workspace_id}.zip"'},
    )


@router.post("/workspaces/{workspace_id}/import", status_code=201)
async def import_workspace(
    workspace_id: str,
    request: Request,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.WORKSPACE_EXPORT)],
    ids: Literal["auto", "preserve", "remap"] = "auto",
) -> BundleImported:
    """Import a workspace bundle (the zip, as the request body) into this
    workspace. Ids are kept when free in this instance, else remapped (`ids`
    forces either); all or nothing."""
    data = await request.body()
    if not data:
        raise InvalidInput("send the bundle as the request body")
    report = await engine.interop.import_workspace(access.workspace_id, data, ids=ids)
    await engine.audit.record(
        access.principal.user_id,
        "workspace.imported",
        workspace_id=access.workspace_id,
        details={"events": report.events, "ids": report.ids},
    )
    return BundleImported.model_validate(report.to_dict())
