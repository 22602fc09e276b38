"""The OpenID Connect relying party: discovery, the authorization request (state,
nonce and PKCE), the code exchange, and ID-token validation against the JWKS.

Every failure of the provider or of its tokens becomes `Unauthorized`, here only,
so a sign-in that cannot be proven answers 401 and nothing is created. ID tokens
are checked with joserfc, the JOSE library authlib itself now builds on
(`authlib.jose` is deprecated and warns on import).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx2
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from taleweaver.domain.errors import Unauthorized

__all__ = ["AuthRequest", "OidcClient"]

log = logging.getLogger(__name__)

# Asymmetric algorithms only: "none" and the HMAC family (keyed with the client
# secret, so anyone holding it could mint tokens) are never accepted.
SIGNING_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
CLOCK_LEEWAY = 60  # seconds of clock skew tolerated on exp, iat and nbf
METADATA_TTL = 3600.0
# An unknown key id triggers a JWKS refetch (key rotation), but at most this often,
# so forged tokens cannot make every request fetch the key set again.
JWKS_REFRESH_INTERVAL = 60.0
TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """Where to send the browser, and what its return to the callback must match."""

    url: str
    state: str
    nonce: str
    verifier: str


class OidcClient:
    """One provider, as configured; caches its metadata and signing keys."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str | None,
        scopes: str,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.scopes = scopes
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = 0.0

    def _client(self, metadata: dict[str, Any]) -> Any:
        method = None
        supported = metadata.get("token_endpoint_auth_methods_supported")
        # client_secret_basic unless the provider says it takes only client_secret_post.
        if (
            self.client_secret
            and isinstance(supported, list)
            and "client_secret_basic" not in supported
            and "client_secret_post" in supported
        ):
            method = "client_secret_post"
        return AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=self.client_secret,
            token_endpoint_auth_method=method,
            scope=self.scopes,
            code_challenge_method="S256",
            timeout=TIMEOUT,
        )

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with httpx2.AsyncClient(timeout=TIMEOUT) as client:
                response = await client.get(url, headers={"Accept": "application/json"})
                response.raise_for_status()
                body = response.json()
        except (httpx2.HTTPError, ValueError) as exc:
            log.warning("single sign-on: %s failed: %s", url, exc)
            raise Unauthorized("the sign-in provider could not be reached") from exc
        if not isinstance(body, dict):
            raise Unauthorized("the sign-in provider answered with something unexpected")
        return body

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document, fetched at most once an hour."""
        now = time.monotonic()
        if self._metadata is not None and now - self._metadata_at < METADATA_TTL:
            return self._metadata
        found = await self._get_json(f"{self.issuer}/.well-known/openid-configuration")
        # OpenID Connect Discovery 1.0 §4.3: ID tokens' `iss` is checked against this
        # document, so it must be the issuer configured, not one it points elsewhere to.
        if str(found.get("issuer", "")).rstrip("/") != self.issuer:
            raise Unauthorized("the sign-in provider's discovery document names another issuer")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(found.get(key), str):
                raise Unauthorized(f"the sign-in provider's discovery document has no {key}")
        self._metadata, self._metadata_at = found, now
        return found

    async def begin(self, redirect_uri: str) -> AuthRequest:
        """The authorization request for the code flow, with fresh state, nonce and
        PKCE verifier."""
        metadata = await self.metadata()
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        async with self._client(metadata) as client:
            url, _ = client.create_authorization_url(
                metadata["authorization_endpoint"],
                state=state,
                code_verifier=verifier,
                nonce=nonce,
                redirect_uri=redirect_uri,
            )
        return AuthRequest(url=url, state=state, nonce=nonce, verifier=verifier)

    async def finish(
        self, code: str, redirect_uri: str, *, nonce: str, verifier: str
    ) -> dict[str, Any]:
        """Exchange the code at the token endpoint; return the ID token's checked claims."""
        metadata = await self.metadata()
        try:
            async with self._client(metadata) as client:
                token = await client.fetch_token(
                    metadata["token_endpoint"],
                    grant_type="authorization_code",
                    code=code,
                    redirect_uri=redirect_uri,
                    code_verifier=verifier,
                )
        except OAuthError as exc:
            raise Unauthorized(f"the sign-in provider refused the code: {exc.error}") from exc
        except (httpx2.HTTPError, ValueError) as exc:
            log.warning("single sign-on: the token request failed: %s", exc)
            raise Unauthorized("the sign-in provider's token endpoint failed") from exc
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise Unauthorized("the sign-in provider returned no ID token")
        return await self.verify(id_token, nonce=nonce)

    async def verify(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        """Check the ID token's signature against the provider's keys, then its claims
        (OpenID Connect Core 1.0 §3.1.3.7)."""
        metadata = await self.metadata()
        offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = sorted(SIGNING_ALGORITHMS.intersection(offered))
        try:
            try:
                decoded = jwt.decode(id_token, await self._key_set(), algorithms=algorithms)
            except InvalidKeyIdError:
                keys = await self._key_set(refresh=True)
                decoded = jwt.decode(id_token, keys, algorithms=algorithms)
            claims: dict[str, Any] = decoded.claims
            jwt.JWTClaimsRegistry(
                leeway=CLOCK_LEEWAY,
                iss={"essential": True, "value": metadata["issuer"]},
                aud={"essential": True, "value": self.client_id},
                sub={"essential": True},
                exp={"essential": True},
                iat={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(claims)
        except (JoseError, ValueError) as exc:
            log.info("single sign-on: rejected an ID token: %s", exc)
            raise Unauthorized(f"the ID token is not valid: {_reason(exc)}") from exc
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.client_id:
            raise Unauthorized("the ID token is not valid: it was issued to another client")
        return claims

    async def _key_set(self, *, refresh: bool = False) -> KeySet:
        now = time.monotonic()
        if self._keys is not None and (not refresh or now - self._keys_at < JWKS_REFRESH_INTERVAL):
            return self._keys
        metadata = await self.metadata()
        try:
            keys = KeySet.import_key_set(await self._get_json(metadata["jwks_uri"]))  # type: ignore[arg-type]
        except (JoseError, ValueError) as exc:
            raise Unauthorized("the sign-in provider's signing keys cannot be read") from exc
        self._keys, self._keys_at = keys, now
        return keys


def _reason(exc: Exception) -> str:
    description = getattr(exc, "description", None) or getattr(exc, "error", None)
    return str(description or exc or type(exc).__name__)
