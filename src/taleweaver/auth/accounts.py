"""Users, workspaces, memberships and therapist assignments."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.auth.audit import AuditLog
from taleweaver.auth.passwords import check_strength, hash_password
from taleweaver.auth.policy import Role
from taleweaver.auth.principal import LOCAL_USER_ID
from taleweaver.auth.tokens import digest, new_secret, same
from taleweaver.domain.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from taleweaver.domain.events import JSON
from taleweaver.store import sqlite_fast
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


class Accounts:
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
            exists = await conn.scalar(sa.select(users.c.id).where(users.c.id == LOCAL_USER_ID))
            if exists is None:
                await conn.execute(
                    users.insert().values(
                        id=LOCAL_USER_ID,
                        email="local@localhost",
                        display_name="Local user",
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

    # --- memberships ------------------------------------------------------------------

    async def _add_member(
        self, conn: AsyncConnection, ws_id: str, user_id: str, role: Role
    ) -> None:
        await conn.execute(
            memberships.insert().values(
                workspace_id=ws_id, user_id=user_id, role=str(role), created_at=_now()
            )
        )

    async def role_of(self, user_id: str, ws_id: str) -> Role | None:
        # Asked on every request: one driver call on SQLite.
        found = await sqlite_fast.fetch_rows(
            self.db,
            "SELECT role FROM memberships WHERE workspace_id = :ws AND user_id = :user",
            {"ws": ws_id, "user": user_id},
        )
        return Role(found[0][0]) if found else None

    async def session_access(
        self, user_id: str, session_id: str
    ) -> tuple[str, str | None, Role | None, int] | None:
        """(workspace, session owner, the user's role there, session version) for a live
        session, in one read: every request about a session asks this first, and the
        version spares the turn that follows a read of its own."""
        found = await sqlite_fast.fetch_rows(
            self.db,
            "SELECT s.workspace_id, s.owner_id, m.role, s.version FROM sessions s "
            "LEFT JOIN memberships m ON m.workspace_id = s.workspace_id AND m.user_id = :user "
            "WHERE s.id = :sid",
            {"user": user_id, "sid": session_id},
        )
        if not found:
            return None
        workspace_id, owner_id, role, version = found[0]
        return workspace_id, owner_id, Role(role) if role is not None else None, int(version)

    async def default_workspace(self, user_id: str) -> str | None:
        if user_id == LOCAL_USER_ID:
            return DEFAULT_WORKSPACE_ID
        async with self.db.read() as conn:
            return await conn.scalar(
                sa.select(memberships.c.workspace_id)
                .where(memberships.c.user_id == user_id)
                .order_by(memberships.c.created_at, memberships.c.workspace_id)
                .limit(1)
            )

    async def members(self, ws_id: str) -> list[JSON]:
        query = (
            sa.select(
                users.c.id.label("user_id"), users.c.email, users.c.display_name, memberships.c.role
            )
            .join(users, users.c.id == memberships.c.user_id)
            .where(memberships.c.workspace_id == ws_id)
            .order_by(memberships.c.created_at)
        )
        async with self.db.read() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    async def set_member(
        self, ws_id: str, user_id: str, role: Role, *, actor: str, actor_role: Role
    ) -> None:
        """Add a member or change their role; only owners hand out or take away ownership."""
        await self.user(user_id)
        async with self.db.write() as conn:
            await self.db.lock(conn)
            current = await conn.scalar(
                sa.select(memberships.c.role).where(
                    memberships.c.workspace_id == ws_id, memberships.c.user_id == user_id
                )
            )
            touches_owner = role == Role.OWNER or current == Role.OWNER
            if touches_owner and actor_role != Role.OWNER:
                raise Forbidden("only an owner may grant or change the owner role")
            if current == Role.OWNER and role != Role.OWNER:
                await self._keep_an_owner(conn, ws_id)
            if current is None:
                await self._add_member(conn, ws_id, user_id, role)
            else:
                await conn.execute(
                    memberships.update()
                    .where(
                        memberships.c.workspace_id == ws_id,
                        memberships.c.user_id == user_id,
                    )
                    .values(role=str(role))
                )
            await self.audit.record(
                actor,
                "member.role_changed",
                workspace_id=ws_id,
                target=user_id,
                details={"from": current, "to": str(role)},
                conn=conn,
            )

    async def remove_member(
        self, ws_id: str, user_id: str, *, actor: str, actor_role: Role
    ) -> None:
        async with self.db.write() as conn:
            await self.db.lock(conn)
            current = await conn.scalar(
                sa.select(memberships.c.role).where(
                    memberships.c.workspace_id == ws_id, memberships.c.user_id == user_id
                )
            )
            if current is None:
                raise NotFound(f"user {user_id} is not a member of this workspace")
            if current == Role.OWNER:
                if actor_role != Role.OWNER:
                    raise Forbidden("only an owner may remove an owner")
                await self._keep_an_owner(conn, ws_id)
            await conn.execute(
                memberships.delete().where(
                    memberships.c.workspace_id == ws_id, memberships.c.user_id == user_id
                )
            )
            await conn.execute(
                assignments.delete().where(
                    assignments.c.workspace_id == ws_id,
                    sa.or_(
                        assignments.c.therapist_id == user_id, assignments.c.player_id == user_id
                    ),
                )
            )
            await self.audit.record(
                actor,
                "member.removed",
                workspace_id=ws_id,
                target=user_id,
                details={"role": current},
                conn=conn,
            )

    async def _keep_an_owner(self, conn: AsyncConnection, ws_id: str) -> None:
        owners = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(memberships)
            .where(memberships.c.workspace_id == ws_id, memberships.c.role == str(Role.OWNER))
        )
        if (owners or 0) <= 1:
            raise Conflict("a workspace must keep at least one owner")

    # --- therapist assignments ----------------------------------------------------------

    async def assign(self, ws_id: str, therapist_id: str, player_id: str, *, actor: str) -> None:
        if await self.role_of(therapist_id, ws_id) != Role.THERAPIST:
            raise InvalidInput("the therapist must be a member with the therapist role")
        if await self.role_of(player_id, ws_id) is None:
            raise InvalidInput("the player must be a member of this workspace")
        async with self.db.write() as conn:
            await conn.execute(
                assignments.delete().where(
                    assignments.c.workspace_id == ws_id,
                    assignments.c.therapist_id == therapist_id,
                    assignments.c.player_id == player_id,
                )
            )
            await conn.execute(
                assignments.insert().values(
                    workspace_id=ws_id, therapist_id=therapist_id, player_id=player_id
                )
            )
            await self.audit.record(
                actor,
                "therapist.assigned",
                workspace_id=ws_id,
                target=player_id,
                details={"therapist": therapist_id},
                conn=conn,
            )

    async def assigned_players(self, ws_id: str, therapist_id: str) -> frozenset[str]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(assignments.c.player_id).where(
                        assignments.c.workspace_id == ws_id,
                        assignments.c.therapist_id == therapist_id,
                    )
                )
            ).all()
        return frozenset(r.player_id for r in rows)
