"""The installed plugins, and turning one off (or on again) in a workspace.

A plugin's session kinds, context sources, safety detectors, event listeners,
importers and exporters serve a workspace while its flag `plugin:<name>` is on there
(the default); its model providers, commands and routes are process-wide. The same
flag is set through /api/v1/flags too.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from taleweaver.api.deps import EngineDep
from taleweaver.api.schemas import Strict
from taleweaver.api.security import Access, requires
from taleweaver.auth import Action
from taleweaver.engine.plugin_wiring import plugin_states

router = APIRouter(prefix="/api/v1/plugins", tags=["plugins"])

PluginName = Annotated[str, Path(max_length=100, description="An installed plugin's name.")]


class PluginPublic(BaseModel):
    name: str
    version: str
    hooks: list[str] = Field(description="The hooks it implements.")
    status: str = Field(description="loaded, or failed (see error).")
    error: str
    enabled: bool = Field(description="Whether it serves this workspace (default: yes).")
    process_wide: list[str] = Field(
        description="Its hooks that serve every workspace whatever `enabled` says."
    )


class PluginChange(Strict):
    enabled: bool = Field(description="On or off in this workspace, from its next turn on.")


async def _listed(engine: EngineDep, workspace_id: str) -> list[PluginPublic]:
    return [
        PluginPublic(
            name=s.name,
            version=s.version,
            hooks=list(s.hooks),
            status=s.status,
            error=s.error,
            enabled=s.enabled,
            process_wide=list(s.process_wide),
        )
        for s in await plugin_states(engine, workspace_id)
    ]


@router.get("")
async def list_plugins(
    engine: EngineDep, access: Annotated[Access, requires(Action.WORKSPACE_READ)]
) -> list[PluginPublic]:
    """Every installed plugin: version, hooks, status, and whether it serves this workspace."""
    return await _listed(engine, access.workspace_id)


@router.put("/{name}")
async def set_plugin(
    name: PluginName,
    body: PluginChange,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.WORKSPACE_UPDATE)],
) -> PluginPublic:
    """Turn an installed plugin off (or on again) in this workspace (audited)."""
    await engine.flags.set(
        access.workspace_id, f"plugin:{name}", body.enabled, actor=access.principal.user_id
    )
    [state] = [p for p in await _listed(engine, access.workspace_id) if p.name == name]
    return state
