"""A small OpenID Connect provider that tests run on loopback.

It speaks the real protocol: a discovery document, an authorization endpoint that
signs the configured user in at once and redirects back with a code, a token
endpoint that checks the client's secret, the one-time code, the redirect URI and
the PKCE verifier before it returns an RS256-signed ID token, and a JWKS. Tests
set the user's claims and inject faults (another audience, a tampered token...).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

import httpx
import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.conftest import free_port

KEY_ID = "test-key-1"


@dataclass
class ProviderUser:
    """Who the provider signs in, and the claims it states about them."""

    sub: str = "subject-ada"
    email: str | None = "ada@example.org"
    email_verified: bool | str | None = True
    name: str = "Ada Lovelace"
    groups: list[str] = field(default_factory=list)


@dataclass
class Faults:
    """What the provider gets wrong on purpose; None or False: nothing."""

    audience: str | None = None  # `aud` names another client
    issuer: str | None = None  # `iss` names another provider
    nonce: str | None = None  # `nonce` is not the one the client sent
    expired: bool = False  # `exp` is an hour ago
    tampered: bool = False  # the payload was changed after signing
    foreign_key: bool = False  # signed with a key the JWKS does not hold
    deny: str | None = None  # the authorization endpoint answers with this error


@dataclass(frozen=True)
class Grant:
    nonce: str | None
    redirect_uri: str
    challenge: str
    user: ProviderUser


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class OidcProvider:
    """The provider under uvicorn on 127.0.0.1, in a thread of its own."""

    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.key = RSAKey.generate_key(
            2048, parameters={"kid": KEY_ID, "use": "sig", "alg": "RS256"}, private=True
        )
        self.user = ProviderUser()
        self.faults = Faults()
        self.grants: dict[str, Grant] = {}
        self.token_requests: list[dict[str, str]] = []
        app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/jwks", self.jwks),
            ]
        )
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> OidcProvider:
        self.thread.start()
        with httpx.Client(base_url=self.issuer) as client:
            for _ in range(500):
                try:
                    if client.get("/jwks").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                threading.Event().wait(0.01)
        raise RuntimeError("the test OpenID provider did not start")

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    # --- endpoints ------------------------------------------------------------------

    async def discovery(self, _: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            }
        )

    async def authorize(self, request: Request) -> Response:
        query = request.query_params
        redirect_uri = query.get("redirect_uri", "")
        if (
            query.get("client_id") != self.client_id
            or query.get("response_type") != "code"
            or "openid" not in query.get("scope", "").split()
            or query.get("code_challenge_method") != "S256"
            or not query.get("code_challenge")
            or not redirect_uri
        ):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        if self.faults.deny:
            back = {"error": self.faults.deny, "state": query.get("state", "")}
            return RedirectResponse(f"{redirect_uri}?{urlencode(back)}", status_code=302)
        code = secrets.token_urlsafe(16)
        self.grants[code] = Grant(
            nonce=query.get("nonce"),
            redirect_uri=redirect_uri,
            challenge=query["code_challenge"],
            user=replace(self.user, groups=list(self.user.groups)),
        )
        back = {"code": code, "state": query.get("state", "")}
        return RedirectResponse(f"{redirect_uri}?{urlencode(back)}", status_code=302)

    async def token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        self.token_requests.append(form)
        if not self._client_authenticated(request.headers.get("authorization", "")):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self.grants.pop(form.get("code", ""), None)  # a code works once
        if (
            grant is None
            or form.get("grant_type") != "authorization_code"
            or form.get("redirect_uri") != grant.redirect_uri
        ):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        verifier = form.get("code_verifier", "")
        if _b64url(hashlib.sha256(verifier.encode()).digest()) != grant.challenge:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "PKCE"}, status_code=400
            )
        return JSONResponse(
            {
                "access_token": secrets.token_urlsafe(16),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": self.id_token(grant),
            }
        )

    async def jwks(self, _: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    # --- tokens ---------------------------------------------------------------------

    def _client_authenticated(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
        return unquote(client_id) == self.client_id and unquote(secret) == self.client_secret

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        faults = self.faults
        claims: dict[str, Any] = {
            "iss": faults.issuer or self.issuer,
            "sub": grant.user.sub,
            "aud": faults.audience or self.client_id,
            "iat": now - 7200 if faults.expired else now,
            "exp": now - 3600 if faults.expired else now + 300,
            "nonce": faults.nonce or grant.nonce,
            "name": grant.user.name,
            "email_verified": grant.user.email_verified,
            "groups": grant.user.groups,
        }
        if grant.user.email is not None:
            claims["email"] = grant.user.email
        key = self.key
        if faults.foreign_key:
            key = RSAKey.generate_key(2048, parameters={"kid": KEY_ID}, private=True)
        token = jwt.encode({"alg": "RS256", "kid": KEY_ID}, claims, key)
        if faults.tampered:
            header, _, signature = token.split(".")
            forged = claims | {"sub": "someone-else", "email": "mallory@example.org"}
            token = f"{header}.{_b64url(json.dumps(forged).encode())}.{signature}"
        return token
