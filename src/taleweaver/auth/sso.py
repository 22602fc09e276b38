"""Who a single sign-on is: the linked account, an account linked by a verified
email, or a new one; and the workspace role the provider's claim maps to.

An email address only links when the provider vouches for it (`email_verified`),
and new accounts need one too: otherwise anyone able to set an address at the
provider could take over, or squat, the account that address belongs to.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taleweaver.auth.accounts import Accounts, normalise_email
from taleweaver.auth.audit import AuditLog
from taleweaver.auth.policy import Role
from taleweaver.auth.principal import LOCAL_USER_ID
from taleweaver.domain.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized

__all__ = ["Identity", "RoleMapping", "SingleSignOn", "provider_key"]

log = logging.getLogger(__name__)

PROVIDER_COLUMN = 100  # identities.provider
SUBJECT_COLUMN = 255  # identities.subject; OpenID Connect caps `sub` at 255 characters


def provider_key(issuer: str) -> str:
    """The issuer as stored with an identity: itself, or its digest when too long."""
    if len(issuer) <= PROVIDER_COLUMN:
        return issuer
    return "sha256:" + hashlib.sha256(issuer.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Identity:
    """The parts of a validated ID token that sign-in uses."""

    provider: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    claim_values: tuple[str, ...] = ()

    @classmethod
    def from_claims(
        cls, issuer: str, claims: Mapping[str, Any], role_claim: str | None
    ) -> Identity:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > SUBJECT_COLUMN:
            raise Unauthorized("the ID token's subject is missing or too long")
        email: str | None = None
        if isinstance(claims.get("email"), str):
            try:
                email = normalise_email(claims["email"])
            except InvalidInput:
                email = None
        # Some providers send the flag as the string "true".
        verified = claims.get("email_verified") in (True, "true")
        name = claims.get("name") or claims.get("preferred_username")
        raw = claims.get(role_claim) if role_claim else None
        values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        return cls(
            provider=provider_key(issuer),
            subject=subject,
            email=email,
            email_verified=verified and email is not None,
            name=name if isinstance(name, str) else None,
            claim_values=tuple(v for v in values if isinstance(v, str)),
        )


@dataclass(frozen=True, slots=True)
class RoleMapping:
    """Claim value -> role in one workspace; the first entry the user has wins."""

    claim: str | None
    roles: Mapping[str, Role]
    workspace_id: str

    def __post_init__(self) -> None:
        if Role.OWNER in self.roles.values():
            raise InvalidInput("a sign-in claim can never grant the owner role")

    def role_for(self, identity: Identity) -> tuple[str, Role] | None:
        for value, role in self.roles.items():
            if value in identity.claim_values:
                return value, role
        return None


class SingleSignOn:
    def __init__(self, accounts: Accounts, audit: AuditLog) -> None:
        self.accounts = accounts
        self.audit = audit

    async def account_for(self, identity: Identity, *, auto_create: bool) -> str:
        """The id of the account this identity signs in to, linking or creating it."""
        found = await self.accounts.find_by_identity(identity.provider, identity.subject)
        if found is not None:
            return found
        existing = await self.accounts.user_by_email(identity.email) if identity.email else None
        if existing is not None and existing["id"] != LOCAL_USER_ID:
            if not identity.email_verified:
                await self._refused(identity, "email not verified by the provider")
                raise Forbidden(
                    f"an account for {identity.email} exists, but the sign-in provider has "
                    "not verified that this address is yours, so it was not linked"
                )
            if not existing["is_active"]:
                raise Forbidden(f"the account for {identity.email} is disabled")
            await self._link(existing["id"], identity, how="verified_email")
            return str(existing["id"])
        if not auto_create:
            await self._refused(identity, "no linked account")
            raise Forbidden("no account is linked to this sign-in; ask an administrator")
        if identity.email is None or not identity.email_verified:
            await self._refused(identity, "no verified email")
            raise Forbidden(
                "the sign-in provider did not send a verified email address, "
                "which a new account needs"
            )
        user = await self.accounts.create_user(
            identity.email, password=None, display_name=identity.name, actor="sso"
        )
        await self._link(user["id"], identity, how="created")
        return str(user["id"])

    async def _link(self, user_id: str, identity: Identity, *, how: str) -> None:
        try:
            await self.accounts.link_identity(
                user_id, identity.provider, identity.subject, identity.email, how=how
            )
        except Conflict:
            # A concurrent first sign-in of the same identity linked it already.
            if await self.accounts.find_by_identity(identity.provider, identity.subject) != (
                user_id
            ):
                raise

    async def _refused(self, identity: Identity, reason: str) -> None:
        await self.audit.record(
            identity.email or identity.subject,
            "login.failed",
            details={"via": "sso", "provider": identity.provider, "reason": reason},
        )

    async def apply_role(self, user_id: str, identity: Identity, mapping: RoleMapping) -> None:
        """Grant or change the mapped role; an owner stays an owner whatever the claim."""
        mapped = mapping.role_for(identity)
        if mapped is None:
            return
        value, role = mapped
        ws_id = mapping.workspace_id
        try:
            await self.accounts.workspace(ws_id)
        except NotFound:
            log.warning("single sign-on: role workspace %r does not exist; no role mapped", ws_id)
            return
        current = await self.accounts.role_of(user_id, ws_id)
        if current in (Role.OWNER, role):
            return
        await self.accounts.set_member(ws_id, user_id, role, actor="sso", actor_role=Role.ADMIN)
        await self.audit.record(
            "sso",
            "role.mapped",
            workspace_id=ws_id,
            target=user_id,
            details={
                "claim": mapping.claim,
                "value": value,
                "from": None if current is None else str(current),
                "to": str(role),
            },
        )
