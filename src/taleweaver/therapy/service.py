"""The therapeutic layer's one entry point for transports: profiles, goals, markers,
assessments (with the crisis protocol), progress, export and retention."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from taleweaver.auth import AuditLog
from taleweaver.domain.crisis import CrisisProtocol, CrisisResponse, CrisisSignal
from taleweaver.domain.events import JSON
from taleweaver.domain.sessions import SessionFilter
from taleweaver.domain.therapy import (
    PHQ9_SELF_HARM_ITEM,
    Bucket,
    Incompatibility,
    Instrument,
    MarkerType,
    ProfileInput,
    WorldParams,
    compatibility,
    score_answers,
)
from taleweaver.store.database import Database
from taleweaver.store.events import EventStore
from taleweaver.store.queries import Queries
from taleweaver.store.therapy_schema import therapy_profiles
from taleweaver.therapy.catalog import InstrumentText, instruments, lexicon
from taleweaver.therapy.profiles import Profiles, delete_records, now, utc
from taleweaver.therapy.progress import player_rows, progress_report
from taleweaver.therapy.projection import Projection
from taleweaver.therapy.records import Records

EXPORT_PAGE = 200
MAX_EXPORT_MESSAGES = 1_000_000


@dataclass(frozen=True, slots=True)
class AssessmentOutcome:
    record: JSON
    # Set when the answers raised the crisis protocol (a positive PHQ-9 item 9).
    crisis: CrisisResponse | None
    stored: bool


@dataclass(frozen=True, slots=True)
class PurgeReport:
    players: int
    deleted: dict[str, int]


class TherapyService:
    def __init__(
        self,
        db: Database,
        store: EventStore,
        queries: Queries,
        audit: AuditLog,
        crisis: CrisisProtocol | None,
    ) -> None:
        self.db = db
        self.queries = queries
        self.audit = audit
        self.crisis = crisis
        self.profiles = Profiles(db, audit)
        self.records = Records(db, store.sealer)
        self.projection = Projection(db, store, self.profiles, lexicon())

    # --- profile ----------------------------------------------------------------------

    async def profile(self, workspace_id: str, user_id: str) -> JSON:
        return await self.profiles.get(workspace_id, user_id)

    async def put_profile(
        self, workspace_id: str, user_id: str, data: ProfileInput, *, actor: str
    ) -> JSON:
        return await self.profiles.put(workspace_id, user_id, data, actor=actor)

    # --- goals and markers --------------------------------------------------------------

    async def goals(self, workspace_id: str, user_id: str) -> list[JSON]:
        await self.projection.catch_up(workspace_id, user_id)
        return await self.records.goals(workspace_id, user_id)

    async def create_goal(self, workspace_id: str, user_id: str, **fields: Any) -> JSON:
        await self.profiles.consented(workspace_id, user_id)
        return await self.records.create_goal(workspace_id, user_id, **fields)

    async def update_goal(
        self, workspace_id: str, user_id: str, goal_id: str, **fields: Any
    ) -> JSON:
        await self.profiles.consented(workspace_id, user_id)
        await self.projection.catch_up(workspace_id, user_id)
        return await self.records.update_goal(workspace_id, user_id, goal_id, **fields)

    async def delete_goal(self, workspace_id: str, user_id: str, goal_id: str) -> None:
        await self.records.delete_goal(workspace_id, user_id, goal_id)

    async def markers(self, workspace_id: str, user_id: str) -> list[JSON]:
        await self.projection.catch_up(workspace_id, user_id)
        return await self.records.markers(workspace_id, user_id)

    async def create_marker(
        self,
        workspace_id: str,
        user_id: str,
        kind: MarkerType,
        *,
        note: str,
        goal_id: str | None,
    ) -> JSON:
        await self.profiles.consented(workspace_id, user_id)
        return await self.records.create_marker(
            workspace_id, user_id, kind, note=note, goal_id=goal_id, source="manual"
        )

    # --- assessments ------------------------------------------------------------------

    def instruments(self) -> list[InstrumentText]:
        """The assessment instruments' exact item texts and answer labels."""
        return list(instruments().values())

    async def assessments(self, workspace_id: str, user_id: str) -> list[JSON]:
        return await self.records.assessments(workspace_id, user_id)

    async def take_assessment(
        self, workspace_id: str, user_id: str, instrument: Instrument, answers: list[int]
    ) -> AssessmentOutcome:
        """Score and store the answers; a positive PHQ-9 item 9 raises the crisis
        protocol. Without consent nothing is stored, but a crisis is still raised:
        someone at risk is never turned away for a missing checkbox."""
        scored = score_answers(instrument, answers)
        profile = await self.profiles.find(workspace_id, user_id)
        stored = bool(profile and profile["consent"].get("therapy_data"))
        if stored:
            record = await self.records.add_assessment(
                workspace_id, user_id, instrument, answers, scored
            )
        else:
            record = {
                "id": None,
                "instrument": str(instrument),
                "answers": list(answers),
                "score": scored.score,
                "severity": scored.severity,
                "crisis_level": scored.crisis,
                "taken_at": now(),
            }
        response = None
        if scored.crisis is not None:
            response = await self._raise(workspace_id, user_id, record, scored.crisis, answers)
        return AssessmentOutcome(record, response, stored)

    async def _raise(
        self, workspace_id: str, user_id: str, record: JSON, level: Any, answers: list[int]
    ) -> CrisisResponse:
        signal = CrisisSignal(
            workspace_id=workspace_id,
            user_id=user_id,
            level=level,
            categories=["self_harm"],
            source="assessment",
            ref=record["id"],
            detail={
                "instrument": record["instrument"],
                "item": PHQ9_SELF_HARM_ITEM,
                "answer": answers[PHQ9_SELF_HARM_ITEM - 1],
            },
        )
        if self.crisis is not None:
            return await self.crisis.raise_crisis(signal)
        # No protocol wired (a bare engine): still say something supportive, and leave
        # a trace for the people who run this instance.
        await self.audit.record(
            "system",
            "therapy.crisis_unhandled",
            workspace_id=workspace_id,
            target=user_id,
            details={"ref": record["id"], "level": level},
        )
        return CrisisResponse(
            message=(
                "Thank you for answering honestly. Thoughts of being better off dead or of "
                "hurting yourself matter: please reach out to someone you trust, your "
                "therapist, or local emergency services now."
            ),
            resources=[{"name": "Emergency services", "contact": "your local emergency number"}],
        )

    # --- emotions, progress -----------------------------------------------------------

    async def emotions(self, workspace_id: str, user_id: str, *, limit: int = 500) -> list[JSON]:
        await self.projection.catch_up(workspace_id, user_id)
        rows = await player_rows(self.db, workspace_id, user_id)
        return rows["emotions"][-limit:]

    async def progress(
        self, workspace_id: str, user_id: str, bucket: Bucket, since: datetime | None = None
    ) -> JSON:
        await self.projection.catch_up(workspace_id, user_id)
        return progress_report(await player_rows(self.db, workspace_id, user_id, since), bucket)

    # --- compatibility ------------------------------------------------------------------

    async def compatibility(
        self, workspace_id: str, user_id: str, world: WorldParams
    ) -> list[Incompatibility]:
        profile = await self.profiles.get(workspace_id, user_id)
        return compatibility(profile["intensity"], profile["avoid_topics"], world)

    # --- export and retention -----------------------------------------------------------

    async def export(self, workspace_id: str, user_id: str, *, actor: str) -> JSON:
        """Everything stored about a player, their sessions and messages included."""
        await self.projection.catch_up(workspace_id, user_id)
        profile = await self.profiles.find(workspace_id, user_id)
        rows = await player_rows(self.db, workspace_id, user_id)
        sessions = []
        offset = 0
        while True:
            page, total = await self.queries.sessions(
                workspace_id,
                SessionFilter(owners=frozenset({user_id})),
                limit=EXPORT_PAGE,
                offset=offset,
            )
            for session in page:
                messages = await self.queries.messages(session["id"], limit=MAX_EXPORT_MESSAGES)
                sessions.append(
                    {
                        "id": session["id"],
                        "kind": session["kind"],
                        "title": session["title"],
                        "created_at": session["created_at"],
                        "messages": messages,
                    }
                )
            offset += EXPORT_PAGE
            if offset >= total:
                break
        await self.audit.record(
            actor, "therapy.exported", workspace_id=workspace_id, target=user_id
        )
        return {
            "user_id": user_id,
            "workspace_id": workspace_id,
            "exported_at": now(),
            "profile": profile,
            "goals": rows["goals"],
            "goal_progress": rows["moves"],
            "markers": rows["markers"],
            "assessments": [self.records.open_assessment(a) for a in rows["assessments"]],
            "emotions": rows["emotions"],
            "sessions": sessions,
        }

    async def purge(self, *, at: datetime | None = None) -> PurgeReport:
        """Delete therapy records older than each player's retention period, one
        transaction and one audit event per workspace. Run it daily (cron:
        `taleweaver therapy purge`)."""
        moment = at or now()
        async with self.db.read() as conn:
            players = (
                await conn.execute(
                    sa.select(
                        therapy_profiles.c.workspace_id,
                        therapy_profiles.c.user_id,
                        therapy_profiles.c.retention_days,
                    ).order_by(therapy_profiles.c.workspace_id)
                )
            ).all()
        by_workspace: dict[str, list[tuple[str, int]]] = {}
        for workspace_id, user_id, days in players:
            by_workspace.setdefault(workspace_id, []).append((user_id, int(days)))
        totals: dict[str, int] = {}
        for workspace_id, members in by_workspace.items():
            deleted: dict[str, int] = {}
            async with self.db.write() as conn:
                await self.db.lock(conn)
                for user_id, days in members:
                    cutoff = utc(moment) - timedelta(days=days)
                    found = await delete_records(conn, workspace_id, user_id, before=cutoff)
                    for table, count in found.items():
                        deleted[table] = deleted.get(table, 0) + count
                await self.audit.record(
                    "system",
                    "therapy.purged",
                    workspace_id=workspace_id,
                    details={"players": len(members), "deleted": deleted, "at": moment.isoformat()},
                    conn=conn,
                )
            for table, count in deleted.items():
                totals[table] = totals.get(table, 0) + count
        return PurgeReport(len(players), totals)
