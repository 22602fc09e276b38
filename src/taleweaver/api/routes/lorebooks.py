"""Lorebooks: keyword-activated context, imported and exported in the formats users bring."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response
from pydantic import BaseModel, Field

from taleweaver.api.deps import EngineDep, metadata_for
from taleweaver.api.import_choices import OnDuplicateQuery, Reimport
from taleweaver.api.schemas import Strict
from taleweaver.api.security import Access, requires
from taleweaver.auth import Action
from taleweaver.domain.lorebook import Logic, Position, Role

router = APIRouter(prefix="/api/v1", tags=["lorebooks"])

Format = Literal["sillytavern", "lorebook_v3", "character_book", "novelai"]
Trigger = Literal["normal", "continue", "impersonate", "swipe", "regenerate", "quiet"]
MAX_TEXT = 100_000


class LorebookSummary(BaseModel):
    id: str
    name: str
    format: str
    entries: int
    world_id: str | None


class LorebookImported(LorebookSummary):
    duplicate: Reimport | None = Field(
        default=None, description="Set when the file matched a book already imported."
    )


class LorebookPublic(LorebookSummary):
    version: int
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class LorebookDetail(LorebookPublic):
    items: list[dict[str, Any]] = Field(description="The entries, in Taleweaver's field names.")


class BookSettingsUpdate(Strict):
    scan_depth: int | None = Field(default=None, ge=0, le=1000)
    token_budget: int | None = Field(default=None, ge=1)
    recursive: bool | None = None
    max_recursion_steps: int | None = Field(default=None, ge=0, le=64)
    case_sensitive: bool | None = None
    match_whole_words: bool | None = None
    use_group_scoring: bool | None = None


class LorebookUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    world_id: str | None = Field(default=None, min_length=1, max_length=64)
    settings: BookSettingsUpdate | None = None


class EntryFields(Strict):
    """An entry's fields; on update, only those sent change."""

    keys: list[str] | None = None
    secondary_keys: list[str] | None = None
    content: str | None = Field(default=None, max_length=MAX_TEXT)
    comment: str | None = Field(default=None, max_length=1000)
    enabled: bool | None = None
    constant: bool | None = None
    selective: bool | None = None
    logic: Logic | None = None
    order: int | None = Field(default=None, ge=-(2**31), lt=2**31)
    position: Position | None = None
    depth: int | None = Field(default=None, ge=0, le=10_000)
    role: Role | None = None
    scan_depth: int | None = Field(default=None, ge=0, le=1000)
    case_sensitive: bool | None = None
    match_whole_words: bool | None = None
    use_group_scoring: bool | None = None
    exclude_recursion: bool | None = None
    prevent_recursion: bool | None = None
    delay_until_recursion: int | None = Field(default=None, ge=0, le=1000)
    probability: int | None = Field(default=None, ge=0, le=100)
    use_probability: bool | None = None
    group: str | None = Field(default=None, max_length=1000)
    group_override: bool | None = None
    group_weight: int | None = Field(default=None, ge=0, le=1_000_000)
    sticky: int | None = Field(default=None, ge=0, le=100_000)
    cooldown: int | None = Field(default=None, ge=0, le=100_000)
    delay: int | None = Field(default=None, ge=0, le=100_000)
    ignore_budget: bool | None = None
    character_filter_names: list[Annotated[str, Field(max_length=200)]] | None = Field(
        default=None, max_length=500, description="Only for these characters (names)."
    )
    character_filter_tags: list[Annotated[str, Field(max_length=200)]] | None = Field(
        default=None, max_length=500, description="Only for characters with one of these tags."
    )
    character_filter_exclude: bool | None = Field(
        default=None, description="The filter lists characters the entry is never for."
    )
    triggers: list[Trigger] | None = Field(
        default=None, description="Only for these generation types; empty: for all."
    )
    outlet_name: str | None = Field(
        default=None,
        max_length=200,
        description="With position 'outlet': where {{outlet::name}} places the content.",
    )

    def changes(self) -> dict[str, Any]:
        """What was sent; an explicit null resets an optional setting to the book's."""
        sent = self.model_dump(mode="json", exclude_unset=True)
        resettable = {"scan_depth", "case_sensitive", "match_whole_words", "use_group_scoring"}
        return {k: v for k, v in sent.items() if v is not None or k in resettable}


class EntryCreate(EntryFields):
    uid: str | None = Field(default=None, min_length=1, max_length=200)
    content: str = Field(max_length=MAX_TEXT)


class DryRunMessage(Strict):
    role: Literal["player", "narrator"]
    text: str = Field(max_length=MAX_TEXT)


class DryRun(Strict):
    messages: list[DryRunMessage | str] = Field(
        default_factory=list,
        max_length=1000,
        description="Recent messages, oldest first: plain strings alternate player and "
        "narrator, ending with the narrator's.",
    )
    text: str | None = Field(default=None, max_length=MAX_TEXT, description="The player's words.")
    seed: str = Field(default="dry-run", max_length=200, description="Fixes probability rolls.")

    def pairs(self) -> list[tuple[str, str]]:
        count = len(self.messages)
        pairs: list[tuple[str, str]] = []
        for index, message in enumerate(self.messages):
            if isinstance(message, str):
                # Counted back from the end: the last message is the narrator's.
                role = "narrator" if (count - index) % 2 == 1 else "player"
                pairs.append((role, message))
            else:
                pairs.append((message.role, message.text))
        return pairs


class DryRunEntry(BaseModel):
    ref: str
    uid: str
    comment: str
    reason: str
    step: int
    matched: list[str]
    position: str
    content: str


class DryRunSkipped(BaseModel):
    ref: str
    uid: str
    why: str


class DryRunResult(BaseModel):
    activated: list[DryRunEntry]
    cut: list[DryRunSkipped]
    rejected: list[DryRunSkipped]
    steps: int


@router.post("/lorebooks/import", status_code=201)
async def import_lorebook(
    engine: EngineDep,
    access: Annotated[Access, requires(Action.WORLD_EDIT)],
    body: Annotated[
        dict[str, Any],
        Body(
            description="The lorebook file's JSON: SillyTavern World Info, a character card "
            "or its character_book, a lorebook_v3 file, or a NovelAI lorebook."
        ),
    ],
    world_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    name: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    filename: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=255,
            description="The file's name: what the book is called when it has no name field.",
        ),
    ] = None,
    on_duplicate: OnDuplicateQuery = None,
) -> LorebookImported:
    if world_id is not None:  # NotFound for a world not in this workspace
        await engine.world.bible.world(access.workspace_id, world_id)
    summary = await engine.lorebooks.import_book(
        access.workspace_id,
        body,
        world_id=world_id,
        name=name,
        filename=filename,
        on_duplicate=on_duplicate or "ask",
        actor=access.principal.user_id,
    )
    return LorebookImported.model_validate(summary)


@router.get("/lorebooks")
async def list_lorebooks(
    engine: EngineDep,
    access: Annotated[Access, requires(Action.WORLD_READ)],
    world_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> list[LorebookPublic]:
    books = await engine.lorebooks.list_books(access.workspace_id, world_id=world_id)
    return [LorebookPublic.model_validate(b) for b in books]


@router.get("/lorebooks/{lorebook_id}")
async def get_lorebook(
    lorebook_id: str, engine: EngineDep, access: Annotated[Access, requires(Action.WORLD_READ)]
) -> LorebookDetail:
    return LorebookDetail.model_validate(
        await engine.lorebooks.get_book(access.workspace_id, lorebook_id)
    )


@router.patch("/lorebooks/{lorebook_id}")
async def update_lorebook(
    lorebook_id: str,
    body: LorebookUpdate,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.WORLD_EDIT)],
) -> LorebookPublic:
    changes = body.model_dump(exclude_unset=True)
    if body.settings is not None:
        changes["settings"] = body.settings.model_dump(exclude_unset=True)
    updated = await engine.lorebooks.update_book(
        access.workspace_id, lorebook_id, changes, actor=access.principal.user_id
    )
    return LorebookPublic.model_validate(updated)


@router.delete("/lorebooks/{lorebook_id}", status_code=204)
async def delete_lorebook(
    lorebook_id: str, engine: EngineDep, access: Annotated[Access, requires(Action.WORLD_EDIT)]
) -> Response:
    await engine.lorebooks.delete_book(
        access.workspace_id, lorebook_id, actor=access.principal.user_id
    )
    return Response(status_code=204)


@router.get("/lorebooks/{lorebook_id}/export")
async def export_lorebook(
    lorebook_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.WORLD_READ)],
    format: Format = "sillytavern",
) -> dict[str, Any]:
    """The book as a file in the chosen format; in the format it came in, the same JSON."""
    return await engine.lorebooks.export_book(access.workspace_id, lorebook_id, format)


@router.post("/lorebooks/{lorebook_id}/entries", status_code=201)
async def add_entry(
    lorebook_id: str,
    body: EntryCreate,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.WORLD_EDIT)],
) -> dict[str, Any]:
    fields = body.changes()
    return await engine.lorebooks.add_entry(
        access.workspace_id, lorebook_id, fields, actor=access.principal.user_id
    )


@router.patch("/lorebooks/{lorebook_id}/entries/{uid}")
async def update_entry(
    lorebook_id: str,
    uid: str,
    body: EntryFields,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.WORLD_EDIT)],
) -> dict[str, Any]:
    return await engine.lorebooks.update_entry(
        access.workspace_id, lorebook_id, uid, body.changes(), actor=access.principal.user_id
    )


@router.delete("/lorebooks/{lorebook_id}/entries/{uid}", status_code=204)
async def delete_entry(
    lorebook_id: str,
    uid: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.WORLD_EDIT)],
) -> Response:
    await engine.lorebooks.delete_entry(
        access.workspace_id, lorebook_id, uid, actor=access.principal.user_id
    )
    return Response(status_code=204)


@router.post("/lorebooks/{lorebook_id}/activate")
async def dry_run(
    lorebook_id: str,
    body: DryRun,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.WORLD_READ)],
) -> DryRunResult:
    """Which entries would activate for these messages, and why. Nothing is stored."""
    result = await engine.lorebooks.dry_run(
        access.workspace_id, lorebook_id, messages=body.pairs(), text=body.text, seed=body.seed
    )
    return DryRunResult.model_validate(result)


# --- a session's lorebooks -------------------------------------------------------------


class SessionLorebook(LorebookSummary):
    attached: Literal["session", "world"] = Field(
        description="'session': one of the session's own books (settings.lorebook_ids); "
        "'world': attached to the session's world."
    )


class LorebookAttach(Strict):
    lorebook_id: str = Field(min_length=1, max_length=64)
    position: int | None = Field(
        default=None, ge=0, le=64, description="Where among the session's own books; unset: last."
    )


class LorebookOrder(Strict):
    lorebook_ids: list[str] = Field(max_length=64, description="Each of the session's own books.")


SessionRead = Annotated[Access, requires(Action.SESSION_READ)]
SessionEdit = Annotated[Access, requires(Action.SESSION_UPDATE)]


def _books(found: list[dict[str, Any]]) -> list[SessionLorebook]:
    return [SessionLorebook.model_validate(b) for b in found]


@router.get("/sessions/{session_id}/lorebooks")
async def list_session_lorebooks(
    session_id: str, engine: EngineDep, access: SessionRead
) -> list[SessionLorebook]:
    """The books the session consults, in the order activation reads them: its own
    first, then its world's."""
    return _books(await engine.session_lorebooks.books(access.workspace_id, session_id))


@router.post("/sessions/{session_id}/lorebooks", status_code=201)
async def attach_session_lorebook(
    session_id: str, body: LorebookAttach, engine: EngineDep, access: SessionEdit
) -> list[SessionLorebook]:
    """Attach a book to the session (attaching one already attached moves it)."""
    found = await engine.session_lorebooks.attach(
        access.workspace_id,
        session_id,
        body.lorebook_id,
        position=body.position,
        metadata=metadata_for(access.principal.user_id),
    )
    return _books(found)


@router.put("/sessions/{session_id}/lorebooks")
async def reorder_session_lorebooks(
    session_id: str, body: LorebookOrder, engine: EngineDep, access: SessionEdit
) -> list[SessionLorebook]:
    """Put the session's own books in a new order."""
    found = await engine.session_lorebooks.reorder(
        access.workspace_id,
        session_id,
        body.lorebook_ids,
        metadata=metadata_for(access.principal.user_id),
    )
    return _books(found)


@router.delete("/sessions/{session_id}/lorebooks/{lorebook_id}")
async def detach_session_lorebook(
    session_id: str, lorebook_id: str, engine: EngineDep, access: SessionEdit
) -> list[SessionLorebook]:
    """Detach one of the session's own books; what it still consults comes back."""
    meta = metadata_for(access.principal.user_id)
    found = await engine.session_lorebooks.detach(
        access.workspace_id, session_id, lorebook_id, metadata=meta
    )
    return _books(found)
