"""Request and response bodies: separate Create / Update / Public shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from taleweaver.api.strictness import lax_text_types
from taleweaver.domain.json_values import free_json_problem
from taleweaver.domain.sessions import MAX_TITLE_LENGTH, SessionKind
from taleweaver.domain.turns import MAX_INPUT_CHARS, TurnAction


class Strict(BaseModel):
    """A request body: unknown fields refused, and no coercion: `"2"` and `true` are
    not numbers, `1` is not a boolean. Enums and dates still come as strings."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        changed = False
        for info in cls.model_fields.values():
            lax = lax_text_types(info.annotation)
            if lax is not info.annotation:
                info.annotation, changed = lax, True
        if changed:
            cls.model_rebuild(force=True)


def _bounded(value: dict[str, Any]) -> dict[str, Any]:
    wrong = free_json_problem(value)
    if wrong is not None:
        raise ValueError(wrong)
    return value


# Free-form JSON a client stores (session and world settings): the guard already
# refuses NUL, surrogates, NaN and depth past 64; this bounds it further.
FreeJSON = Annotated[dict[str, Any], AfterValidator(_bounded)]


class SessionCreate(Strict):
    kind: SessionKind
    title: str = Field(default="Untitled", min_length=1, max_length=MAX_TITLE_LENGTH)
    settings: FreeJSON = Field(
        default_factory=dict,
        description="Kind-specific settings: 'premise' (story), 'character' with 'name' and "
        "'description' (companion), 'world' (studio).",
    )


class SessionUpdate(Strict):
    title: str | None = Field(default=None, min_length=1, max_length=MAX_TITLE_LENGTH)
    pinned: bool | None = None
    archived: bool | None = None
    settings: FreeJSON | None = Field(
        default=None,
        description="Merged into the session's settings (a key set to null is removed); "
        "'lorebook_ids' must name this workspace's lorebooks.",
    )


class MessageUpdate(Strict):
    active: int = Field(
        ge=0,
        le=10_000,
        description="Which telling of the last reply the story goes on from (an index "
        "into its alternatives).",
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
