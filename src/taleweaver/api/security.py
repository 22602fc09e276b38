"""Authentication and authorization for every route, in one place.

A request's principal comes from a bearer API key, a login-session cookie (with
a CSRF token on state-changing requests), or, in single-user mode, the local
user. Each route declares what it does with `requires(...)`; the policy module
decides, and a rate limit per principal and route is applied on the way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from starlette.requests import HTTPConnection

from taleweaver.api.deps import EngineDep
from taleweaver.api.ratelimit import RateLimits
from taleweaver.auth import (
    LOCAL_USER_ID,
    Action,
    Decision,
    Principal,
    Role,
    Scope,
    decide,
    is_loopback,
    may_see,
)
from taleweaver.auth.tokens import same
from taleweaver.domain.errors import Forbidden, NotFound, Unauthorized
from taleweaver.engine import Engine

SESSION_COOKIE = "tw_session"
CSRF_COOKIE = "tw_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MODE_CACHE_SECONDS = 2.0

UNLIMITED = frozenset({"/healthz", "/readyz", "/metrics"})

# Route markers that are not workspace actions.
PUBLIC = "public"
SELF = "self"  # any signed-in principal, about themselves
INSTANCE_ADMIN = "instance-admin"


@dataclass
class LoginMode:
    """Whether requests must carry credentials, re-read every couple of seconds."""

    required: bool = False
    checked_at: float = 0.0


async def login_required(request: HTTPConnection, engine: Engine) -> bool:
    settings = request.app.state.settings
    if settings.require_login or not is_loopback(settings.bind_host):
        return True
    mode: LoginMode = request.app.state.login_mode
    now = time.monotonic()
    if now - mode.checked_at > MODE_CACHE_SECONDS:
        mode.required = await engine.accounts.real_account_count() > 1
        mode.checked_at = now
    return mode.required


async def current_principal(request: HTTPConnection, engine: EngineDep) -> Principal | None:
    """The caller, or None when no credentials were sent and login is required."""
    if hasattr(request.state, "principal"):
        known: Principal | None = request.state.principal
        return known
    principal = await _authenticate(request, engine)
    request.state.principal = principal
    return principal


async def _authenticate(request: HTTPConnection, engine: Engine) -> Principal | None:
    authorization = request.headers.get("authorization", "")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("use 'Authorization: Bearer <API key>'")
        principal = await engine.credentials.authenticate_key(token.strip())
        if principal is None:
            raise Unauthorized("the API key is not valid or was revoked")
        return principal
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        principal = await engine.credentials.authenticate_session(cookie)
        if principal is None:
            raise Unauthorized("the login session has expired; log in again")
        if _method(request) not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not sent or not same(sent, principal.csrf_token or ""):
                raise Forbidden(f"a state-changing request needs the {CSRF_HEADER} header")
        return principal
    if await login_required(request, engine):
        return None
    return Principal(
        user_id=LOCAL_USER_ID, email="local@localhost", via="local", is_instance_admin=True
    )


@dataclass(frozen=True, slots=True)
class Access:
    """What the policy allowed this request: who, in which workspace, as what."""

    principal: Principal
    workspace_id: str
    role: Role
    decision: Decision
    session_version: int | None = None  # of the session the route names, when it names one

    @property
    def owners(self) -> frozenset[str] | None:
        return self.decision.owners


async def _placement(
    request: HTTPConnection, engine: Engine, principal: Principal, header: str | None
) -> tuple[str, str | None, Role | None, int | None]:
    """Where a request acts: (workspace, owner of the session it names, caller's role,
    that session's version)."""
    session_id = request.path_params.get("session_id")
    if session_id is not None:
        found = await engine.accounts.session_access(principal.user_id, session_id)
        if found is None:
            raise NotFound(f"session {session_id} not found")
        return found
    workspace_id = request.path_params.get("workspace_id") or header or principal.key_workspace
    if workspace_id is None:
        workspace_id = await engine.accounts.default_workspace(principal.user_id)
    if workspace_id is None:
        raise NotFound("you are not a member of any workspace")
    role = await engine.accounts.role_of(principal.user_id, workspace_id)
    return workspace_id, None, role, None


async def _enforce(
    request: HTTPConnection, engine: Engine, marker: Action | str, workspace_header: str | None
) -> Access | Principal | None:
    limits: RateLimits = request.app.state.rate_limits
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    if marker == PUBLIC:
        if path not in UNLIMITED:  # probes from load balancers are never throttled
            await limits.check(f"ip:{_client(request)}", path)
        return None
    principal = await current_principal(request, engine)
    if principal is None:
        raise Unauthorized("log in, or send an API key as 'Authorization: Bearer <key>'")
    await limits.check(f"user:{principal.user_id}", path)
    if marker == SELF:
        # About oneself (workspaces, keys): a key changes nothing without the write scope.
        if (
            principal.scopes is not None
            and _method(request) not in SAFE_METHODS
            and principal.scopes.isdisjoint({Scope.WRITE, Scope.ADMIN})
        ):
            raise Forbidden("this API key's scopes do not cover changes")
        return principal
    if marker == INSTANCE_ADMIN:
        if not principal.is_instance_admin or (
            principal.scopes is not None and "admin" not in principal.scopes
        ):
            raise Forbidden("only an instance administrator may do this")
        return principal
    action = Action(marker)
    workspace_id, owner_id, role, version = await _placement(
        request, engine, principal, workspace_header
    )
    if principal.key_workspace is not None and principal.key_workspace != workspace_id:
        raise NotFound(f"workspace {workspace_id} not found")
    if role is None:
        # Not a member: the workspace and everything in it do not exist for them.
        what = "session" if "session_id" in request.path_params else "workspace"
        name = request.path_params.get("session_id", workspace_id)
        raise NotFound(f"{what} {name} not found")
    assigned = frozenset[str]()
    if role == Role.THERAPIST:
        assigned = await engine.accounts.assigned_players(workspace_id, principal.user_id)
    decision = decide(
        role,
        action,
        principal_id=principal.user_id,
        scopes=principal.scopes,
        assigned_players=assigned,
    )
    if not decision.allowed:
        raise Forbidden(decision.reason)
    if "session_id" in request.path_params and not may_see(decision, owner_id):
        raise NotFound(f"session {request.path_params['session_id']} not found")
    return Access(principal, workspace_id, role, decision, version)


def _client(request: HTTPConnection) -> str:
    return request.client.host if request.client else "unknown"


def _method(request: HTTPConnection) -> str:
    """The HTTP method; a WebSocket handshake is a GET."""
    return str(request.scope.get("method", "GET"))


async def authorize_websocket(websocket: HTTPConnection, engine: Engine, action: Action) -> Access:
    """Authorize a WebSocket handshake for `action` as every route is authorized.

    Browsers send cookies with a cross-site WebSocket handshake and no CORS check
    guards it, so without an API key the page's Origin must be this server's own
    (or one of the configured CORS origins or the public URL).
    """
    if not websocket.headers.get("authorization"):
        origin = websocket.headers.get("origin")
        if origin is not None and not _same_origin(websocket, origin):
            raise Forbidden(f"a live channel may not be opened from {origin}")
    access = await _enforce(websocket, engine, action, websocket.headers.get("x-workspace"))
    assert isinstance(access, Access)
    return access


def _same_origin(connection: HTTPConnection, origin: str) -> bool:
    settings = connection.app.state.settings
    allowed = {o.rstrip("/") for o in settings.cors_origins}
    if settings.public_url:
        allowed.add(str(settings.public_url).rstrip("/"))
    host = connection.headers.get("host", "")
    own = {f"http://{host}", f"https://{host}"}
    return origin.rstrip("/") in allowed | own


def requires(marker: Action | str) -> Any:
    """A dependency that authorizes the route's one declared action."""

    async def check(
        request: Request,
        engine: EngineDep,
        x_workspace: Annotated[
            str | None,
            Header(description="The workspace to act in; defaults to your first one."),
        ] = None,
    ) -> Any:
        return await _enforce(request, engine, marker, x_workspace)

    check.taleweaver_policy = marker  # type: ignore[attr-defined]
    return Depends(check)


def route_policy(dependant: Any) -> str | None:
    """The marker a route declared through `requires`, found in its dependencies."""
    for dependency in dependant.dependencies:
        marker = getattr(dependency.call, "taleweaver_policy", None)
        if marker is not None:
            return str(marker)
        nested = route_policy(dependency)
        if nested is not None:
            return nested
    return None
