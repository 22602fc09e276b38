"""The therapeutic layer: profiles, goals, markers, assessments, progress, export.

Every route about a player is keyed by them (`me` stands for the caller). A player
reaches only their own records, a therapist also their assigned players', owners
and admins everyone's in the workspace; someone else's records answer 404, as a
session they may not see does.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from taleweaver.api.dates import DATE_RANGE, UtcDateTime
from taleweaver.api.deps import EngineDep
from taleweaver.api.schemas import Strict
from taleweaver.api.security import SELF, Access, requires
from taleweaver.auth import Action, Role, may_see
from taleweaver.config import MAX_RETENTION_DAYS
from taleweaver.domain.errors import NotFound
from taleweaver.domain.therapy import (
    ANSWER_MAX,
    MAX_INTENSITY,
    MAX_NOTE_CHARS,
    MAX_TITLE_CHARS,
    MAX_TOPIC_CHARS,
    MAX_TOPICS,
    MIN_INTENSITY,
    Approach,
    GoalStatus,
    Instrument,
    MarkerType,
    ProfileInput,
    WorldParams,
)
from taleweaver.engine import Engine

router = APIRouter(prefix="/api/v1", tags=["therapy"])

PlayerId = Annotated[
    str, Path(min_length=1, max_length=64, description="A user id, or 'me' for yourself.")
]
Topic = Annotated[str, Field(min_length=1, max_length=MAX_TOPIC_CHARS)]


# --- bodies ---------------------------------------------------------------------------


class CrisisContact(Strict):
    name: str = Field(min_length=1, max_length=200)
    phone: str | None = Field(default=None, max_length=50)
    email: str | None = Field(default=None, max_length=320)
    relation: str | None = Field(default=None, max_length=100)


class ConsentIn(Strict):
    therapy_data: bool = Field(
        description="Agree to therapy data (goals, markers, assessments) being stored."
    )
    emotion_tracking: bool = Field(
        default=False, description="Also read emotions from your words in therapy sessions."
    )


class ProfileUpdate(Strict):
    approaches: list[Approach] = Field(default_factory=list, max_length=len(Approach))
    intensity: int = Field(default=2, ge=MIN_INTENSITY, le=MAX_INTENSITY)
    avoid_topics: list[Topic] = Field(default_factory=list, max_length=MAX_TOPICS)
    crisis_contacts: list[CrisisContact] = Field(default_factory=list, max_length=5)
    consent: ConsentIn
    retention_days: int | None = Field(default=None, ge=1, le=MAX_RETENTION_DAYS)


class ConsentPublic(BaseModel):
    therapy_data: bool
    emotion_tracking: bool
    at: datetime
    by: str


class ProfilePublic(BaseModel):
    user_id: str
    approaches: list[Approach]
    intensity: int
    avoid_topics: list[str]
    crisis_contacts: list[dict[str, Any]]
    consent: ConsentPublic
    retention_days: int
    created_at: datetime
    updated_at: datetime


class GoalCreate(Strict):
    title: str = Field(min_length=1, max_length=MAX_TITLE_CHARS)
    description: str = Field(default="", max_length=MAX_NOTE_CHARS)
    approach: Approach | None = None
    progress: int = Field(default=0, ge=0, le=100)


class GoalUpdate(Strict):
    title: str | None = Field(default=None, min_length=1, max_length=MAX_TITLE_CHARS)
    description: str | None = Field(default=None, max_length=MAX_NOTE_CHARS)
    progress: int | None = Field(default=None, ge=0, le=100)
    status: GoalStatus | None = None


class GoalPublic(BaseModel):
    id: str
    title: str
    description: str
    approach: Approach | None
    progress: int
    status: GoalStatus
    created_at: datetime
    updated_at: datetime


class MarkerCreate(Strict):
    type: MarkerType
    note: str = Field(default="", max_length=MAX_NOTE_CHARS)
    goal_id: str | None = Field(default=None, max_length=64)


class MarkerPublic(BaseModel):
    id: str
    type: MarkerType
    note: str
    goal_id: str | None
    session_id: str | None
    turn_number: int | None
    source: str
    at: datetime


class AssessmentCreate(Strict):
    instrument: Instrument
    answers: list[Annotated[int, Field(ge=0, le=ANSWER_MAX)]] = Field(
        min_length=1, max_length=9, description="One answer per item: 0 (not at all) to 3."
    )


class AssessmentPublic(BaseModel):
    id: str | None = Field(description="None when nothing was stored (no consent).")
    instrument: Instrument
    answers: list[int]
    score: int
    severity: str
    taken_at: datetime


class CrisisPublic(BaseModel):
    message: str
    resources: list[dict[str, str]]


class AssessmentResult(AssessmentPublic):
    stored: bool
    crisis: CrisisPublic | None = Field(
        description="Set when an answer raised the crisis protocol: show it to the player."
    )


class EmotionPublic(BaseModel):
    session_id: str
    turn_number: int
    valence: float
    arousal: float
    emotions: dict[str, float]
    at: datetime


class GoalPoint(BaseModel):
    start: date
    progress: int


class GoalSeries(BaseModel):
    goal_id: str
    title: str
    points: list[GoalPoint]


class CountPoint(BaseModel):
    start: date
    count: int


class MarkerSeries(BaseModel):
    type: MarkerType
    points: list[CountPoint]


class ScorePoint(BaseModel):
    start: date
    count: int
    mean: float
    last: int
    severity: str


class AssessmentSeries(BaseModel):
    instrument: Instrument
    points: list[ScorePoint]


class EmotionPoint(BaseModel):
    start: date
    turns: int
    valence: float
    arousal: float
    dominant: str | None


class ProgressPublic(BaseModel):
    bucket: Literal["day", "week", "month"]
    goals: list[GoalSeries]
    markers: list[MarkerSeries]
    assessments: list[AssessmentSeries]
    emotions: list[EmotionPoint]


class WorldParamsIn(Strict):
    intensity: int = Field(default=2, ge=MIN_INTENSITY, le=MAX_INTENSITY)
    pace: Literal["slow", "moderate", "fast"] = "moderate"
    focus_topics: list[Topic] = Field(default_factory=list, max_length=MAX_TOPICS)
    avoid_topics: list[Topic] = Field(default_factory=list, max_length=MAX_TOPICS)


class CompatibilityRequest(Strict):
    user_id: str = Field(
        default="me", min_length=1, max_length=64, description="The player, or 'me'."
    )
    world: WorldParamsIn


class ConflictPublic(BaseModel):
    kind: str
    detail: str


class CompatibilityPublic(BaseModel):
    compatible: bool
    conflicts: list[ConflictPublic]


class InstrumentPublic(BaseModel):
    instrument: Instrument
    name: str
    question: str
    items: list[str]
    answers: list[str]


class FollowedPlayer(BaseModel):
    user_id: str
    email: str
    display_name: str | None
    open_flags: int = Field(description="Crisis flags of theirs not yet acknowledged.")


class FlagPublic(BaseModel):
    id: str
    user_id: str
    session_id: str | None
    level: str
    categories: list[str]
    source: str
    paused: bool
    status: str
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None


# --- whose records --------------------------------------------------------------------


async def _player(engine: Engine, access: Access, user_id: str) -> str:
    """The player a route names, once the caller may act on their records."""
    player = access.principal.user_id if user_id == "me" else user_id
    if not may_see(access.decision, player):
        raise NotFound(f"player {user_id} not found")
    if await engine.accounts.role_of(player, access.workspace_id) is None:
        raise NotFound(f"player {user_id} not found")
    return player


ReadAccess = Annotated[Access, requires(Action.THERAPY_READ)]
WriteAccess = Annotated[Access, requires(Action.THERAPY_WRITE)]


# --- profile --------------------------------------------------------------------------


@router.get("/players/{user_id}/profile")
async def get_profile(user_id: PlayerId, engine: EngineDep, access: ReadAccess) -> ProfilePublic:
    player = await _player(engine, access, user_id)
    return ProfilePublic.model_validate(await engine.therapy.profile(access.workspace_id, player))


@router.put("/players/{user_id}/profile")
async def put_profile(
    user_id: PlayerId, body: ProfileUpdate, engine: EngineDep, access: WriteAccess
) -> ProfilePublic:
    """Set preferences, crisis contacts, retention and consent. Without
    `consent.therapy_data` only the refusal is kept, and withdrawing it deletes every
    therapy record of the player."""
    player = await _player(engine, access, user_id)
    data = ProfileInput(
        approaches=list(body.approaches),
        intensity=body.intensity,
        avoid_topics=list(body.avoid_topics),
        crisis_contacts=[c.model_dump(exclude_none=True) for c in body.crisis_contacts],
        therapy_data=body.consent.therapy_data,
        emotion_tracking=body.consent.emotion_tracking,
        retention_days=body.retention_days,
    )
    saved = await engine.therapy.put_profile(
        access.workspace_id, player, data, actor=access.principal.user_id
    )
    return ProfilePublic.model_validate(saved)


# --- goals ----------------------------------------------------------------------------


@router.get("/players/{user_id}/goals")
async def list_goals(user_id: PlayerId, engine: EngineDep, access: ReadAccess) -> list[GoalPublic]:
    player = await _player(engine, access, user_id)
    return [
        GoalPublic.model_validate(g)
        for g in await engine.therapy.goals(access.workspace_id, player)
    ]


@router.post("/players/{user_id}/goals", status_code=201)
async def create_goal(
    user_id: PlayerId, body: GoalCreate, engine: EngineDep, access: WriteAccess
) -> GoalPublic:
    player = await _player(engine, access, user_id)
    goal = await engine.therapy.create_goal(
        access.workspace_id,
        player,
        title=body.title,
        description=body.description,
        approach=str(body.approach) if body.approach else None,
        progress=body.progress,
    )
    return GoalPublic.model_validate(goal)


@router.patch("/players/{user_id}/goals/{goal_id}")
async def update_goal(
    user_id: PlayerId,
    goal_id: Annotated[str, Path(max_length=64)],
    body: GoalUpdate,
    engine: EngineDep,
    access: WriteAccess,
) -> GoalPublic:
    player = await _player(engine, access, user_id)
    goal = await engine.therapy.update_goal(
        access.workspace_id, player, goal_id, **body.model_dump(exclude_unset=True)
    )
    return GoalPublic.model_validate(goal)


@router.delete("/players/{user_id}/goals/{goal_id}", status_code=204)
async def delete_goal(
    user_id: PlayerId,
    goal_id: Annotated[str, Path(max_length=64)],
    engine: EngineDep,
    access: WriteAccess,
) -> Response:
    player = await _player(engine, access, user_id)
    await engine.therapy.delete_goal(access.workspace_id, player, goal_id)
    return Response(status_code=204)


# --- markers --------------------------------------------------------------------------


@router.get("/players/{user_id}/markers")
async def list_markers(
    user_id: PlayerId, engine: EngineDep, access: ReadAccess
) -> list[MarkerPublic]:
    """Progress markers, newest first: recorded by hand, or earned in therapy sessions."""
    player = await _player(engine, access, user_id)
    found = await engine.therapy.markers(access.workspace_id, player)
    return [MarkerPublic.model_validate(m) for m in found]


@router.post("/players/{user_id}/markers", status_code=201)
async def create_marker(
    user_id: PlayerId, body: MarkerCreate, engine: EngineDep, access: WriteAccess
) -> MarkerPublic:
    player = await _player(engine, access, user_id)
    marker = await engine.therapy.create_marker(
        access.workspace_id, player, body.type, note=body.note, goal_id=body.goal_id
    )
    return MarkerPublic.model_validate(marker)


# --- assessments ----------------------------------------------------------------------


@router.get("/players/{user_id}/assessments")
async def list_assessments(
    user_id: PlayerId, engine: EngineDep, access: ReadAccess
) -> list[AssessmentPublic]:
    player = await _player(engine, access, user_id)
    found = await engine.therapy.assessments(access.workspace_id, player)
    return [AssessmentPublic.model_validate(a) for a in found]


@router.post("/players/{user_id}/assessments", status_code=201)
async def take_assessment(
    user_id: PlayerId, body: AssessmentCreate, engine: EngineDep, access: WriteAccess
) -> AssessmentResult:
    """Score a PHQ-9 or GAD-7. Any answer above 0 to PHQ-9 item 9 raises the crisis
    protocol, and its supportive message and resources come back in `crisis`."""
    player = await _player(engine, access, user_id)
    outcome = await engine.therapy.take_assessment(
        access.workspace_id, player, body.instrument, list(body.answers)
    )
    crisis = None
    if outcome.crisis is not None:
        crisis = CrisisPublic(message=outcome.crisis.message, resources=outcome.crisis.resources)
    return AssessmentResult.model_validate(
        outcome.record | {"stored": outcome.stored, "crisis": crisis}
    )


# --- emotions, progress, export -------------------------------------------------------


@router.get("/players/{user_id}/emotions")
async def list_emotions(
    user_id: PlayerId,
    engine: EngineDep,
    access: ReadAccess,
    limit: Annotated[int, Query(ge=1, le=2000)] = 500,
) -> list[EmotionPublic]:
    """The emotional state read from the player's words, turn by turn, oldest first."""
    player = await _player(engine, access, user_id)
    found = await engine.therapy.emotions(access.workspace_id, player, limit=limit)
    return [EmotionPublic.model_validate(e) for e in found]


@router.get("/players/{user_id}/progress")
async def get_progress(
    user_id: PlayerId,
    engine: EngineDep,
    access: ReadAccess,
    bucket: Literal["day", "week", "month"] = "week",
    since: Annotated[
        UtcDateTime | None, Query(description=f"Only records from then on ({DATE_RANGE}).")
    ] = None,
) -> ProgressPublic:
    """Goals' progress, marker counts, assessment scores and emotional state over time."""
    player = await _player(engine, access, user_id)
    report = await engine.therapy.progress(access.workspace_id, player, bucket, since)
    return ProgressPublic.model_validate(report)


@router.get("/players/{user_id}/export")
async def export_player(user_id: PlayerId, engine: EngineDep, access: ReadAccess) -> dict[str, Any]:
    """Everything stored about the player, their sessions and messages included."""
    player = await _player(engine, access, user_id)
    return await engine.therapy.export(access.workspace_id, player, actor=access.principal.user_id)


@router.post("/players/{user_id}/flags/{flag_id}/acknowledge")
async def acknowledge_flag(
    user_id: PlayerId,
    flag_id: Annotated[str, Path(max_length=64)],
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SAFETY_REVIEW)],
) -> FlagPublic:
    """Mark a player's crisis flag as seen and handled (a therapist: their assigned
    players' only). A flag that pauses a session is lifted by resuming it (409)."""
    player = await _player(engine, access, user_id)
    async with engine.db.write() as conn:
        flag = await engine.safety.flags.acknowledge(
            access.workspace_id, player, flag_id, actor=access.principal.user_id, conn=conn
        )
        await engine.audit.record(
            access.principal.user_id,
            "safety.flag_acknowledged",
            workspace_id=access.workspace_id,
            target=player,
            details={"flag": flag_id},
            conn=conn,
        )
    return FlagPublic.model_validate(flag)


# --- about no one player ----------------------------------------------------------------


@router.post("/therapy/compatibility")
async def check_compatibility(
    body: CompatibilityRequest, engine: EngineDep, access: ReadAccess
) -> CompatibilityPublic:
    """Whether a world's parameters suit a player's profile, or what does not fit."""
    player = await _player(engine, access, body.user_id)
    world = WorldParams(
        intensity=body.world.intensity,
        pace=body.world.pace,
        focus_topics=tuple(body.world.focus_topics),
        avoid_topics=tuple(body.world.avoid_topics),
    )
    found = await engine.therapy.compatibility(access.workspace_id, player, world)
    return CompatibilityPublic(
        compatible=not found,
        conflicts=[ConflictPublic(kind=c.kind, detail=c.detail) for c in found],
    )


@router.get("/therapy/players")
async def followed_players(
    engine: EngineDep, access: Annotated[Access, requires(Action.MEMBERS_READ)]
) -> list[FollowedPlayer]:
    """The players whose therapy records you follow, with their open crisis flags: a
    therapist's assigned players, every player for owners and admins, none otherwise."""
    members = await engine.accounts.members(access.workspace_id)
    if access.role == Role.THERAPIST:
        assigned = await engine.accounts.assigned_players(
            access.workspace_id, access.principal.user_id
        )
        chosen = [m for m in members if m["user_id"] in assigned]
    elif access.role in (Role.OWNER, Role.ADMIN):
        chosen = [m for m in members if m["role"] == Role.PLAYER]
    else:
        chosen = []
    ids = [m["user_id"] for m in chosen]
    flags = (
        await engine.safety.flags.list(access.workspace_id, users=ids, status="open", limit=500)
        if ids
        else []
    )
    return [
        FollowedPlayer(
            user_id=m["user_id"],
            email=m["email"],
            display_name=m["display_name"],
            open_flags=sum(1 for f in flags if f["user_id"] == m["user_id"]),
        )
        for m in chosen
    ]


@router.get("/therapy/instruments", dependencies=[requires(SELF)])
async def list_instruments(engine: EngineDep) -> list[InstrumentPublic]:
    """The assessment instruments' exact item texts and answer labels."""
    return [
        InstrumentPublic(
            instrument=text.instrument,
            name=text.name,
            question=text.question,
            items=list(text.items),
            answers=list(text.answers),
        )
        for text in engine.therapy.instruments()
    ]
