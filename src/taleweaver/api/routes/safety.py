"""Safety: flagged sessions and resuming them, content rules, players' preferences,
therapists' webhooks, rules reload and a dry-run check."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from taleweaver.api.deps import EngineDep
from taleweaver.api.schemas import Strict
from taleweaver.api.security import Access, requires
from taleweaver.auth import Action, may_see
from taleweaver.domain.errors import Forbidden, NotFound
from taleweaver.domain.safety import (
    CATEGORIES,
    CRISIS_FROM,
    MAX_TOPIC_CHARS,
    MAX_TOPICS,
    WORKSPACE_SCOPE,
    assess,
    rank,
    world_scope,
)
from taleweaver.engine import Engine

router = APIRouter(prefix="/api/v1", tags=["safety"])

Topics = Annotated[
    list[Annotated[str, Field(max_length=MAX_TOPIC_CHARS)]], Field(max_length=MAX_TOPICS)
]


class ContentRulesSet(Strict):
    content_warnings: Topics = Field(default_factory=list, description="Shown to the narrator.")
    forbidden: Topics = Field(
        default_factory=list, description="Topics the narrator must never depict."
    )
    locale: str | None = Field(
        default=None, max_length=20, description="Crisis resources' locale (workspace only)."
    )


class ContentRulesPublic(BaseModel):
    scope: str
    content_warnings: list[str]
    forbidden: list[str]
    locale: str | None


class PreferencesSet(Strict):
    avoid_topics: Topics = Field(default_factory=list)
    trigger_warnings: Topics = Field(default_factory=list)
    locale: str | None = Field(default=None, max_length=20)


class PreferencesPublic(BaseModel):
    user_id: str
    avoid_topics: list[str]
    trigger_warnings: list[str]
    locale: str | None


class WebhookSet(Strict):
    url: str = Field(max_length=2000, description="Receives a signed POST for each crisis.")
    user_id: str | None = Field(
        default=None, description="Whose webhook (default: yours; admins may set others')."
    )


class WebhookCreated(BaseModel):
    user_id: str
    url: str
    secret: str = Field(description="Signs every delivery; shown only now.")


class WebhookPublic(BaseModel):
    user_id: str
    url: str | None


class CheckRequest(Strict):
    text: str = Field(max_length=8000)
    direction: Literal["input", "output"] = "input"


async def _require_member(engine: Engine, access: Access, user_id: str) -> None:
    """A player reaches only their own records, a therapist their assigned players'."""
    if not may_see(access.decision, user_id):
        raise NotFound(f"user {user_id} not found")
    if await engine.accounts.role_of(user_id, access.workspace_id) is None:
        raise NotFound(f"user {user_id} is not a member of this workspace")


# --- flags and pauses -----------------------------------------------------------------


@router.get("/safety/flags")
async def list_flags(
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SAFETY_REVIEW)],
    status: Literal["open", "resolved"] | None = None,
    session_id: str | None = None,
    player_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """Crisis flags, newest first, each with its webhook deliveries. Therapists see their
    assigned players' (and their own) flags only."""
    users: frozenset[str] | None = access.owners
    if player_id is not None:
        if users is not None and player_id not in users:
            raise NotFound(f"user {player_id} not found")
        users = frozenset({player_id})
    flags = await engine.safety.flags.list(
        access.workspace_id, users=users, status=status, session_id=session_id, limit=limit
    )
    for flag in flags:
        flag["deliveries"] = await engine.safety.webhooks.deliveries(
            access.workspace_id, flag["id"]
        )
    return flags


@router.post("/sessions/{session_id}/safety/resume")
async def resume_session(
    session_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SAFETY_REVIEW)],
) -> dict[str, Any]:
    """Lift the crisis pause: the story goes on from the next turn."""
    return await engine.safety.resume(
        access.workspace_id, session_id, actor=access.principal.user_id
    )


# --- content rules ---------------------------------------------------------------------


@router.get("/safety/content")
async def get_workspace_content(
    engine: EngineDep, access: Annotated[Access, requires(Action.WORLD_READ)]
) -> ContentRulesPublic:
    """The workspace's content rules (they apply to sessions with no world of their own)."""
    rules = await engine.safety.content.rules(access.workspace_id, WORKSPACE_SCOPE)
    return ContentRulesPublic.model_validate(rules)


@router.put("/safety/content")
async def set_workspace_content(
    body: ContentRulesSet,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SAFETY_MANAGE)],
) -> ContentRulesPublic:
    rules = await engine.safety.content.set_rules(
        access.workspace_id, WORKSPACE_SCOPE, **body.model_dump()
    )
    await engine.audit.record(
        access.principal.user_id,
        "safety.content_rules_set",
        workspace_id=access.workspace_id,
        target=WORKSPACE_SCOPE,
    )
    return ContentRulesPublic.model_validate(rules)


@router.get("/safety/worlds/{world_id}/content")
async def get_world_content(
    world_id: str, engine: EngineDep, access: Annotated[Access, requires(Action.WORLD_READ)]
) -> ContentRulesPublic:
    """A world's content rules (sessions whose settings name this `world_id`)."""
    rules = await engine.safety.content.rules(access.workspace_id, world_scope(world_id))
    return ContentRulesPublic.model_validate(rules)


@router.put("/safety/worlds/{world_id}/content")
async def set_world_content(
    world_id: str,
    body: ContentRulesSet,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SAFETY_MANAGE)],
) -> ContentRulesPublic:
    scope = world_scope(world_id)
    rules = await engine.safety.content.set_rules(access.workspace_id, scope, **body.model_dump())
    await engine.audit.record(
        access.principal.user_id,
        "safety.content_rules_set",
        workspace_id=access.workspace_id,
        target=scope,
    )
    return ContentRulesPublic.model_validate(rules)


# --- a player's own preferences -----------------------------------------------------------


@router.get("/safety/preferences/{user_id}")
async def get_preferences(
    user_id: str, engine: EngineDep, access: Annotated[Access, requires(Action.THERAPY_READ)]
) -> PreferencesPublic:
    """A player's avoid topics, trigger warnings and locale (a player: their own)."""
    await _require_member(engine, access, user_id)
    return PreferencesPublic.model_validate(
        await engine.safety.content.preferences(access.workspace_id, user_id)
    )


@router.put("/safety/preferences/{user_id}")
async def set_preferences(
    user_id: str,
    body: PreferencesSet,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.THERAPY_WRITE)],
) -> PreferencesPublic:
    await _require_member(engine, access, user_id)
    prefs = await engine.safety.content.set_preferences(
        access.workspace_id, user_id, **body.model_dump()
    )
    return PreferencesPublic.model_validate(prefs)


# --- therapists' webhooks ---------------------------------------------------------------


def _webhook_owner(access: Access, user_id: str | None) -> str:
    me = access.principal.user_id
    target = user_id or me
    if access.owners is not None and target != me:
        raise Forbidden("you may register only your own webhook")
    return target


@router.put("/safety/webhook")
async def set_webhook(
    body: WebhookSet,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SAFETY_REVIEW)],
) -> WebhookCreated:
    """Register the URL crisis notifications go to; the secret is returned only here."""
    target = _webhook_owner(access, body.user_id)
    if await engine.accounts.role_of(target, access.workspace_id) is None:
        raise NotFound(f"user {target} is not a member of this workspace")
    created = await engine.safety.webhooks.register(access.workspace_id, target, body.url)
    await engine.audit.record(
        access.principal.user_id,
        "safety.webhook_set",
        workspace_id=access.workspace_id,
        target=target,
        details={"url": created["url"]},
    )
    return WebhookCreated.model_validate(created)


@router.get("/safety/webhook")
async def get_webhook(
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SAFETY_REVIEW)],
    user_id: str | None = None,
) -> WebhookPublic:
    """The registered URL (never the secret); `url` is null when none is registered."""
    target = _webhook_owner(access, user_id)
    try:
        found = await engine.safety.webhooks.get(access.workspace_id, target)
    except NotFound:
        return WebhookPublic(user_id=target, url=None)
    return WebhookPublic.model_validate(found)


# --- rules ----------------------------------------------------------------------------------


@router.post("/safety/rules/reload")
async def reload_rules(
    engine: EngineDep, access: Annotated[Access, requires(Action.SAFETY_MANAGE)]
) -> dict[str, Any]:
    """Re-read the rules file now; a bad file is refused (422) and the old rules stay."""
    rules = engine.safety.rules.reload()
    await engine.audit.record(
        access.principal.user_id,
        "safety.rules_reloaded",
        workspace_id=access.workspace_id,
        details={"version": rules.version},
    )
    return {
        "version": rules.version,
        "rules": len(rules.rules),
        "path": str(engine.safety.rules.path),
    }


@router.post("/safety/check")
async def dry_run_check(
    body: CheckRequest,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SAFETY_MANAGE)],
) -> dict[str, Any]:
    """What the detectors say about a text, without running the crisis protocol."""
    if body.direction == "input":
        found = await engine.safety.checker.detect(body.text)
    else:
        found = assess(body.text, engine.safety.rules.current(), direction="output")
    crisis = body.direction == "input" and rank(found.level) >= rank(CRISIS_FROM)
    outcome = "blocked" if crisis else "warning" if found.level == "low" else "safe"
    return found.to_dict() | {
        "outcome": outcome,
        "crisis": crisis,
        "policy": str(engine.safety.policy),
        "rules_version": engine.safety.rules.version,
        "known_categories": list(CATEGORIES),
    }
