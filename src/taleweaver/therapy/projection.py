"""The lazily caught-up projection of a player's therapy sessions.

Nothing runs inside the turn pipeline's commit: whenever someone reads a player's
emotions or progress (or the narrator's context is built), the committed turns
since each session's checkpoint are read and folded in, in one write transaction
that re-reads the checkpoints under the lock, so two readers catching up at once
fold each turn exactly once.

Per committed turn: the player's words become an emotion reading (with emotion
tracking consent), and a chosen option tagged as therapeutic moves its goal and
may earn a marker. Without consent the checkpoint still advances, so consenting
later never digs up turns played before it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.events import JSON, RecordedEvent
from taleweaver.domain.sessions import EventType, SessionKind
from taleweaver.domain.therapy import (
    ChoiceType,
    GoalStatus,
    LexiconEntry,
    MarkerType,
    TaggedChoice,
    choice_consequence,
    is_recovery,
    parse_choice_tag,
    read_emotions,
)
from taleweaver.store.database import Database
from taleweaver.store.events import EventStore
from taleweaver.store.schema import sessions
from taleweaver.store.therapy_schema import therapy_checkpoints, therapy_emotions
from taleweaver.therapy.profiles import Profiles, now
from taleweaver.therapy.records import add_marker, goals_in, set_progress


@dataclass(frozen=True, slots=True)
class Consent:
    therapy_data: bool
    emotion_tracking: bool


def pick_goal(goals: list[JSON], choice: TaggedChoice, session_goal_ids: list[str]) -> JSON | None:
    """The goal a chosen option works on: the one its tag names, else the least
    advanced active goal of the session (or, with none attached, of the player)."""
    active = [g for g in goals if g["status"] == GoalStatus.ACTIVE]
    if choice.goal_ref:
        named = [g for g in goals if g["id"].startswith(choice.goal_ref)]
        if len(named) == 1:
            return named[0]
    attached = [g for g in active if g["id"] in session_goal_ids]
    pool = attached or active
    return min(pool, key=lambda g: (g["progress"], g["created_at"])) if pool else None


@dataclass(slots=True)
class _Run:
    """What one catch-up knows while it folds, loaded once (goals only when needed)."""

    conn: AsyncConnection
    workspace_id: str
    user_id: str
    consent: Consent
    settings: JSON
    goals: list[JSON] | None = None
    # The last valence read in the session so far (for setback_overcome markers).
    last_valence: float | None = None
    last_loaded: bool = False


class Projection:
    def __init__(
        self,
        db: Database,
        store: EventStore,
        profiles: Profiles,
        lexicon: Mapping[str, LexiconEntry],
    ) -> None:
        self.db = db
        self.store = store
        self.profiles = profiles
        self.lexicon = lexicon

    async def catch_up(
        self,
        workspace_id: str,
        user_id: str,
        *,
        session_id: str | None = None,
        settings: JSON | None = None,
    ) -> int:
        """Fold every committed turn not yet seen (of one session, when given, whose
        settings the caller may already hold); returns how many events were read."""
        async with self.db.read() as conn:
            stale = await self._stale(conn, workspace_id, user_id, session_id)
        if not stale:
            return 0
        settings_of = {
            sid: settings
            if settings is not None and sid == session_id
            else await self._settings(sid)
            for sid in stale
        }
        fresh = {sid: await self.store.read_stream(sid, after=seen) for sid, seen in stale.items()}
        folded = 0
        async with self.db.write() as conn:
            await self.db.lock(conn)
            profile = await self.profiles.find_in(conn, workspace_id, user_id)
            consent = Consent(
                bool(profile and profile["consent"].get("therapy_data")),
                bool(profile and profile["consent"].get("emotion_tracking")),
            )
            seen_now = await self._checkpoints(conn, list(stale))
            goals: list[JSON] | None = None
            for sid, events in fresh.items():
                todo = [e for e in events if e.version > seen_now.get(sid, 0)]
                if not todo:
                    continue
                run = _Run(conn, workspace_id, user_id, consent, settings_of[sid], goals)
                if consent.therapy_data:
                    for event in todo:
                        await self._fold(run, event)
                goals = run.goals  # shared across sessions: one player's goals
                folded += len(todo)
                await self._save_checkpoint(
                    conn, workspace_id, sid, todo[-1].version, sid in seen_now
                )
        return folded

    async def _settings(self, session_id: str) -> JSON:
        first = await self.store.read_stream(session_id, after=0, limit=1)
        settings = first[0].payload.get("settings") if first else None
        return dict(settings or {})

    async def _stale(
        self, conn: AsyncConnection, workspace_id: str, user_id: str, session_id: str | None
    ) -> dict[str, int]:
        """The player's therapy sessions with events past their checkpoint, and how
        far each was read."""
        query = (
            sa.select(sessions.c.id, sessions.c.version, therapy_checkpoints.c.version)
            .select_from(
                sessions.outerjoin(
                    therapy_checkpoints, therapy_checkpoints.c.session_id == sessions.c.id
                )
            )
            .where(
                sessions.c.workspace_id == workspace_id,
                sessions.c.owner_id == user_id,
                sessions.c.kind == str(SessionKind.THERAPY),
            )
        )
        if session_id is not None:
            query = query.where(sessions.c.id == session_id)
        rows = (await conn.execute(query)).all()
        return {sid: seen or 0 for sid, version, seen in rows if version > (seen or 0)}

    async def _checkpoints(self, conn: AsyncConnection, session_ids: list[str]) -> dict[str, int]:
        rows = await conn.execute(
            sa.select(therapy_checkpoints.c.session_id, therapy_checkpoints.c.version).where(
                therapy_checkpoints.c.session_id.in_(session_ids)
            )
        )
        return {sid: int(version) for sid, version in rows}

    async def _save_checkpoint(
        self, conn: AsyncConnection, workspace_id: str, session_id: str, version: int, exists: bool
    ) -> None:
        if exists:
            await conn.execute(
                therapy_checkpoints.update()
                .where(therapy_checkpoints.c.session_id == session_id)
                .values(version=version, updated_at=now())
            )
        else:
            await conn.execute(
                therapy_checkpoints.insert().values(
                    session_id=session_id,
                    workspace_id=workspace_id,
                    version=version,
                    updated_at=now(),
                )
            )

    async def _fold(self, run: _Run, event: RecordedEvent) -> None:
        p = event.payload
        if event.type == EventType.TURN_COMMITTED:
            words: str | None = p["input"]["text"]
            chosen = None
            if p.get("action") == "choose" and words is not None:
                # The option's tag is kept apart from the words the player saw.
                tag = p["input"].get("tag")
                chosen = parse_choice_tag(f"[{tag}] {words}" if tag else words)
                words = chosen.text
            if run.consent.emotion_tracking and words:
                await self._feel(run, event, p["number"], words, replaces=False)
            if chosen is not None and chosen.type != ChoiceType.NARRATIVE:
                await self._consequence(run, event, chosen)
        elif event.type == EventType.TURN_EDITED and run.consent.emotion_tracking:
            edited = p.get("input_text")
            await self._feel(run, event, p["number"], edited or "", replaces=True)

    async def _feel(
        self, run: _Run, event: RecordedEvent, number: int, text: str, *, replaces: bool
    ) -> None:
        conn = run.conn
        if replaces:  # an edited turn's words replace its reading
            await conn.execute(
                therapy_emotions.delete().where(
                    therapy_emotions.c.session_id == event.stream_id,
                    therapy_emotions.c.turn_number == number,
                )
            )
        reading = read_emotions(text, self.lexicon)
        if reading is None:
            return
        if not run.last_loaded:
            run.last_valence = await conn.scalar(
                sa.select(therapy_emotions.c.valence)
                .where(
                    therapy_emotions.c.session_id == event.stream_id,
                    therapy_emotions.c.turn_number < number,
                )
                .order_by(therapy_emotions.c.turn_number.desc())
                .limit(1)
            )
            run.last_loaded = True
        previous, run.last_valence = run.last_valence, reading.valence
        await conn.execute(
            therapy_emotions.insert().values(
                session_id=event.stream_id,
                turn_number=number,
                workspace_id=event.workspace_id,
                user_id=run.user_id,
                valence=reading.valence,
                arousal=reading.arousal,
                emotions=reading.emotions,
                at=event.recorded_at,
            )
        )
        if not replaces and is_recovery(previous, reading.valence):
            await add_marker(
                conn,
                event.workspace_id,
                run.user_id,
                MarkerType.SETBACK_OVERCOME,
                note="the player's words turned from distress to ease",
                source="emotion",
                at=event.recorded_at,
                session_id=event.stream_id,
                turn_number=number,
            )

    async def _consequence(self, run: _Run, event: RecordedEvent, chosen: TaggedChoice) -> None:
        if run.goals is None:
            run.goals = await goals_in(run.conn, run.workspace_id, run.user_id)
        goal = pick_goal(run.goals, chosen, session_goal_ids(run.settings))
        if goal is None:
            return
        outcome = choice_consequence(goal["progress"], chosen)
        if outcome.progress != goal["progress"]:
            await set_progress(
                run.conn,
                goal,
                outcome.progress,
                source=f"choice:{chosen.type}",
                at=event.recorded_at,
            )
        if outcome.marker is not None:
            await add_marker(
                run.conn,
                event.workspace_id,
                goal["user_id"],
                outcome.marker,
                note=f"{goal['title']}: chose '{chosen.text}'",
                source="choice",
                at=event.recorded_at,
                goal_id=goal["id"],
                session_id=event.stream_id,
                turn_number=int(event.payload["number"]),
            )


def session_goal_ids(settings: Mapping[str, Any]) -> list[str]:
    """The goals a session works on (`settings.goal_ids`), in its settings' order."""
    attached = settings.get("goal_ids")
    return [str(g) for g in attached] if isinstance(attached, list) else []
