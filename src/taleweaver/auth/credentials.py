"""Proving who you are: password logins (with lockout), login sessions, API keys."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.auth.audit import AuditLog
from taleweaver.auth.passwords import dummy_hash, verify_password
from taleweaver.auth.policy import Scope
from taleweaver.auth.principal import Principal
from taleweaver.auth.tokens import digest, make_api_key, new_secret, same, split_api_key
from taleweaver.domain.errors import InvalidInput, NotFound, TooManyRequests, Unauthorized
from taleweaver.domain.events import JSON
from taleweaver.store.database import Database
from taleweaver.store.schema import api_keys, login_sessions, users

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(days=14)
# last_used_at is bookkeeping, not a log: write it at most this often per key.
LAST_USED_PRECISION = timedelta(minutes=1)

KEY_COLUMNS = [
    api_keys.c.id,
    api_keys.c.name,
    api_keys.c.scopes,
    api_keys.c.workspace_id,
    api_keys.c.created_at,
    api_keys.c.last_used_at,
    api_keys.c.revoked_at,
]


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Credentials:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    # --- passwords and login sessions ------------------------------------------------

    async def login(self, email: str, password: str, *, client: str) -> tuple[str, str, JSON]:
        """Check a password; return (session token, CSRF token, user).

        Five wrong passwords lock the account for fifteen minutes; the answer to a
        wrong email and to a wrong password is the same, and takes the same time.
        Each attempt is counted before its (slow) hash is checked, so parallel
        guesses cannot all slip in while the count still reads low.
        """
        address = email.strip().lower()
        row = await self._admit(address, client)
        stored = row.password_hash if row is not None and row.password_hash else dummy_hash()
        # argon2 takes tens of milliseconds of CPU: off the event loop, where it
        # would stall every other request (and every open write transaction).
        valid = await asyncio.to_thread(verify_password, stored, password)
        if not valid or row is None or not row.is_active:
            await self.audit.record(address, "login.failed", details={"client": client})
            raise Unauthorized("wrong email or password")
        async with self.db.write() as conn:
            await conn.execute(
                users.update()
                .where(users.c.id == row.id)
                .values(failed_logins=0, locked_until=None)
            )
            token, csrf = await self._open_session(conn, row.id, {"client": client})
        return token, csrf, {"id": row.id, "email": row.email, "display_name": row.display_name}

    async def _admit(self, address: str, client: str) -> sa.Row[Any] | None:
        """The account, once this attempt is counted against it (None: no account);
        TooManyRequests while it is locked.

        The attempt that reaches the limit locks the account at once, before its
        password is known: attempts racing it are refused, and if it was the right
        password its success lifts the lock again. A lock that has run out starts a
        fresh count."""
        async with self.db.write() as conn:
            await self.db.lock(conn)
            row = (
                await conn.execute(
                    sa.select(users).where(users.c.email == address).with_for_update()
                )
            ).first()
            if row is None:
                return None
            now = _now()
            locked_until = _utc(row.locked_until)
            if locked_until is not None and locked_until > now:
                await self.audit.record(
                    address, "login.locked", details={"client": client}, conn=conn
                )
            else:
                attempts = (0 if locked_until is not None else int(row.failed_logins or 0)) + 1
                values: dict[str, object] = {"failed_logins": attempts, "locked_until": None}
                if attempts >= MAX_FAILED_LOGINS:
                    values = {"failed_logins": 0, "locked_until": now + LOCKOUT}
                await conn.execute(users.update().where(users.c.id == row.id).values(values))
                locked_until = None
        if locked_until is not None:  # raised once the audit entry is committed
            raise TooManyRequests(
                "too many failed logins; try again later",
                retry_after=int((locked_until - now).total_seconds()) + 1,
            )
        return row

    async def start_session(self, user_id: str, *, client: str, via: str) -> tuple[str, str, JSON]:
        """A login session for a user someone else has proven (single sign-on);
        returns (session token, CSRF token, user) as `login` does."""
        async with self.db.write() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()
            if row is None or not row.is_active:
                raise Unauthorized("this account does not exist or is disabled")
            token, csrf = await self._open_session(conn, user_id, {"client": client, "via": via})
        return token, csrf, {"id": row.id, "email": row.email, "display_name": row.display_name}

    async def _open_session(
        self, conn: AsyncConnection, user_id: str, details: JSON
    ) -> tuple[str, str]:
        """Insert a login session and its audit entry in the caller's transaction."""
        token, csrf = new_secret(), new_secret()
        now = _now()
        await conn.execute(
            login_sessions.insert().values(
                token_hash=digest(token),
                user_id=user_id,
                csrf_token=csrf,
                created_at=now,
                expires_at=now + SESSION_LIFETIME,
            )
        )
        await self.audit.record(user_id, "login.succeeded", details=details, conn=conn)
        return token, csrf

    async def authenticate_session(self, token: str) -> Principal | None:
        query = (
            sa.select(
                login_sessions.c.csrf_token,
                login_sessions.c.expires_at,
                users.c.id,
                users.c.email,
                users.c.is_active,
                users.c.is_instance_admin,
            )
            .join(users, users.c.id == login_sessions.c.user_id)
            .where(login_sessions.c.token_hash == digest(token))
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None or not row.is_active:
            return None
        expires = _utc(row.expires_at)
        if expires is None or expires <= _now():
            return None
        return Principal(
            user_id=row.id,
            email=row.email,
            via="session",
            is_instance_admin=row.is_instance_admin,
            csrf_token=row.csrf_token,
        )

    async def logout(self, token: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                login_sessions.delete().where(login_sessions.c.token_hash == digest(token))
            )

    # --- API keys ------------------------------------------------------------------

    async def create_api_key(
        self, user_id: str, name: str, scopes: list[str], workspace_id: str | None
    ) -> tuple[str, JSON]:
        """A new key; the secret is in the returned token only and is never shown again."""
        if not name.strip():
            raise InvalidInput("an API key needs a name")
        try:
            chosen = sorted({str(Scope(s)) for s in scopes})
        except ValueError as exc:
            raise InvalidInput(f"scopes are {', '.join(Scope)}") from exc
        if not chosen:
            raise InvalidInput("an API key needs at least one scope")
        key_id = uuid.uuid4().hex[:16]
        token = make_api_key(key_id)
        secret = split_api_key(token)
        assert secret is not None
        async with self.db.write() as conn:
            await conn.execute(
                api_keys.insert().values(
                    id=key_id,
                    user_id=user_id,
                    name=name.strip()[:200],
                    secret_hash=digest(secret[1]),
                    scopes=chosen,
                    workspace_id=workspace_id,
                    created_at=_now(),
                    last_used_at=None,
                    revoked_at=None,
                )
            )
            await self.audit.record(
                user_id,
                "api_key.created",
                workspace_id=workspace_id,
                target=key_id,
                details={"scopes": chosen},
                conn=conn,
            )
        return token, await self._key(user_id, key_id)

    async def _key(self, user_id: str, key_id: str) -> JSON:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(*KEY_COLUMNS).where(
                        api_keys.c.id == key_id, api_keys.c.user_id == user_id
                    )
                )
            ).first()
        if row is None:
            raise NotFound(f"API key {key_id} not found")
        return _key_dict(row)

    async def list_api_keys(self, user_id: str) -> list[JSON]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(*KEY_COLUMNS)
                    .where(api_keys.c.user_id == user_id)
                    .order_by(api_keys.c.created_at)
                )
            ).all()
        return [_key_dict(r) for r in rows]

    async def revoke_api_key(self, user_id: str, key_id: str) -> JSON:
        await self._key(user_id, key_id)
        async with self.db.write() as conn:
            await conn.execute(
                api_keys.update()
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
            await self.audit.record(user_id, "api_key.revoked", target=key_id, conn=conn)
        return await self._key(user_id, key_id)

    async def authenticate_key(self, token: str) -> Principal | None:
        parts = split_api_key(token)
        if parts is None:
            return None
        key_id, secret = parts
        query = (
            sa.select(
                api_keys.c.secret_hash,
                api_keys.c.scopes,
                api_keys.c.workspace_id,
                api_keys.c.revoked_at,
                api_keys.c.last_used_at,
                users.c.id,
                users.c.email,
                users.c.is_active,
                users.c.is_instance_admin,
            )
            .join(users, users.c.id == api_keys.c.user_id)
            .where(api_keys.c.id == key_id)
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None or row.revoked_at is not None or not row.is_active:
            return None
        if not same(row.secret_hash, digest(secret)):
            return None
        now = _now()
        last = _utc(row.last_used_at)
        if last is None or now - last >= LAST_USED_PRECISION:
            async with self.db.write() as conn:
                await conn.execute(
                    api_keys.update().where(api_keys.c.id == key_id).values(last_used_at=now)
                )
                # Key use goes to the audit log as often as last_used_at moves.
                await self.audit.record(row.id, "api_key.used", target=key_id, conn=conn)
        return Principal(
            user_id=row.id,
            email=row.email,
            via="api_key",
            is_instance_admin=row.is_instance_admin,
            scopes=frozenset(row.scopes),
            key_workspace=row.workspace_id,
            key_id=key_id,
        )


def _key_dict(row: sa.Row[tuple[object, ...]]) -> JSON:
    data = dict(row._mapping)
    for column in ("created_at", "last_used_at", "revoked_at"):
        data[column] = _utc(data[column])
    return data
