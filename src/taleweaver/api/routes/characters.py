"""Characters and companions: cards, relationship state, greetings, group chats."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from taleweaver.api.deps import EngineDep, metadata_for
from taleweaver.api.import_choices import OnDuplicateQuery, Reimport
from taleweaver.api.schemas import FreeJSON, SessionPublic, Strict
from taleweaver.api.security import Access, requires
from taleweaver.auth import Action
from taleweaver.domain.sessions import MAX_TITLE_LENGTH

router = APIRouter(prefix="/api/v1", tags=["characters"])

MAX_CURSOR = 2**31 - 1
_MEDIA = {"png": "image/png", "json": "application/json", "charx": "application/zip"}
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The card file as the raw body: a PNG with a 'ccv3' or 'chara' "
        "chunk, card JSON (V1, V2 or V3), or a CHARX zip. The format is told from the "
        "content, whatever the Content-Type says.",
        "content": {
            "image/png": _BINARY,
            "application/json": {"schema": {"type": "object"}},
            # A CHARX goes as application/octet-stream (or application/zip: the
            # content decides; zip is left out here only for the schema's tooling).
            "application/octet-stream": _BINARY,
        },
    }
}


class AssetPublic(BaseModel):
    kind: Literal["image", "file"]
    path: str
    media_type: str
    size: int


class CharacterSummary(BaseModel):
    id: str
    name: str
    display_name: str
    format: Literal["png", "json", "charx"]
    spec: Literal["v1", "v2", "v3"]
    tags: list[str]
    lorebook_id: str | None
    created_at: datetime
    updated_at: datetime


class CharacterPublic(CharacterSummary):
    card: dict[str, Any] = Field(description="The card as V3 JSON, unknown keys kept.")
    taleweaver: dict[str, Any] = Field(description="Voice, avatar and 3D model URLs.")
    edited: bool
    has_avatar: bool
    assets: list[AssetPublic]


class CharacterImported(CharacterPublic):
    duplicate: Reimport | None = Field(
        default=None, description="Set when the card matched a character already imported."
    )


class CharacterPage(BaseModel):
    items: list[CharacterSummary]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class CharacterUpdate(Strict):
    """Card fields to replace (V2/V3 names), and Taleweaver's own settings."""

    name: str | None = Field(default=None, min_length=1, max_length=500)
    nickname: str | None = None
    description: str | None = None
    personality: str | None = None
    scenario: str | None = None
    first_mes: str | None = None
    mes_example: str | None = None
    creator_notes: str | None = None
    system_prompt: str | None = None
    post_history_instructions: str | None = None
    creator: str | None = None
    character_version: str | None = None
    alternate_greetings: list[str] | None = None
    group_only_greetings: list[str] | None = None
    tags: list[str] | None = None
    extensions: dict[str, Any] | None = None
    character_book: dict[str, Any] | None = None
    voice: dict[str, Any] | None = None
    avatar_url: str | None = Field(default=None, max_length=2000)
    model_url: str | None = Field(default=None, max_length=2000)


class RelationshipPublic(BaseModel):
    character_id: str
    user_id: str
    affinity: float = Field(description="0 to 100; 50 to begin with.")
    trust: float = Field(description="0 to 100; 50 to begin with.")
    mood: str
    recent: list[int] = Field(description="Tone of the player's last few messages.")
    turns: int = Field(description="How many of the player's messages were scored.")


class CompanionSessionCreate(Strict):
    title: str | None = Field(default=None, min_length=1, max_length=MAX_TITLE_LENGTH)
    greeting: int | None = Field(
        default=None,
        ge=0,
        le=MAX_CURSOR,
        description="Which greeting opens the chat: 0 is first_mes, then the alternates "
        "(then, in a group chat, the group-only ones). Unset: a choice seeded by the session.",
    )
    with_characters: list[str] = Field(
        default_factory=list,
        max_length=15,
        description="More characters for a group chat; this character greets first.",
    )
    settings: FreeJSON = Field(default_factory=dict)


def _filename(name: str, fmt: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "character"
    return f"{slug[:80]}.{fmt}"


@router.post(
    "/characters/import",
    status_code=201,
    openapi_extra=_IMPORT_BODY,
    summary="Import a character card (PNG, JSON or CHARX)",
)
async def import_character(
    request: Request,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.CHARACTER_EDIT)],
    filename: Annotated[str | None, Query(max_length=255)] = None,
    on_duplicate: OnDuplicateQuery = None,
) -> CharacterImported:
    data = await request.body()
    created = await engine.characters.import_card(
        access.workspace_id,
        data,
        filename=filename,
        on_duplicate=on_duplicate or "ask",
        actor=access.principal.user_id,
    )
    return CharacterImported.model_validate(created)


@router.get("/characters")
async def list_characters(
    engine: EngineDep,
    access: Annotated[Access, requires(Action.CHARACTER_READ)],
    tag: Annotated[str | None, Query(max_length=200)] = None,
    name: Annotated[str | None, Query(max_length=200, description="Part of the name.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_CURSOR)] = 0,
) -> CharacterPage:
    rows, total = await engine.characters.page(
        access.workspace_id, tag=tag, name=name, limit=limit, offset=offset
    )
    return CharacterPage(
        items=[CharacterSummary.model_validate(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
        next_offset=offset + limit if offset + limit < total else None,
    )


@router.get("/characters/{character_id}")
async def get_character(
    character_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.CHARACTER_READ)],
) -> CharacterPublic:
    found = await engine.characters.get(access.workspace_id, character_id)
    return CharacterPublic.model_validate(found)


@router.patch("/characters/{character_id}")
async def update_character(
    character_id: str,
    body: CharacterUpdate,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.CHARACTER_EDIT)],
) -> CharacterPublic:
    updated = await engine.characters.update(
        access.workspace_id,
        character_id,
        body.model_dump(exclude_unset=True),
        actor=access.principal.user_id,
    )
    return CharacterPublic.model_validate(updated)


@router.delete("/characters/{character_id}", status_code=204)
async def delete_character(
    character_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.CHARACTER_EDIT)],
) -> Response:
    await engine.characters.delete(
        access.workspace_id, character_id, actor=access.principal.user_id
    )
    return Response(status_code=204)


@router.get(
    "/characters/{character_id}/export",
    response_class=Response,
    responses={200: {"content": {media: _BINARY for media in _MEDIA.values()}}},
)
async def export_character(
    character_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.CHARACTER_READ)],
    fmt: Annotated[Literal["png", "json", "charx"], Query(alias="format")] = "png",
    relationship: Annotated[
        bool, Query(description="Write your relationship state into the card.")
    ] = False,
) -> Response:
    found = await engine.characters.get(access.workspace_id, character_id)
    data = await engine.characters.export_card(
        access.workspace_id,
        character_id,
        fmt,
        relationships_for=[access.principal.user_id] if relationship else [],
    )
    disposition = f'attachment; filename="{_filename(found["name"], fmt)}"'
    return Response(data, media_type=_MEDIA[fmt], headers={"Content-Disposition": disposition})


@router.get(
    "/characters/{character_id}/avatar",
    response_class=Response,
    responses={200: {"content": {"image/*": _BINARY}}},
)
async def character_avatar(
    character_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.CHARACTER_READ)],
) -> Response:
    media_type, data = await engine.characters.avatar(access.workspace_id, character_id)
    return Response(data, media_type=media_type)


@router.get("/characters/{character_id}/relationship")
async def character_relationship(
    character_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.CHARACTER_READ)],
) -> RelationshipPublic:
    """The calling user's relationship with the character, caught up to the last turn."""
    found = await engine.characters.relationship(
        access.workspace_id, character_id, access.principal.user_id
    )
    return RelationshipPublic.model_validate(found)


@router.post("/characters/{character_id}/sessions", status_code=201)
async def start_companion_session(
    character_id: str,
    body: CompanionSessionCreate,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SESSION_CREATE)],
) -> SessionPublic:
    """A companion session with this character (and any others, for a group chat),
    opened by its greeting, its embedded lorebook linked."""
    user = access.principal.user_id
    session_id = await engine.characters.start_session(
        access.workspace_id,
        [character_id, *body.with_characters],
        owner_id=user,
        title=body.title,
        greeting=body.greeting,
        settings=body.settings,
        metadata=metadata_for(user),
    )
    return SessionPublic.model_validate(await engine.sessions.get(access.workspace_id, session_id))
