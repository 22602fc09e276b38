"""Bodies of the account, key and workspace routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from taleweaver.api.schemas import Strict
from taleweaver.auth import Role, Scope


class Login(Strict):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class Setup(Strict):
    token: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class UserCreate(Strict):
    email: str = Field(min_length=3, max_length=320)
    password: str | None = Field(default=None, max_length=1024)
    display_name: str | None = Field(default=None, max_length=200)
    instance_admin: bool = False


class UserUpdate(Strict):
    display_name: str = Field(min_length=1, max_length=200)


class UserPublic(BaseModel):
    id: str
    email: str
    display_name: str
    is_instance_admin: bool = False


class LoginResult(BaseModel):
    user: UserPublic
    csrf_token: str = Field(description="Send as X-CSRF-Token on state-changing requests.")


class Me(BaseModel):
    user_id: str
    email: str
    display_name: str | None
    via: str
    is_instance_admin: bool
    scopes: list[str] | None
    login_required: bool


class ApiKeyCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(min_length=1)
    workspace_id: str | None = Field(default=None, max_length=64)


class ApiKeyPublic(BaseModel):
    id: str
    name: str
    scopes: list[str]
    workspace_id: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The secret; shown this once only.")


class WorkspaceCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    sensitive: bool = False


class WorkspaceUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    sensitive: bool | None = None


class WorkspacePublic(BaseModel):
    id: str
    name: str
    sensitive: bool
    created_at: datetime
    role: Role | None = None
    default: bool = Field(
        default=False, description="Where requests without an X-Workspace header act."
    )


class MemberSet(Strict):
    role: Role


class MemberPublic(BaseModel):
    user_id: str
    email: str
    display_name: str
    role: Role


class AssignmentCreate(Strict):
    therapist_id: str = Field(min_length=1, max_length=64)
    player_id: str = Field(min_length=1, max_length=64)


class AuditEntry(BaseModel):
    seq: int
    at: datetime
    actor: str
    action: str
    workspace_id: str | None
    target: str | None
    details: dict[str, object]
    hash: str
