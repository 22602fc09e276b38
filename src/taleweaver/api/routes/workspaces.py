"""Workspaces, their members and roles, therapist assignments, and their audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from taleweaver.api.auth_schemas import (
    AssignmentCreate,
    AuditEntry,
    MemberPublic,
    MemberSet,
    WorkspaceCreate,
    WorkspacePublic,
    WorkspaceUpdate,
)
from taleweaver.api.deps import EngineDep
from taleweaver.api.security import SELF, Access, requires
from taleweaver.auth import Action, Principal

router = APIRouter(prefix="/api/v1/workspaces", tags=["workspaces"])


@router.get("")
async def list_workspaces(
    engine: EngineDep, principal: Annotated[Principal, requires(SELF)]
) -> list[WorkspacePublic]:
    """The workspaces you belong to, with your role in each; `default` marks the one
    requests without an X-Workspace header act in."""
    rows = await engine.accounts.workspaces_of(principal.user_id)
    if principal.key_workspace is not None:
        rows = [r for r in rows if r["id"] == principal.key_workspace]
    default = principal.key_workspace or await engine.accounts.default_workspace(principal.user_id)
    return [WorkspacePublic.model_validate(r | {"default": r["id"] == default}) for r in rows]


@router.post("", status_code=201)
async def create_workspace(
    body: WorkspaceCreate, engine: EngineDep, principal: Annotated[Principal, requires(SELF)]
) -> WorkspacePublic:
    """A new workspace; you become its owner."""
    created = await engine.accounts.create_workspace(
        principal.user_id, body.name, sensitive=body.sensitive
    )
    return WorkspacePublic.model_validate(created | {"role": "owner"})


@router.get("/{workspace_id}")
async def get_workspace(
    workspace_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.WORKSPACE_READ)],
) -> WorkspacePublic:
    found = await engine.accounts.workspace(workspace_id)
    return WorkspacePublic.model_validate(found | {"role": access.role})


@router.patch("/{workspace_id}")
async def update_workspace(
    workspace_id: str,
    body: WorkspaceUpdate,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.WORKSPACE_UPDATE)],
) -> WorkspacePublic:
    updated = await engine.accounts.update_workspace(
        workspace_id, name=body.name, sensitive=body.sensitive, actor=access.principal.user_id
    )
    return WorkspacePublic.model_validate(updated | {"role": access.role})


@router.delete("/{workspace_id}", status_code=204)
async def delete_workspace(
    workspace_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.WORKSPACE_DELETE)],
) -> Response:
    await engine.accounts.delete_workspace(workspace_id, actor=access.principal.user_id)
    return Response(status_code=204)


@router.get("/{workspace_id}/members")
async def list_members(
    workspace_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.MEMBERS_READ)],
) -> list[MemberPublic]:
    return [MemberPublic.model_validate(m) for m in await engine.accounts.members(workspace_id)]


@router.put("/{workspace_id}/members/{user_id}")
async def set_member(
    workspace_id: str,
    user_id: str,
    body: MemberSet,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.MEMBERS_MANAGE)],
) -> list[MemberPublic]:
    """Add a user to the workspace or change their role."""
    await engine.accounts.set_member(
        workspace_id, user_id, body.role, actor=access.principal.user_id, actor_role=access.role
    )
    return [MemberPublic.model_validate(m) for m in await engine.accounts.members(workspace_id)]


@router.delete("/{workspace_id}/members/{user_id}", status_code=204)
async def remove_member(
    workspace_id: str,
    user_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.MEMBERS_MANAGE)],
) -> Response:
    await engine.accounts.remove_member(
        workspace_id, user_id, actor=access.principal.user_id, actor_role=access.role
    )
    return Response(status_code=204)


@router.put("/{workspace_id}/assignments", status_code=204)
async def assign_therapist(
    workspace_id: str,
    body: AssignmentCreate,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.MEMBERS_MANAGE)],
) -> Response:
    """Let a therapist follow a player of this workspace."""
    await engine.accounts.assign(
        workspace_id, body.therapist_id, body.player_id, actor=access.principal.user_id
    )
    return Response(status_code=204)


@router.get("/{workspace_id}/audit")
async def audit_entries(
    workspace_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.AUDIT_READ)],
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,  # seq is a 64-bit column
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AuditEntry]:
    """This workspace's audit entries in order, after sequence number `after`. An
    instance administrator (not through a key limited to one workspace) also sees the
    instance's own entries: accounts, logins and API keys."""
    principal = access.principal
    rows = await engine.audit.entries(
        workspace_id=workspace_id,
        after=after,
        limit=limit,
        with_instance=principal.is_instance_admin and principal.key_workspace is None,
    )
    return [AuditEntry.model_validate(r) for r in rows]
