"""Signing in and out, the first-run setup, and personal API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response

from taleweaver.api.auth_schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    Login,
    LoginResult,
    Me,
    Setup,
    UserPublic,
    UserUpdate,
)
from taleweaver.api.deps import EngineDep
from taleweaver.api.security import (
    CSRF_COOKIE,
    PUBLIC,
    SELF,
    SESSION_COOKIE,
    login_required,
    requires,
)
from taleweaver.auth import Principal, Scope
from taleweaver.auth.policy import SCOPE_ORDER
from taleweaver.domain.errors import Forbidden, NotFound

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
SelfDep = Annotated[Principal, requires(SELF)]


def set_login_cookies(request: Request, response: Response, token: str, csrf: str) -> None:
    secure = request.url.scheme == "https"
    # Lax, not Strict: the page a single sign-on redirect lands on must see the
    # session. Cross-site requests that change state still lack the CSRF token.
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=secure,
        path="/",
        max_age=14 * 24 * 3600,
    )
    # Readable by the web UI's script, which echoes it as X-CSRF-Token.
    response.set_cookie(
        CSRF_COOKIE,
        csrf,
        httponly=False,
        samesite="lax",
        secure=secure,
        path="/",
        max_age=14 * 24 * 3600,
    )


@router.post("/setup", status_code=201, dependencies=[requires(PUBLIC)])
async def setup(body: Setup, engine: EngineDep) -> UserPublic:
    """Create the first administrator with the one-time token the server printed."""
    user = await engine.accounts.complete_setup(body.token, body.email, body.password)
    return UserPublic.model_validate(user)


@router.post("/login", dependencies=[requires(PUBLIC)])
async def login(
    body: Login, request: Request, response: Response, engine: EngineDep
) -> LoginResult:
    """Password login: sets an HttpOnly session cookie and returns the CSRF token."""
    client = request.client.host if request.client else "unknown"
    token, csrf, user = await engine.credentials.login(body.email, body.password, client=client)
    set_login_cookies(request, response, token, csrf)
    return LoginResult(user=UserPublic.model_validate(user), csrf_token=csrf)


@router.post("/logout", status_code=204)
async def logout(request: Request, engine: EngineDep, principal: SelfDep) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await engine.credentials.logout(token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@router.get("/me")
async def me(request: Request, engine: EngineDep, principal: SelfDep) -> Me:
    user = await engine.accounts.user(principal.user_id)
    return Me(
        user_id=principal.user_id,
        email=principal.email,
        display_name=user.get("display_name"),
        via=principal.via,
        is_instance_admin=principal.is_instance_admin,
        scopes=sorted(principal.scopes) if principal.scopes is not None else None,
        login_required=await login_required(request, engine),
    )


@router.patch("/me")
async def update_me(body: UserUpdate, engine: EngineDep, principal: SelfDep) -> UserPublic:
    """Change your display name: who `{{user}}` is, and your name in chat exports,
    in sessions that set no name of their own."""
    user = await engine.accounts.set_display_name(
        principal.user_id, body.display_name, actor=principal.user_id
    )
    return UserPublic.model_validate(user)


@router.get("/keys")
async def list_keys(engine: EngineDep, principal: SelfDep) -> list[ApiKeyPublic]:
    keys = await engine.credentials.list_api_keys(principal.user_id)
    return [ApiKeyPublic.model_validate(k) for k in keys]


@router.post("/keys", status_code=201)
async def create_key(body: ApiKeyCreate, engine: EngineDep, principal: SelfDep) -> ApiKeyCreated:
    """A personal API key for scripts: `Authorization: Bearer <key>`."""
    if principal.scopes is not None:
        # A key may mint keys, but none that can do more or reach further than itself.
        ceiling = max(SCOPE_ORDER.index(Scope(s)) for s in principal.scopes)
        wider = any(SCOPE_ORDER.index(s) > ceiling for s in body.scopes)
        if wider or principal.key_workspace not in (None, body.workspace_id):
            raise Forbidden("an API key cannot create a key with more scopes or reach than its own")
    if body.workspace_id is not None:
        await engine.accounts.workspace(body.workspace_id)
        if await engine.accounts.role_of(principal.user_id, body.workspace_id) is None:
            raise NotFound(f"workspace {body.workspace_id} not found")
    token, key = await engine.credentials.create_api_key(
        principal.user_id, body.name, [str(s) for s in body.scopes], body.workspace_id
    )
    return ApiKeyCreated.model_validate(key | {"key": token})


@router.delete("/keys/{key_id}")
async def revoke_key(key_id: str, engine: EngineDep, principal: SelfDep) -> ApiKeyPublic:
    return ApiKeyPublic.model_validate(
        await engine.credentials.revoke_api_key(principal.user_id, key_id)
    )
