"""Progress over time: a player's records folded into series by day, week or month."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime

import sqlalchemy as sa

from taleweaver.domain.events import JSON
from taleweaver.domain.therapy import Bucket, bucket_start
from taleweaver.store.database import Database
from taleweaver.store.therapy_schema import (
    therapy_assessments,
    therapy_emotions,
    therapy_goal_progress,
    therapy_goals,
    therapy_markers,
)
from taleweaver.therapy.profiles import utc


def goal_series(goals: list[JSON], moves: list[JSON], bucket: Bucket) -> list[JSON]:
    """Each goal's progress at the end of every bucket it moved in."""
    by_goal: dict[str, dict[str, int]] = defaultdict(dict)
    for move in sorted(moves, key=lambda m: (utc(m["at"]), m["id"])):
        start = bucket_start(move["at"], bucket).isoformat()
        by_goal[move["goal_id"]][start] = move["progress"]  # the last move in a bucket wins
    return [
        {
            "goal_id": goal["id"],
            "title": goal["title"],
            "points": [
                {"start": start, "progress": value}
                for start, value in by_goal.get(goal["id"], {}).items()
            ],
        }
        for goal in goals
    ]


def marker_series(markers: list[JSON], bucket: Bucket) -> list[JSON]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for marker in markers:
        counts[marker["type"]][bucket_start(marker["at"], bucket).isoformat()] += 1
    return [
        {"type": kind, "points": [{"start": s, "count": n} for s, n in sorted(found.items())]}
        for kind, found in sorted(counts.items())
    ]


def assessment_series(assessments: list[JSON], bucket: Bucket) -> list[JSON]:
    """Per instrument and bucket: the mean score, the last score and its severity."""
    grouped: dict[str, dict[str, list[JSON]]] = defaultdict(lambda: defaultdict(list))
    for taken in sorted(assessments, key=lambda a: utc(a["taken_at"])):
        start = bucket_start(taken["taken_at"], bucket).isoformat()
        grouped[taken["instrument"]][start].append(taken)
    return [
        {
            "instrument": instrument,
            "points": [
                {
                    "start": start,
                    "count": len(items),
                    "mean": round(sum(i["score"] for i in items) / len(items), 2),
                    "last": items[-1]["score"],
                    "severity": items[-1]["severity"],
                }
                for start, items in sorted(by_start.items())
            ],
        }
        for instrument, by_start in sorted(grouped.items())
    ]


def emotion_series(readings: list[JSON], bucket: Bucket) -> list[JSON]:
    grouped: dict[str, list[JSON]] = defaultdict(list)
    for reading in readings:
        grouped[bucket_start(reading["at"], bucket).isoformat()].append(reading)
    points = []
    for start, items in sorted(grouped.items()):
        named: Counter[str] = Counter()
        for item in items:
            named.update(item["emotions"])
        points.append(
            {
                "start": start,
                "turns": len(items),
                "valence": round(sum(i["valence"] for i in items) / len(items), 3),
                "arousal": round(sum(i["arousal"] for i in items) / len(items), 3),
                "dominant": min(named, key=lambda e: (-named[e], e)) if named else None,
            }
        )
    return points


async def player_rows(
    db: Database, workspace_id: str, user_id: str, since: datetime | None = None
) -> dict[str, list[JSON]]:
    """A player's goals, goal moves, markers, assessments and emotion readings."""
    tables = {
        "goals": (therapy_goals, therapy_goals.c.created_at, None),
        "moves": (therapy_goal_progress, therapy_goal_progress.c.at, since),
        "markers": (therapy_markers, therapy_markers.c.at, since),
        "assessments": (therapy_assessments, therapy_assessments.c.taken_at, since),
        "emotions": (therapy_emotions, therapy_emotions.c.at, since),
    }
    found: dict[str, list[JSON]] = {}
    async with db.read() as conn:
        for name, (table, stamp, after) in tables.items():
            query = sa.select(table).where(
                table.c.workspace_id == workspace_id, table.c.user_id == user_id
            )
            if after is not None:
                query = query.where(stamp >= after)
            rows = await conn.execute(query.order_by(stamp))
            found[name] = [_utc_row(dict(r._mapping)) for r in rows]
    return found


def _utc_row(row: JSON) -> JSON:
    return {k: utc(v) if isinstance(v, datetime) else v for k, v in row.items()}


def progress_report(rows: dict[str, list[JSON]], bucket: Bucket) -> JSON:
    return {
        "bucket": bucket,
        "goals": goal_series(rows["goals"], rows["moves"], bucket),
        "markers": marker_series(rows["markers"], bucket),
        "assessments": assessment_series(rows["assessments"], bucket),
        "emotions": emotion_series(rows["emotions"], bucket),
    }
