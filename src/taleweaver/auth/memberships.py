"""Who belongs to which workspace, in what role, and which players a therapist follows."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.auth.audit import AuditLog
from taleweaver.auth.policy import Role
from taleweaver.auth.principal import LOCAL_USER_ID
from taleweaver.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from taleweaver.domain.events import JSON
from taleweaver.store import sqlite_fast
from taleweaver.store.database import Database
from taleweaver.store.schema import DEFAULT_WORKSPACE_ID, assignments, memberships, users


def _now() -> datetime:
    return datetime.now(UTC)


class Memberships:
    """The membership half of `Accounts` (which sets `db` and `audit`)."""

    db: Database
    audit: AuditLog

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
        async with self.db.read() as conn:
            if await conn.scalar(sa.select(users.c.id).where(users.c.id == user_id)) is None:
                raise NotFound(f"user {user_id} not found")
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
