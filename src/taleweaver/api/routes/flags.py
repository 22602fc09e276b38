"""A workspace's feature flags: every member reads them, admins set and clear them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from taleweaver.api.deps import EngineDep
from taleweaver.api.schemas import Strict
from taleweaver.api.security import Access, requires
from taleweaver.auth import Action
from taleweaver.engine.flags import FlagState

router = APIRouter(prefix="/api/v1/flags", tags=["flags"])

# Checked against the known flags by the service (an unknown name is a 422).
FlagName = Annotated[str, Path(max_length=64, description="A known flag's name.")]


class FlagChange(Strict):
    enabled: bool = Field(description="On or off in this workspace, whatever the default.")


class FlagPublic(BaseModel):
    name: str
    description: str
    default: bool
    enabled: bool = Field(description="What turns in this workspace run with.")
    updated_at: datetime | None = Field(description="When the workspace set it; null: default.")
    updated_by: str | None = Field(description="The user who set it; null: default.")


def _public(state: FlagState) -> FlagPublic:
    return FlagPublic(
        name=state.name,
        description=state.description,
        default=state.default,
        enabled=state.enabled,
        updated_at=state.updated_at,
        updated_by=state.updated_by,
    )


@router.get("")
async def list_flags(
    engine: EngineDep, access: Annotated[Access, requires(Action.WORKSPACE_READ)]
) -> list[FlagPublic]:
    """Every known flag and its value in the workspace (a turn reads them as it starts)."""
    return [_public(s) for s in await engine.flags.list(access.workspace_id)]


@router.put("/{name}")
async def set_flag(
    name: FlagName,
    body: FlagChange,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.WORKSPACE_UPDATE)],
) -> FlagPublic:
    """Turn a flag on or off in the workspace, from its next turn on (audited)."""
    state = await engine.flags.set(
        access.workspace_id, name, body.enabled, actor=access.principal.user_id
    )
    return _public(state)


@router.delete("/{name}")
async def clear_flag(
    name: FlagName,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.WORKSPACE_UPDATE)],
) -> FlagPublic:
    """Back to the flag's default (audited when the workspace had set it)."""
    state = await engine.flags.clear(access.workspace_id, name, actor=access.principal.user_id)
    return _public(state)
