"""The one place that decides who may do what.

Workspaces are the tenant boundary. A principal's role in a workspace grants a set
of actions; some roles see only some sessions (a player their own, a therapist
their own and their assigned players'). API keys narrow this further by scope.
Routes declare the action they perform and never look at roles themselves.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    EDITOR = "editor"
    REVIEWER = "reviewer"
    PLAYER = "player"
    THERAPIST = "therapist"
    VIEWER = "viewer"


class Scope(StrEnum):
    """What an API key may do, each including the one before it."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


SCOPE_ORDER = [Scope.READ, Scope.WRITE, Scope.ADMIN]


class Action(StrEnum):
    SESSION_CREATE = "session.create"
    SESSION_LIST = "session.list"
    SESSION_READ = "session.read"
    SESSION_UPDATE = "session.update"
    SESSION_DELETE = "session.delete"
    SESSION_PLAY = "session.play"
    SEARCH = "search"
    WORKSPACE_READ = "workspace.read"
    WORKSPACE_UPDATE = "workspace.update"
    WORKSPACE_DELETE = "workspace.delete"
    MEMBERS_READ = "members.read"
    MEMBERS_MANAGE = "members.manage"
    SECRETS_MANAGE = "secrets.manage"
    AUDIT_READ = "audit.read"
    USAGE_READ = "usage.read"
    # World memory: the world bible, lorebooks, recall traces, review and continuity.
    WORLD_READ = "world.read"
    WORLD_EDIT = "world.edit"
    WORLD_REVIEW = "world.review"
    # Characters and companions; workspace export bundles.
    CHARACTER_READ = "character.read"
    CHARACTER_EDIT = "character.edit"
    WORKSPACE_EXPORT = "workspace.export"
    # Safety: flagged sessions and crisis events; the workspace's safety settings.
    SAFETY_REVIEW = "safety.review"
    SAFETY_MANAGE = "safety.manage"
    # The therapeutic layer: a player's profile, goals, assessments and progress.
    THERAPY_READ = "therapy.read"
    THERAPY_WRITE = "therapy.write"
    # File-editor sessions in the workspace's folder; terminals (a shell on the server).
    FILE_READ = "file.read"
    FILE_EDIT = "file.edit"
    TERMINAL_USE = "terminal.use"


# Actions about one workspace's sessions, or about one player, where a role may
# see only some owners (a player: themselves; a therapist: also their players).
SESSION_ACTIONS = frozenset(
    {
        Action.SESSION_LIST,
        Action.SESSION_READ,
        Action.SESSION_UPDATE,
        Action.SESSION_DELETE,
        Action.SESSION_PLAY,
        Action.SEARCH,
        Action.SAFETY_REVIEW,
        Action.THERAPY_READ,
        Action.THERAPY_WRITE,
    }
)

_READ = frozenset(
    {
        Action.SESSION_LIST,
        Action.SESSION_READ,
        Action.SEARCH,
        Action.WORKSPACE_READ,
        Action.MEMBERS_READ,
        Action.WORLD_READ,
        Action.CHARACTER_READ,
        Action.FILE_READ,
    }
)
_AUTHOR = frozenset(
    {Action.WORLD_EDIT, Action.WORLD_REVIEW, Action.CHARACTER_EDIT, Action.FILE_EDIT}
)
_CARE = frozenset({Action.SAFETY_REVIEW, Action.THERAPY_READ, Action.THERAPY_WRITE})
_PLAY = frozenset(
    {
        Action.SESSION_CREATE,
        Action.SESSION_UPDATE,
        Action.SESSION_DELETE,
        Action.SESSION_PLAY,
    }
)
_MANAGE = frozenset(
    {
        Action.WORKSPACE_UPDATE,
        Action.MEMBERS_MANAGE,
        Action.SECRETS_MANAGE,
        Action.AUDIT_READ,
        Action.USAGE_READ,
        Action.WORKSPACE_EXPORT,
        Action.SAFETY_MANAGE,
        Action.TERMINAL_USE,
    }
)

GRANTS: dict[Role, frozenset[Action]] = {
    Role.OWNER: _READ | _PLAY | _AUTHOR | _CARE | _MANAGE | {Action.WORKSPACE_DELETE},
    Role.ADMIN: _READ | _PLAY | _AUTHOR | _CARE | _MANAGE,
    Role.EDITOR: _READ | _PLAY | _AUTHOR | {Action.USAGE_READ},
    Role.REVIEWER: _READ | {Action.WORLD_REVIEW},
    # A player's own therapy records are theirs to read and keep up to date.
    Role.PLAYER: _PLAY
    | {
        Action.SESSION_LIST,
        Action.SESSION_READ,
        Action.SEARCH,
        Action.WORKSPACE_READ,
        Action.WORLD_READ,
        Action.CHARACTER_READ,
        Action.THERAPY_READ,
        Action.THERAPY_WRITE,
    },
    Role.THERAPIST: _READ | _CARE,
    Role.VIEWER: _READ,
}

# Roles that act only on sessions they started (therapists: also their players').
OWN_SESSIONS_ONLY = frozenset({Role.PLAYER, Role.THERAPIST})

REQUIRED_SCOPE: dict[Action, Scope] = {
    action: (
        Scope.READ
        if action in _READ | {Action.USAGE_READ, Action.SAFETY_REVIEW, Action.THERAPY_READ}
        else Scope.ADMIN
        if action in _MANAGE | {Action.WORKSPACE_DELETE}
        else Scope.WRITE
    )
    for action in Action
}


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    # Set when the role may act only on sessions of these owners.
    owners: frozenset[str] | None = None
    reason: str = ""


def scope_allows(scopes: frozenset[str] | None, action: Action) -> bool:
    """Whether an API key's scopes cover the action (None: not a key, no limit)."""
    if scopes is None:
        return True
    needed = SCOPE_ORDER.index(REQUIRED_SCOPE[action])
    return any(s in scopes and SCOPE_ORDER.index(Scope(s)) >= needed for s in Scope)


def decide(
    role: Role | None,
    action: Action,
    *,
    principal_id: str,
    scopes: frozenset[str] | None = None,
    assigned_players: frozenset[str] = frozenset(),
) -> Decision:
    """May a principal with `role` in a workspace perform `action` there?"""
    if role is None:
        return Decision(False, reason="not a member of this workspace")
    if action not in GRANTS[role]:
        return Decision(False, reason=f"role '{role}' may not {action}")
    if not scope_allows(scopes, action):
        return Decision(False, reason=f"this API key's scopes do not cover {action}")
    if role in OWN_SESSIONS_ONLY and action in SESSION_ACTIONS:
        owners = {principal_id}
        if role == Role.THERAPIST:
            owners |= assigned_players
        return Decision(True, owners=frozenset(owners))
    return Decision(True)


def may_see(decision: Decision, owner_id: str | None) -> bool:
    """Whether an allowed decision covers a session started by `owner_id`."""
    return decision.allowed and (decision.owners is None or owner_id in decision.owners)


def is_loopback(host: str) -> bool:
    """Whether a bind address reaches only this machine: a server bound there, with at
    most one account, needs no login (single-user mode)."""
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
