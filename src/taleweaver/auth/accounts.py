"""Users, first-run setup and workspaces (memberships live in `memberships.py`)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.auth.audit import AuditLog
from taleweaver.auth.memberships import Memberships
from taleweaver.auth.passwords import check_strength, hash_password
from taleweaver.auth.policy import Role
from taleweaver.auth.principal import LOCAL_USER_ID
from taleweaver.auth.tokens import digest, new_secret, same
from taleweaver.domain.errors import Conflict, InvalidInput, NotFound, Unauthorized
from taleweaver.domain.events import JSON
from taleweaver.store.database import Database
from taleweaver.store.schema import (
    DEFAULT_WORKSPACE_ID,
    assignments,
    identities,
    instance_state,
    memberships,
    sessions,
    users,
    workspaces,
)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
# What `{{user}}` and chat exports call the laptop's player until they pick a name.
LOCAL_DISPLAY_NAME = "Player"
_OLD_LOCAL_DISPLAY_NAME = "Local user"  # the default before: nobody chose it
MAX_DISPLAY_NAME = 200
SETUP_TOKEN_KEY = "setup_token_digest"
USER_COLUMNS = [
    users.c.id,
    users.c.email,
    users.c.display_name,
    users.c.is_active,
    users.c.is_instance_admin,
    users.c.created_at,
]


def _now() -> datetime:
    return datetime.now(UTC)


def normalise_email(email: str) -> str:
    cleaned = email.strip().lower()
    if not _EMAIL.match(cleaned) or len(cleaned) > 320:
        raise InvalidInput(f"not an email address: {email!r}")
    return cleaned


def _workspace_dict(row: sa.Row[tuple[object, ...]]) -> JSON:
    data = dict(row._mapping)
    # SQLite hands timestamps back without their zone; they were written in UTC.
    if data["created_at"].tzinfo is None:
        data["created_at"] = data["created_at"].replace(tzinfo=UTC)
    return data


class Accounts(Memberships):
    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        *,
        sensitivity_changed: Callable[[str], None] | None = None,
    ) -> None:
        self.db = db
        self.audit = audit
        # Told after a workspace's `sensitive` flag is written, so this process seals
        # (or stops sealing) its content from the next write on, not after a cache expiry.
        self.sensitivity_changed = sensitivity_changed

    # --- users ------------------------------------------------------------------

    async def ensure_local_user(self) -> None:
        """The laptop's implicit user: owns the default workspace, has no password."""
        async with self.db.write() as conn:
            name = await conn.scalar(
                sa.select(users.c.display_name).where(users.c.id == LOCAL_USER_ID)
            )
            if name == _OLD_LOCAL_DISPLAY_NAME:
                await conn.execute(
                    users.update()
                    .where(users.c.id == LOCAL_USER_ID)
                    .values(display_name=LOCAL_DISPLAY_NAME)
                )
            if name is None:
                await conn.execute(
                    users.insert().values(
                        id=LOCAL_USER_ID,
                        email="local@localhost",
                        display_name=LOCAL_DISPLAY_NAME,
                        password_hash=None,
                        is_active=True,
                        is_instance_admin=True,
                        failed_logins=0,
                        locked_until=None,
                        created_at=_now(),
                    )
                )
                await self._add_member(conn, DEFAULT_WORKSPACE_ID, LOCAL_USER_ID, Role.OWNER)

    async def real_account_count(self) -> int:
        async with self.db.read() as conn:
            value = await conn.scalar(
                sa.select(sa.func.count()).select_from(users).where(users.c.id != LOCAL_USER_ID)
            )
        return int(value or 0)

    async def create_user(
        self,
        email: str,
        *,
        password: str | None,
        display_name: str | None = None,
        instance_admin: bool = False,
        actor: str = "system",
    ) -> JSON:
        """A new account with a personal workspace it owns.

        An instance admin also becomes an owner of the default local workspace, so
        what was made on the laptop before accounts existed stays reachable.
        """
        email = normalise_email(email)
        if password is not None:
            check_strength(password)
        user_id = uuid.uuid4().hex
        name = (display_name or email.split("@")[0]).strip()[:200] or email
        async with self.db.write() as conn:
            taken = await conn.scalar(sa.select(users.c.id).where(users.c.email == email))
            if taken is not None:
                raise Conflict(f"an account for {email} exists already")
            await conn.execute(
                users.insert().values(
                    id=user_id,
                    email=email,
                    display_name=name,
                    password_hash=hash_password(password) if password else None,
                    is_active=True,
                    is_instance_admin=instance_admin,
                    failed_logins=0,
                    locked_until=None,
                    created_at=_now(),
                )
            )
            personal = await self._create_workspace(conn, f"{name}'s workspace", False)
            await self._add_member(conn, personal, user_id, Role.OWNER)
            if instance_admin:
                await self._add_member(conn, DEFAULT_WORKSPACE_ID, user_id, Role.OWNER)
            await self.audit.record(
                actor,
                "user.created",
                target=user_id,
                details={"email": email, "instance_admin": instance_admin},
                conn=conn,
            )
        return await self.user(user_id)

    async def set_display_name(self, user_id: str, name: str, *, actor: str) -> JSON:
        """Rename an account: the name `{{user}}` and chat exports use for its player
        when a session sets none of its own."""
        cleaned = " ".join(name.split())
        if not 0 < len(cleaned) <= MAX_DISPLAY_NAME:
            raise InvalidInput(f"a display name is 1 to {MAX_DISPLAY_NAME} characters")
        async with self.db.write() as conn:
            done = await conn.execute(
                users.update().where(users.c.id == user_id).values(display_name=cleaned)
            )
            if done.rowcount == 0:
                raise NotFound(f"user {user_id} not found")
            await self.audit.record(
                actor, "user.renamed", target=user_id, details={"display_name": cleaned}, conn=conn
            )
        return await self.user(user_id)

    async def user(self, user_id: str) -> JSON:
        async with self.db.read() as conn:
            row = (
                await conn.execute(sa.select(*USER_COLUMNS).where(users.c.id == user_id))
            ).first()
        if row is None:
            raise NotFound(f"user {user_id} not found")
        return dict(row._mapping)

    async def user_by_email(self, email: str) -> JSON | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(*USER_COLUMNS).where(users.c.email == normalise_email(email))
                )
            ).first()
        return None if row is None else dict(row._mapping)

    async def find_by_identity(self, provider: str, subject: str) -> str | None:
        """The user a single sign-on identity (issuer, subject) is linked to."""
        async with self.db.read() as conn:
            return await conn.scalar(
                sa.select(identities.c.user_id).where(
                    identities.c.provider == provider, identities.c.subject == subject
                )
            )

    async def link_identity(
        self, user_id: str, provider: str, subject: str, email: str | None, *, how: str
    ) -> None:
        """Link a single sign-on identity to an account, with an audit entry."""
        async with self.db.write() as conn:
            try:
                await conn.execute(
                    identities.insert().values(
                        provider=provider,
                        subject=subject,
                        user_id=user_id,
                        email=email,
                        created_at=_now(),
                    )
                )
            except sa.exc.IntegrityError as exc:
                raise Conflict("this sign-in identity is linked to an account already") from exc
            await self.audit.record(
                user_id,
                "identity.linked",
                target=user_id,
                details={"provider": provider, "subject": subject, "email": email, "how": how},
                conn=conn,
            )

    async def list_users(self) -> list[JSON]:
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(*USER_COLUMNS).order_by(users.c.created_at))).all()
        return [dict(r._mapping) for r in rows]

    # --- first-run setup ----------------------------------------------------------

    async def issue_setup_token(self) -> str | None:
        """A one-time token to create the first admin, when there is none yet."""
        async with self.db.write() as conn:
            await self.db.lock(conn)
            admins = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(users)
                .where(users.c.is_instance_admin, users.c.id != LOCAL_USER_ID)
            )
            if admins:
                return None
            token = new_secret()
            await conn.execute(
                instance_state.delete().where(instance_state.c.key == SETUP_TOKEN_KEY)
            )
            await conn.execute(
                instance_state.insert().values(key=SETUP_TOKEN_KEY, value=digest(token))
            )
        return token

    async def complete_setup(self, token: str, email: str, password: str) -> JSON:
        async with self.db.write() as conn:
            await self.db.lock(conn)
            stored = await conn.scalar(
                sa.select(instance_state.c.value).where(instance_state.c.key == SETUP_TOKEN_KEY)
            )
            if stored is None or not same(stored, digest(token)):
                raise Unauthorized("the setup token is not valid (it works once)")
            # Refuse a bad email or password before the one-time token is spent.
            address = normalise_email(email)
            check_strength(password)
            taken = await conn.scalar(sa.select(users.c.id).where(users.c.email == address))
            if taken is not None:
                raise Conflict(f"an account for {address} exists already")
            await conn.execute(
                instance_state.delete().where(instance_state.c.key == SETUP_TOKEN_KEY)
            )
        return await self.create_user(email, password=password, instance_admin=True, actor="setup")

    # --- workspaces -------------------------------------------------------------------

    async def _create_workspace(self, conn: AsyncConnection, name: str, sensitive: bool) -> str:
        ws_id = uuid.uuid4().hex
        await conn.execute(
            workspaces.insert().values(
                id=ws_id, name=name[:200], created_at=_now(), sensitive=sensitive
            )
        )
        return ws_id

    async def create_workspace(self, owner_id: str, name: str, *, sensitive: bool) -> JSON:
        if not name.strip():
            raise InvalidInput("a workspace needs a name")
        async with self.db.write() as conn:
            ws_id = await self._create_workspace(conn, name.strip(), sensitive)
            await self._add_member(conn, ws_id, owner_id, Role.OWNER)
            await self.audit.record(
                owner_id,
                "workspace.created",
                workspace_id=ws_id,
                details={"name": name, "sensitive": sensitive},
                conn=conn,
            )
        return await self.workspace(ws_id)

    async def workspace(self, ws_id: str) -> JSON:
        async with self.db.read() as conn:
            row = (
                await conn.execute(sa.select(workspaces).where(workspaces.c.id == ws_id))
            ).first()
        if row is None:
            raise NotFound(f"workspace {ws_id} not found")
        return _workspace_dict(row)

    async def workspaces_of(self, user_id: str) -> list[JSON]:
        query = (
            sa.select(workspaces, memberships.c.role)
            .join(memberships, memberships.c.workspace_id == workspaces.c.id)
            .where(memberships.c.user_id == user_id)
            .order_by(workspaces.c.created_at, workspaces.c.id)
        )
        async with self.db.read() as conn:
            return [_workspace_dict(r) for r in (await conn.execute(query)).all()]

    async def update_workspace(
        self, ws_id: str, *, name: str | None, sensitive: bool | None, actor: str
    ) -> JSON:
        values: dict[str, object] = {}
        if name is not None:
            if not name.strip():
                raise InvalidInput("a workspace needs a name")
            values["name"] = name.strip()[:200]
        if sensitive is not None:
            values["sensitive"] = sensitive
        if values:
            async with self.db.write() as conn:
                await conn.execute(
                    workspaces.update().where(workspaces.c.id == ws_id).values(values)
                )
                await self.audit.record(
                    actor,
                    "workspace.updated",
                    workspace_id=ws_id,
                    details={k: v for k, v in values.items()},
                    conn=conn,
                )
            if sensitive is not None and self.sensitivity_changed is not None:
                self.sensitivity_changed(ws_id)
        return await self.workspace(ws_id)

    async def delete_workspace(self, ws_id: str, *, actor: str) -> None:
        if ws_id == DEFAULT_WORKSPACE_ID:
            raise Conflict("the default workspace cannot be deleted")
        async with self.db.write() as conn:
            await self.db.lock(conn)
            in_use = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(sessions)
                .where(sessions.c.workspace_id == ws_id)
            )
            if in_use:
                raise Conflict(f"the workspace still has {in_use} session(s); delete them first")
            await conn.execute(memberships.delete().where(memberships.c.workspace_id == ws_id))
            await conn.execute(assignments.delete().where(assignments.c.workspace_id == ws_id))
            await conn.execute(workspaces.delete().where(workspaces.c.id == ws_id))
            await self.audit.record(actor, "workspace.deleted", workspace_id=ws_id, conn=conn)
