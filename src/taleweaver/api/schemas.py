"""Request and response bodies: separate Create / Update / Public shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from taleweaver.domain.sessions import MAX_TITLE_LENGTH, SessionKind
from taleweaver.domain.turns import MAX_INPUT_CHARS, TurnAction


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionCreate(Strict):
    kind: SessionKind
    title: str = Field(default="Untitled", min_length=1, max_length=MAX_TITLE_LENGTH)
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="Kind-specific settings: 'premise' (story), 'character' with 'name' and "
        "'description' (companion), 'world' (studio).",
    )


class SessionUpdate(Strict):
    title: str | None = Field(default=None, min_length=1, max_length=MAX_TITLE_LENGTH)
    pinned: bool | None = None
    archived: bool | None = None
    settings: dict[str, Any] | None = Field(
        default=None,
        description="Merged into the session's settings (a key set to null is removed); "
        "'lorebook_ids' must name this workspace's lorebooks.",
    )


class SessionFork(Strict):
    at_turn: int = Field(ge=0, description="The last turn the fork shares with this session.")
    title: str | None = Field(default=None, min_length=1, max_length=MAX_TITLE_LENGTH)


class SessionPublic(BaseModel):
    id: str
    kind: SessionKind
    title: str
    pinned: bool
    archived: bool
    version: int
    turn_count: int
    forked_from: str | None
    settings: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime


class SessionPage(BaseModel):
    items: list[SessionPublic]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class TurnCreate(Strict):
    text: str | None = Field(default=None, max_length=MAX_INPUT_CHARS)
    choice: int | None = Field(default=None, description="1-based number of an offered choice.")
    action: TurnAction | None = Field(
        default=None,
        description="say (text), choose (choice), continue, regenerate, or edit (text); "
        "inferred from text/choice when omitted.",
    )


class ChoicePublic(BaseModel):
    number: int
    text: str


class ReplyPublic(BaseModel):
    text: str
    choices: list[ChoicePublic]


class TurnInput(BaseModel):
    text: str | None
    choice: int | None


class SafetyPublic(BaseModel):
    level: Literal["safe", "warning", "blocked"]
    crisis: bool
    crisis_level: Literal["none", "low", "moderate", "high", "critical"]
    categories: list[str]
    action: str


class FindingPublic(BaseModel):
    id: str | None
    kind: str = Field(description="'contradiction', 'duplicate', 'timeline'...")
    summary: str
    entity_ids: list[str]


class TurnPublic(BaseModel):
    id: str
    session_id: str
    number: int
    action: TurnAction
    status: Literal["completed", "cancelled"]
    input: TurnInput
    reply: ReplyPublic | None
    safety: SafetyPublic
    continuity: list[FindingPublic] = Field(
        default_factory=list,
        description="What the continuity check found in the reply against the world's canon.",
    )
    tokens: int
    model: str
    version: int | None


class MessagePublic(BaseModel):
    id: str
    turn_id: str
    turn_number: int
    role: Literal["player", "narrator"]
    content: str
    choices: list[str]
    alternatives: list[dict[str, Any]]
    active: int
    created_at: datetime


class EventPublic(BaseModel):
    stream_id: str
    version: int
    position: int
    type: str
    schema_version: int
    payload: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime


class SearchHit(BaseModel):
    message_id: str
    session_id: str
    session_title: str
    turn_id: str
    turn_number: int
    role: str
    snippet: str
    link: str
