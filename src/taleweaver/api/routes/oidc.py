"""Single sign-on with OpenID Connect: send the browser to the provider, and take it
back with a login session and cookies exactly like a password login's.

While the browser is away, the state, nonce and PKCE verifier ride in a signed,
ten-minute cookie; it is SameSite=Lax because the return from the provider is a
cross-site navigation, which would not carry a Strict cookie.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse

from taleweaver.api.deps import EngineDep
from taleweaver.api.routes.auth import set_login_cookies
from taleweaver.api.security import PUBLIC, requires
from taleweaver.auth import Role
from taleweaver.auth.oidc import OidcClient
from taleweaver.auth.signed_state import SignedState
from taleweaver.auth.sso import Identity, RoleMapping, SingleSignOn
from taleweaver.auth.tokens import same
from taleweaver.config import Settings
from taleweaver.domain.errors import InvalidInput, NotFound, Unauthorized

PREFIX = "/api/v1/auth/oidc"
STATE_COOKIE = "tw_oidc"
STATE_MAX_AGE = 600  # seconds the provider's sign-in page may take

router = APIRouter(prefix=PREFIX, tags=["auth"])


@dataclass(frozen=True, slots=True)
class Sso:
    """What the two routes share, built on first use from the settings."""

    settings: Settings
    client: OidcClient
    pending: SignedState
    mapping: RoleMapping


async def get_sso(request: Request, engine: EngineDep) -> Sso:
    settings: Settings = request.app.state.settings
    if not settings.oidc_enabled or not settings.oidc_issuer or not settings.oidc_client_id:
        raise NotFound("single sign-on is not configured on this server")
    sso: Sso | None = getattr(request.app.state, "sso", None)
    if sso is None:
        sso = Sso(
            settings=settings,
            client=OidcClient(
                settings.oidc_issuer,
                settings.oidc_client_id,
                settings.oidc_client_secret,
                settings.oidc_scopes,
            ),
            pending=SignedState(engine.db, "oidc", STATE_MAX_AGE),
            mapping=RoleMapping(
                settings.oidc_role_claim,
                {value: Role(role) for value, role in settings.oidc_role_map.items()},
                settings.oidc_workspace,
            ),
        )
        request.app.state.sso = sso
    return sso


SsoDep = Annotated[Sso, Depends(get_sso)]


def local_path(value: str) -> str:
    """`next` must stay on this site: anywhere else would be an open redirect."""
    parts = urlsplit(value)
    if (
        not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or parts.scheme
        or parts.netloc
        or any(ord(c) < 32 for c in value)
    ):
        raise InvalidInput("next must be a path on this site, such as /sessions")
    return value


def _callback_url(request: Request, settings: Settings) -> str:
    base = settings.public_url or str(request.base_url)
    return f"{base.rstrip('/')}{PREFIX}/callback"


@router.get(
    "/login",
    dependencies=[requires(PUBLIC)],
    status_code=302,
    response_class=RedirectResponse,
    responses={302: {"description": "To the provider's sign-in page."}},
)
async def oidc_login(
    request: Request,
    sso: SsoDep,
    next_path: Annotated[str, Query(alias="next", max_length=2000)] = "/",
) -> RedirectResponse:
    """Start single sign-on; `next` is where to land afterwards (a path on this site)."""
    target = local_path(next_path)
    auth = await sso.client.begin(_callback_url(request, sso.settings))
    pending = await sso.pending.dumps(
        {"state": auth.state, "nonce": auth.nonce, "verifier": auth.verifier, "next": target}
    )
    response = RedirectResponse(auth.url, status_code=302)
    response.set_cookie(
        STATE_COOKIE,
        pending,
        max_age=STATE_MAX_AGE,
        path=PREFIX,
        httponly=True,
        samesite="lax",
        secure=_callback_url(request, sso.settings).startswith("https:"),
    )
    return response


@router.get(
    "/callback",
    dependencies=[requires(PUBLIC)],
    status_code=303,
    response_class=RedirectResponse,
    responses={303: {"description": "Signed in: to `next`, with cookies."}},
)
async def oidc_callback(
    request: Request,
    engine: EngineDep,
    sso: SsoDep,
    code: Annotated[str | None, Query(max_length=4096)] = None,
    state: Annotated[str | None, Query(max_length=1024)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> RedirectResponse:
    """Where the provider sends the browser back: check everything, then sign in."""
    if error:
        raise Unauthorized(f"the sign-in provider did not sign you in: {error}")
    pending = await sso.pending.loads(request.cookies.get(STATE_COOKIE, ""))
    expected = str(pending.get("state", ""))
    if not code or not state or not expected or not same(state, expected):
        raise Unauthorized("the sign-in state does not match; start the sign-in again")
    claims = await sso.client.finish(
        code,
        _callback_url(request, sso.settings),
        nonce=str(pending.get("nonce", "")),
        verifier=str(pending.get("verifier", "")),
    )
    identity = Identity.from_claims(claims["iss"], claims, sso.settings.oidc_role_claim)
    logic = SingleSignOn(engine.accounts, engine.audit)
    user_id = await logic.account_for(identity, auto_create=sso.settings.oidc_auto_create)
    await logic.apply_role(user_id, identity, sso.mapping)
    client = request.client.host if request.client else "unknown"
    token, csrf, _ = await engine.credentials.start_session(user_id, client=client, via="sso")
    response = RedirectResponse(local_path(str(pending.get("next", "/"))), status_code=303)
    set_login_cookies(request, response, token, csrf)
    response.delete_cookie(STATE_COOKIE, path=PREFIX)
    return response
