"""Accounts on this instance, managed by its administrators."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from taleweaver.api.auth_schemas import UserCreate, UserPublic
from taleweaver.api.deps import EngineDep
from taleweaver.api.security import INSTANCE_ADMIN, requires
from taleweaver.auth import Principal

router = APIRouter(prefix="/api/v1/users", tags=["users"])
AdminDep = Annotated[Principal, requires(INSTANCE_ADMIN)]


@router.get("")
async def list_users(engine: EngineDep, admin: AdminDep) -> list[UserPublic]:
    return [UserPublic.model_validate(u) for u in await engine.accounts.list_users()]


@router.post("", status_code=201)
async def create_user(body: UserCreate, engine: EngineDep, admin: AdminDep) -> UserPublic:
    """A new account, with a personal workspace it owns."""
    user = await engine.accounts.create_user(
        body.email,
        password=body.password,
        display_name=body.display_name,
        instance_admin=body.instance_admin,
        actor=admin.user_id,
    )
    return UserPublic.model_validate(user)
