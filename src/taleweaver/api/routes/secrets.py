"""A workspace's secrets (provider API keys): write-only values, listed by name."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field, SecretStr

from taleweaver.api.deps import EngineDep
from taleweaver.api.schemas import Strict
from taleweaver.api.security import Access, requires
from taleweaver.auth import Action
from taleweaver.auth.secret_store import MAX_SECRET_BYTES, NAME_PATTERN

router = APIRouter(prefix="/api/v1/workspaces", tags=["secrets"])

SecretName = Annotated[
    str, Path(pattern=NAME_PATTERN, description="Letters, digits, '_', '.', '-'.")
]


class SecretSet(Strict):
    value: SecretStr = Field(
        min_length=1,
        max_length=MAX_SECRET_BYTES,
        description="Stored encrypted; never returned by the API.",
        json_schema_extra={"writeOnly": True},
    )


class SecretPublic(BaseModel):
    name: str
    updated_at: datetime


@router.get("/{workspace_id}/secrets")
async def list_secrets(
    workspace_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SECRETS_MANAGE)],
) -> list[SecretPublic]:
    """The workspace's secrets by name and when each was last set; never their values."""
    return [SecretPublic.model_validate(s) for s in await engine.secrets.names(workspace_id)]


@router.put("/{workspace_id}/secrets/{name}")
async def set_secret(
    workspace_id: str,
    name: SecretName,
    body: SecretSet,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SECRETS_MANAGE)],
) -> SecretPublic:
    """Create or replace a secret (for example a model provider's API key)."""
    stored = await engine.secrets.set(
        workspace_id, name, body.value.get_secret_value(), actor=access.principal.user_id
    )
    return SecretPublic.model_validate(stored)


@router.delete("/{workspace_id}/secrets/{name}", status_code=204)
async def delete_secret(
    workspace_id: str,
    name: SecretName,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SECRETS_MANAGE)],
) -> Response:
    await engine.secrets.delete(workspace_id, name, actor=access.principal.user_id)
    return Response(status_code=204)
