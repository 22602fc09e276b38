"""Player profiles: therapeutic preferences, crisis contacts, consent and retention.

Consent gates everything else: without `therapy_data` consent a profile holds only
the refusal itself, and withdrawing consent deletes every therapy record of the
player in the same transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.auth import AuditLog
from taleweaver.config import MAX_RETENTION_DAYS, TherapySettings
from taleweaver.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from taleweaver.domain.events import JSON
from taleweaver.domain.therapy import MAX_INTENSITY, MIN_INTENSITY, ProfileInput
from taleweaver.store.database import Database
from taleweaver.store.therapy_schema import (
    therapy_assessments,
    therapy_emotions,
    therapy_goal_progress,
    therapy_goals,
    therapy_markers,
    therapy_profiles,
)

# Tables holding a player's records (everything but the profile itself).
RECORD_TABLES = [
    therapy_goal_progress,
    therapy_goals,
    therapy_markers,
    therapy_assessments,
    therapy_emotions,
]


def default_retention_days() -> int:
    """`TALEWEAVER_THERAPY_RETENTION_DAYS`, for profiles that do not set their own."""
    return TherapySettings.read().therapy_retention_days


def now() -> datetime:
    return datetime.now(UTC)


def utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def profile_dict(row: Any) -> JSON:
    data = dict(row._mapping)
    data["created_at"] = utc(data["created_at"])
    data["updated_at"] = utc(data["updated_at"])
    return data


class Profiles:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    async def get(self, workspace_id: str, user_id: str) -> JSON:
        found = await self.find(workspace_id, user_id)
        if found is None:
            raise NotFound(f"player {user_id} has no therapy profile yet")
        return found

    async def find(self, workspace_id: str, user_id: str) -> JSON | None:
        async with self.db.read() as conn:
            return await self.find_in(conn, workspace_id, user_id)

    async def find_in(self, conn: AsyncConnection, workspace_id: str, user_id: str) -> JSON | None:
        row = (
            await conn.execute(
                sa.select(therapy_profiles).where(
                    therapy_profiles.c.workspace_id == workspace_id,
                    therapy_profiles.c.user_id == user_id,
                )
            )
        ).first()
        return None if row is None else profile_dict(row)

    async def consented(self, workspace_id: str, user_id: str) -> JSON:
        """The profile, provided the player agreed to therapy data being stored."""
        found = await self.find(workspace_id, user_id)
        if found is None or not found["consent"].get("therapy_data"):
            raise Conflict(
                f"player {user_id} has not consented to storing therapy data: "
                "PUT their profile with consent.therapy_data = true first"
            )
        return found

    async def put(self, workspace_id: str, user_id: str, data: ProfileInput, *, actor: str) -> JSON:
        if not MIN_INTENSITY <= data.intensity <= MAX_INTENSITY:
            raise InvalidInput(f"intensity must be between {MIN_INTENSITY} and {MAX_INTENSITY}")
        retention = data.retention_days or default_retention_days()
        if not 1 <= retention <= MAX_RETENTION_DAYS:
            raise InvalidInput(f"retention_days must be between 1 and {MAX_RETENTION_DAYS}")
        at = now()
        keep = data.therapy_data
        values: JSON = {
            # Without consent, only the refusal is kept: no preferences, no contacts.
            "approaches": [str(a) for a in dict.fromkeys(data.approaches)] if keep else [],
            "intensity": data.intensity if keep else 2,
            "avoid_topics": [t.strip() for t in data.avoid_topics if t.strip()] if keep else [],
            "crisis_contacts": data.crisis_contacts if keep else [],
            "consent": {
                "therapy_data": keep,
                "emotion_tracking": keep and data.emotion_tracking,
                "at": at.isoformat(),
                "by": actor,
            },
            "retention_days": retention,
            "updated_at": at,
        }
        async with self.db.write() as conn:
            await self.db.lock(conn)
            before = await self.find_in(conn, workspace_id, user_id)
            old: JSON = before["consent"] if before is not None else {}
            new: JSON = values["consent"]
            changed = any(old.get(k) != new[k] for k in ("therapy_data", "emotion_tracking"))
            granted = any(new[k] and not old.get(k) for k in ("therapy_data", "emotion_tracking"))
            if granted and actor != user_id:
                # Anyone who may write the records may withdraw consent (it only deletes);
                # only the player can give it.
                raise Forbidden("only the player themselves can give consent")
            if before is None:
                await conn.execute(
                    therapy_profiles.insert().values(
                        workspace_id=workspace_id, user_id=user_id, created_at=at, **values
                    )
                )
            else:
                if not changed:
                    values["consent"] = old  # keeps when and by whom consent was given
                await conn.execute(
                    therapy_profiles.update()
                    .where(
                        therapy_profiles.c.workspace_id == workspace_id,
                        therapy_profiles.c.user_id == user_id,
                    )
                    .values(**values)
                )
            deleted: dict[str, int] = {}
            if old.get("therapy_data") and not keep:
                deleted = await delete_records(conn, workspace_id, user_id)
            elif old.get("emotion_tracking") and not new["emotion_tracking"]:
                result = await conn.execute(
                    therapy_emotions.delete().where(
                        therapy_emotions.c.workspace_id == workspace_id,
                        therapy_emotions.c.user_id == user_id,
                    )
                )
                deleted = {"therapy_emotions": int(result.rowcount or 0)}
            if changed or before is None:
                await self.audit.record(
                    actor,
                    "therapy.consent_changed",
                    workspace_id=workspace_id,
                    target=user_id,
                    details={
                        "therapy_data": keep,
                        "emotion_tracking": new["emotion_tracking"],
                        "deleted": deleted,
                    },
                    conn=conn,
                )
            found = await self.find_in(conn, workspace_id, user_id)
        assert found is not None
        return found


async def delete_records(
    conn: AsyncConnection, workspace_id: str, user_id: str, *, before: datetime | None = None
) -> dict[str, int]:
    """Delete a player's therapy records (those older than `before`, when given)."""
    deleted: dict[str, int] = {}
    stamps = {
        "therapy_goal_progress": therapy_goal_progress.c.at,
        "therapy_goals": therapy_goals.c.updated_at,
        "therapy_markers": therapy_markers.c.at,
        "therapy_assessments": therapy_assessments.c.taken_at,
        "therapy_emotions": therapy_emotions.c.at,
    }
    for table in RECORD_TABLES:
        conditions = [table.c.workspace_id == workspace_id, table.c.user_id == user_id]
        if before is not None:
            conditions.append(stamps[table.name] < before)
        if table is therapy_goals and before is not None:
            # A goal that goes takes its whole history with it.
            stale = sa.select(therapy_goals.c.id).where(*conditions)
            await conn.execute(
                therapy_goal_progress.delete().where(therapy_goal_progress.c.goal_id.in_(stale))
            )
        result = await conn.execute(table.delete().where(*conditions))
        deleted[table.name] = int(result.rowcount or 0)
    return deleted
