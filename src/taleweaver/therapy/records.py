"""A player's goals (with their progress history), progress markers and assessments."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.errors import InvalidInput, KeyMissing, NotFound
from taleweaver.domain.events import JSON
from taleweaver.domain.therapy import (
    MAX_NOTE_CHARS,
    MAX_TITLE_CHARS,
    GoalStatus,
    Instrument,
    MarkerType,
    Scored,
)
from taleweaver.store.database import Database
from taleweaver.store.sealing import SEALED, Sealer
from taleweaver.store.therapy_schema import (
    assessment_aad,
    therapy_assessments,
    therapy_goal_progress,
    therapy_goals,
    therapy_markers,
)
from taleweaver.therapy.profiles import now, utc

MAX_GOALS = 50


def new_id() -> str:
    return uuid.uuid4().hex


def _row(row: Any, *stamps: str) -> JSON:
    data = dict(row._mapping)
    for name in stamps:
        if data.get(name) is not None:
            data[name] = utc(data[name])
    return data


def _title(title: str) -> str:
    cleaned = title.strip()
    if not cleaned or len(cleaned) > MAX_TITLE_CHARS:
        raise InvalidInput(f"a goal's title must be 1 to {MAX_TITLE_CHARS} characters")
    return cleaned


def _progress(value: int) -> int:
    if not 0 <= value <= 100:
        raise InvalidInput("progress must be between 0 and 100")
    return value


async def goals_in(conn: AsyncConnection, workspace_id: str, user_id: str) -> list[JSON]:
    rows = await conn.execute(
        sa.select(therapy_goals)
        .where(therapy_goals.c.workspace_id == workspace_id, therapy_goals.c.user_id == user_id)
        .order_by(therapy_goals.c.created_at, therapy_goals.c.id)
    )
    return [_row(r, "created_at", "updated_at") for r in rows]


async def set_progress(
    conn: AsyncConnection, goal: JSON, progress: int, *, source: str, at: datetime
) -> None:
    """Move a goal and remember the move; a goal at 100 counts as achieved."""
    values: JSON = {"progress": progress, "updated_at": at}
    if progress >= 100 and goal["status"] == GoalStatus.ACTIVE:
        values["status"] = str(GoalStatus.ACHIEVED)
    await conn.execute(
        therapy_goals.update().where(therapy_goals.c.id == goal["id"]).values(**values)
    )
    await conn.execute(
        therapy_goal_progress.insert().values(
            workspace_id=goal["workspace_id"],
            user_id=goal["user_id"],
            goal_id=goal["id"],
            progress=progress,
            source=source,
            at=at,
        )
    )
    goal.update(values)


async def add_marker(
    conn: AsyncConnection,
    workspace_id: str,
    user_id: str,
    kind: MarkerType,
    *,
    note: str,
    source: str,
    at: datetime,
    goal_id: str | None = None,
    session_id: str | None = None,
    turn_number: int | None = None,
) -> str:
    marker_id = new_id()
    await conn.execute(
        therapy_markers.insert().values(
            id=marker_id,
            workspace_id=workspace_id,
            user_id=user_id,
            type=str(kind),
            note=note[:MAX_NOTE_CHARS],
            goal_id=goal_id,
            session_id=session_id,
            turn_number=turn_number,
            source=source,
            at=at,
        )
    )
    return marker_id


class Records:
    """`sealer` seals assessment answers in sensitive workspaces, as session content
    is (None: nothing is sealed, and sealed rows refuse to read)."""

    def __init__(self, db: Database, sealer: Sealer | None = None) -> None:
        self.db = db
        self.sealer = sealer

    def open_assessment(self, record: JSON) -> JSON:
        """An assessment row with its answers as the player gave them."""
        answers = record["answers"]
        if not isinstance(answers, dict) or SEALED not in answers:
            return record
        if self.sealer is None:
            raise KeyMissing("an assessment is encrypted but no keys were given")
        aad = assessment_aad(record["workspace_id"], record["id"])
        return record | {"answers": json.loads(self.sealer.keys.decrypt(answers[SEALED], aad))}

    # --- goals ------------------------------------------------------------------------

    async def goals(self, workspace_id: str, user_id: str) -> list[JSON]:
        async with self.db.read() as conn:
            return await goals_in(conn, workspace_id, user_id)

    async def _goal(
        self, conn: AsyncConnection, workspace_id: str, user_id: str, goal_id: str
    ) -> JSON:
        row = (
            await conn.execute(
                sa.select(therapy_goals).where(
                    therapy_goals.c.id == goal_id,
                    therapy_goals.c.workspace_id == workspace_id,
                    therapy_goals.c.user_id == user_id,
                )
            )
        ).first()
        if row is None:
            raise NotFound(f"goal {goal_id} not found")
        return _row(row, "created_at", "updated_at")

    async def create_goal(
        self,
        workspace_id: str,
        user_id: str,
        *,
        title: str,
        description: str = "",
        approach: str | None = None,
        progress: int = 0,
    ) -> JSON:
        at = now()
        goal: JSON = {
            "id": new_id(),
            "workspace_id": workspace_id,
            "user_id": user_id,
            "title": _title(title),
            "description": description.strip()[:MAX_NOTE_CHARS],
            "approach": approach,
            "progress": _progress(progress),
            "status": str(GoalStatus.ACHIEVED if progress >= 100 else GoalStatus.ACTIVE),
            "created_at": at,
            "updated_at": at,
        }
        async with self.db.write() as conn:
            await self.db.lock(conn)
            count = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(therapy_goals)
                .where(
                    therapy_goals.c.workspace_id == workspace_id,
                    therapy_goals.c.user_id == user_id,
                )
            )
            if (count or 0) >= MAX_GOALS:
                raise InvalidInput(f"a player may have at most {MAX_GOALS} goals")
            await conn.execute(therapy_goals.insert().values(**goal))
            await conn.execute(
                therapy_goal_progress.insert().values(
                    workspace_id=workspace_id,
                    user_id=user_id,
                    goal_id=goal["id"],
                    progress=goal["progress"],
                    source="created",
                    at=at,
                )
            )
        return goal

    async def update_goal(
        self,
        workspace_id: str,
        user_id: str,
        goal_id: str,
        *,
        title: str | None = None,
        description: str | None = None,
        progress: int | None = None,
        status: GoalStatus | None = None,
    ) -> JSON:
        at = now()
        async with self.db.write() as conn:
            await self.db.lock(conn)
            goal = await self._goal(conn, workspace_id, user_id, goal_id)
            values: JSON = {}
            if title is not None:
                values["title"] = _title(title)
            if description is not None:
                values["description"] = description.strip()[:MAX_NOTE_CHARS]
            if status is not None:
                values["status"] = str(status)
            if values:
                values["updated_at"] = at
                await conn.execute(
                    therapy_goals.update().where(therapy_goals.c.id == goal_id).values(**values)
                )
                goal.update(values)
            if progress is not None and _progress(progress) != goal["progress"]:
                reached = progress >= 100 > goal["progress"]
                await set_progress(conn, goal, progress, source="manual", at=at)
                if reached:
                    await add_marker(
                        conn,
                        workspace_id,
                        user_id,
                        MarkerType.GOAL_ACHIEVED,
                        note=goal["title"],
                        source="manual",
                        at=at,
                        goal_id=goal_id,
                    )
        return goal

    async def delete_goal(self, workspace_id: str, user_id: str, goal_id: str) -> None:
        async with self.db.write() as conn:
            await self.db.lock(conn)
            await self._goal(conn, workspace_id, user_id, goal_id)
            await conn.execute(
                therapy_goal_progress.delete().where(therapy_goal_progress.c.goal_id == goal_id)
            )
            # Markers stay: a milestone reached is still part of the player's story.
            await conn.execute(
                therapy_markers.update()
                .where(therapy_markers.c.goal_id == goal_id)
                .values(goal_id=None)
            )
            await conn.execute(therapy_goals.delete().where(therapy_goals.c.id == goal_id))

    # --- markers ----------------------------------------------------------------------

    async def markers(self, workspace_id: str, user_id: str, *, limit: int = 500) -> list[JSON]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(therapy_markers)
                .where(
                    therapy_markers.c.workspace_id == workspace_id,
                    therapy_markers.c.user_id == user_id,
                )
                .order_by(therapy_markers.c.at.desc(), therapy_markers.c.id)
                .limit(limit)
            )
            return [_row(r, "at") for r in rows]

    async def create_marker(
        self,
        workspace_id: str,
        user_id: str,
        kind: MarkerType,
        *,
        note: str,
        goal_id: str | None,
        source: str,
    ) -> JSON:
        at = now()
        async with self.db.write() as conn:
            await self.db.lock(conn)
            if goal_id is not None:
                await self._goal(conn, workspace_id, user_id, goal_id)
            marker_id = await add_marker(
                conn, workspace_id, user_id, kind, note=note, source=source, at=at, goal_id=goal_id
            )
            row = (
                await conn.execute(
                    sa.select(therapy_markers).where(therapy_markers.c.id == marker_id)
                )
            ).one()
        return _row(row, "at")

    # --- assessments ------------------------------------------------------------------

    async def assessments(self, workspace_id: str, user_id: str, *, limit: int = 500) -> list[JSON]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(therapy_assessments)
                .where(
                    therapy_assessments.c.workspace_id == workspace_id,
                    therapy_assessments.c.user_id == user_id,
                )
                .order_by(therapy_assessments.c.taken_at.desc(), therapy_assessments.c.id)
                .limit(limit)
            )
            return [self.open_assessment(_row(r, "taken_at")) for r in rows]

    async def add_assessment(
        self,
        workspace_id: str,
        user_id: str,
        instrument: Instrument,
        answers: list[int],
        scored: Scored,
    ) -> JSON:
        record: JSON = {
            "id": new_id(),
            "workspace_id": workspace_id,
            "user_id": user_id,
            "instrument": str(instrument),
            "answers": list(answers),
            "score": scored.score,
            "severity": scored.severity,
            "crisis_level": scored.crisis,
            "taken_at": now(),
        }
        async with self.db.write() as conn:
            stored = record
            if self.sealer is not None and await self.sealer.sensitive(conn, workspace_id):
                aad = assessment_aad(workspace_id, record["id"])
                sealed = self.sealer.keys.encrypt(json.dumps(record["answers"]), aad)
                stored = record | {"answers": {SEALED: sealed}}
            await conn.execute(therapy_assessments.insert().values(**stored))
        return record
