"""The therapy service on a real database (SQLite and PostgreSQL): consent, goals,
therapy sessions moving goals through tagged choices, the emotional-state
projection, assessments raising the crisis protocol, export and retention."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from taleweaver.auth import LOCAL_USER_ID
from taleweaver.domain.crisis import CrisisResponse, CrisisSignal
from taleweaver.domain.errors import Conflict, InvalidInput, NotFound
from taleweaver.domain.events import EventMetadata
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.therapy import Approach, Instrument, MarkerType, ProfileInput
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from taleweaver.store.therapy_schema import therapy_emotions
from taleweaver.therapy import TherapyService

WS = "local"
ME = LOCAL_USER_ID
META = EventMetadata(actor=ME, correlation_id="therapy-test")
CONSENT = ProfileInput(
    approaches=[Approach.CBT, Approach.MINDFULNESS],
    intensity=2,
    avoid_topics=["spiders"],
    therapy_data=True,
    emotion_tracking=True,
)


class RecordingCrisis:
    """A crisis protocol that remembers what it was asked to handle."""

    def __init__(self) -> None:
        self.signals: list[CrisisSignal] = []

    async def raise_crisis(self, signal: CrisisSignal) -> CrisisResponse:
        self.signals.append(signal)
        return CrisisResponse("You are not alone.", [{"name": "Helpline", "phone": "116 123"}])


async def consent(engine: Engine, profile: ProfileInput = CONSENT) -> None:
    await engine.therapy.put_profile(WS, ME, profile, actor=ME)


async def therapy_session(engine: Engine, **settings: Any) -> str:
    created = await engine.sessions.create(
        WS,
        kind=SessionKind.THERAPY,
        title="The Quiet Harbour",
        settings=settings,
        owner_id=ME,
        metadata=META,
    )
    session_id: str = created["id"]
    return session_id


async def play(
    engine: Engine, session_id: str, *, text: str | None = None, choice: int | None = None
) -> None:
    request = TurnRequest.build(action=None, text=text, choice=choice)
    handle = await engine.turns.start(WS, session_id, request, META)
    await handle.wait()


def tagged(goal_id: str) -> str:
    return (
        "The harbour is quiet.\n\nChoices:\n"
        f"1. [therapeutic #{goal_id[:6]}] Sit with the worry and breathe\n"
        "2. [narrative] Walk along the pier\n"
    )


# --- consent ------------------------------------------------------------------------


async def test_nothing_is_stored_without_consent(engine: Engine) -> None:
    with pytest.raises(Conflict, match="not consented"):
        await engine.therapy.create_goal(WS, ME, title="Sleep better")
    await consent(engine, ProfileInput(approaches=[Approach.DBT], crisis_contacts=[{"name": "A"}]))
    profile = await engine.therapy.profile(WS, ME)
    # Only the refusal is kept: no preferences, no contacts.
    assert profile["approaches"] == [] and profile["crisis_contacts"] == []
    assert profile["consent"]["therapy_data"] is False
    with pytest.raises(Conflict):
        await engine.therapy.create_marker(WS, ME, MarkerType.INSIGHT, note="x", goal_id=None)


async def test_withdrawing_consent_deletes_the_players_records(engine: Engine) -> None:
    await consent(engine)
    await engine.therapy.create_goal(WS, ME, title="Sleep better")
    await engine.therapy.take_assessment(WS, ME, Instrument.GAD7, [1] * 7)
    await consent(engine, ProfileInput(therapy_data=False))
    assert await engine.therapy.goals(WS, ME) == []
    assert await engine.therapy.assessments(WS, ME) == []
    actions = [e["action"] for e in await engine.audit.entries(workspace_id=WS)]
    assert actions.count("therapy.consent_changed") == 2


async def test_a_profile_rejects_out_of_range_settings(engine: Engine) -> None:
    with pytest.raises(InvalidInput, match="intensity"):
        await consent(engine, ProfileInput(intensity=9, therapy_data=True))
    with pytest.raises(InvalidInput, match="retention_days"):
        await consent(engine, ProfileInput(retention_days=99_999, therapy_data=True))
    with pytest.raises(NotFound):
        await engine.therapy.profile(WS, ME)


# --- goals ----------------------------------------------------------------------------


async def test_goal_progress_is_remembered_and_completion_marked(engine: Engine) -> None:
    await consent(engine)
    goal = await engine.therapy.create_goal(WS, ME, title="Speak up in groups")
    await engine.therapy.update_goal(WS, ME, goal["id"], progress=40)
    done = await engine.therapy.update_goal(WS, ME, goal["id"], progress=100)
    assert (done["progress"], done["status"]) == (100, "achieved")
    markers = await engine.therapy.markers(WS, ME)
    assert [(m["type"], m["goal_id"]) for m in markers] == [("goal_achieved", goal["id"])]
    report = await engine.therapy.progress(WS, ME, "day")
    today = datetime.now(UTC).date().isoformat()
    assert report["goals"][0]["points"] == [{"start": today, "progress": 100}]


async def test_goal_changes_are_checked(engine: Engine) -> None:
    await consent(engine)
    goal = await engine.therapy.create_goal(WS, ME, title="Walk daily")
    with pytest.raises(InvalidInput, match="progress"):
        await engine.therapy.update_goal(WS, ME, goal["id"], progress=101)
    with pytest.raises(InvalidInput, match="title"):
        await engine.therapy.create_goal(WS, ME, title="   ")
    with pytest.raises(NotFound):
        await engine.therapy.update_goal(WS, ME, "nope", progress=5)
    with pytest.raises(NotFound):
        await engine.therapy.create_marker(WS, ME, MarkerType.INSIGHT, note="x", goal_id="nope")
    assert (await engine.therapy.goals(WS, ME))[0]["progress"] == 0
    await engine.therapy.delete_goal(WS, ME, goal["id"])
    with pytest.raises(NotFound):
        await engine.therapy.delete_goal(WS, ME, goal["id"])


# --- therapy sessions -------------------------------------------------------------------


async def test_a_therapeutic_choice_moves_the_linked_goal(engine: Engine) -> None:
    await consent(engine)
    other = await engine.therapy.create_goal(WS, ME, title="Sleep better")
    goal = await engine.therapy.create_goal(WS, ME, title="Calm my worries", progress=20)
    engine.caps.model = ScriptedModel([tagged(goal["id"])])
    sid = await therapy_session(engine)
    await play(engine, sid, text="I look at the water")
    await play(engine, sid, choice=1)  # [therapeutic #goal]
    await play(engine, sid, choice=2)  # [narrative]: moves nothing
    goals = {g["id"]: g for g in await engine.therapy.goals(WS, ME)}
    assert goals[goal["id"]]["progress"] == 30 and goals[other["id"]]["progress"] == 0
    markers = await engine.therapy.markers(WS, ME)
    assert [(m["type"], m["session_id"], m["turn_number"]) for m in markers] == [
        ("milestone", sid, 2)
    ]


async def test_an_untagged_goal_choice_works_on_the_sessions_least_advanced_goal(
    engine: Engine,
) -> None:
    await consent(engine)
    ahead = await engine.therapy.create_goal(WS, ME, title="A", progress=50)
    behind = await engine.therapy.create_goal(WS, ME, title="B", progress=10)
    outside = await engine.therapy.create_goal(WS, ME, title="C", progress=0)
    engine.caps.model = ScriptedModel(
        ["Here.\n\nChoices:\n1. [skill_building] Practise\n2. Leave\n"]
    )
    sid = await therapy_session(engine, goal_ids=[ahead["id"], behind["id"]])
    await play(engine, sid, text="Hello")
    await play(engine, sid, choice=1)
    progress = {g["title"]: g["progress"] for g in await engine.therapy.goals(WS, ME)}
    assert progress == {"A": 50, "B": 18, "C": 0}
    assert outside["progress"] == 0


async def test_emotions_are_projected_lazily_from_committed_turns(engine: Engine) -> None:
    await consent(engine)
    engine.caps.model = ScriptedModel(["The tide turns.\n\nChoices:\n1. Stay\n2. Go\n"])
    sid = await therapy_session(engine)
    await play(engine, sid, text="I feel so anxious and afraid")
    await play(engine, sid, text="I walk along the shore")  # no feeling words: no reading
    await play(engine, sid, text="Now I feel calm and hopeful")
    readings = await engine.therapy.emotions(WS, ME)
    assert [(r["turn_number"], max(r["emotions"], key=r["emotions"].get)) for r in readings] == [
        (1, "fear"),
        (3, "calm"),
    ]
    # Caught up once: reading again folds nothing new.
    assert await engine.therapy.projection.catch_up(WS, ME) == 0
    kinds = [m["type"] for m in await engine.therapy.markers(WS, ME)]
    assert kinds == ["setback_overcome"]


async def test_concurrent_readers_fold_each_turn_once(engine: Engine) -> None:
    await consent(engine)
    engine.caps.model = ScriptedModel(["Waves.\n\nChoices:\n1. Stay\n2. Go\n"])
    sid = await therapy_session(engine)
    for text in ["I am sad", "I am angry", "I am happy"]:
        await play(engine, sid, text=text)
    await asyncio.gather(*(engine.therapy.emotions(WS, ME) for _ in range(4)))
    async with engine.db.read() as conn:
        rows = await conn.scalar(sa.select(sa.func.count()).select_from(therapy_emotions))
    assert rows == 3


async def test_without_emotion_consent_no_reading_is_kept_even_later(engine: Engine) -> None:
    await consent(engine, ProfileInput(therapy_data=True, emotion_tracking=False))
    engine.caps.model = ScriptedModel(["Rain.\n\nChoices:\n1. Stay\n2. Go\n"])
    sid = await therapy_session(engine)
    await play(engine, sid, text="I feel hopeless and sad")
    assert await engine.therapy.emotions(WS, ME) == []
    await consent(engine)  # agreeing later does not dig up earlier turns
    assert await engine.therapy.emotions(WS, ME) == []
    await play(engine, sid, text="I feel hopeful")
    assert [r["turn_number"] for r in await engine.therapy.emotions(WS, ME)] == [2]


async def test_the_narrator_sees_goals_scene_and_the_tagging_instructions(engine: Engine) -> None:
    await consent(engine)
    goal = await engine.therapy.create_goal(WS, ME, title="Face the crowd")
    seen: list[Sequence[ChatMessage]] = []

    def narrator(messages: Sequence[ChatMessage]) -> str:
        seen.append(messages)
        return "A market square.\n\nChoices:\n1. Look\n2. Leave\n"

    engine.caps.model = ScriptedModel(narrator)
    sid = await therapy_session(
        engine, world_params={"intensity": 2, "pace": "fast", "avoid_topics": ["storms"]}
    )
    await play(engine, sid, text="I arrive")
    system = seen[0][0].content
    assert "therapeutic text adventure" in system and "Never bring up: storms" in system
    assert f"#{goal['id'][:6]}: Face the crowd (0% there)" in system
    assert "cbt, mindfulness" in system and "This turn's scene: introduction" in system
    events = await engine.sessions.events(WS, sid, after=0, limit=10)
    trace = events[-1].payload["context"]
    reasons = [t["reason"] for t in trace if t.get("source") == "therapy"]
    assert "session goal 'Face the crowd'" in reasons
    assert any(r.startswith("turn 1 is a introduction scene") for r in reasons)


async def test_the_narrator_sees_a_goal_move_right_after_the_choice(engine: Engine) -> None:
    await consent(engine)
    goal = await engine.therapy.create_goal(WS, ME, title="Calm my worries", progress=20)
    seen: list[str] = []

    def narrator(messages: Sequence[ChatMessage]) -> str:
        seen.append(messages[0].content)
        return tagged(goal["id"])

    engine.caps.model = ScriptedModel(narrator)
    sid = await therapy_session(engine, world_params={"pace": "fast"})
    await play(engine, sid, text="I arrive")
    await play(engine, sid, choice=1)
    await play(engine, sid, choice=1)
    assert "(20% there)" in seen[1] and "(30% there)" in seen[2]
    scenes = [line for text in seen for line in text.splitlines() if "scene:" in line]
    assert [s.split("scene: ")[1].split(".")[0] for s in scenes] == [
        "introduction",
        "exploration",
        "challenge",
    ]


async def test_a_story_session_gets_no_therapy_context(engine: Engine) -> None:
    await consent(engine)
    await engine.therapy.create_goal(WS, ME, title="Private goal")
    model = ScriptedModel(["Once.\n\nChoices:\n1. A\n2. B\n"])
    engine.caps.model = model
    created = await engine.sessions.create(
        WS, kind=SessionKind.STORY, title="Story", owner_id=ME, metadata=META
    )
    await play(engine, created["id"], text="Go")
    assert "Private goal" not in model.calls[0][0].content


# --- assessments -----------------------------------------------------------------------


def with_recorder(engine: Engine) -> RecordingCrisis:
    recorder = RecordingCrisis()
    engine.therapy = TherapyService(
        engine.db, engine.repository.store, engine.caps.queries, engine.audit, recorder
    )
    return recorder


@pytest.mark.parametrize(("answer", "level"), [(1, "moderate"), (2, "high"), (3, "critical")])
async def test_a_positive_item_9_raises_the_crisis_protocol(
    engine: Engine, answer: int, level: str
) -> None:
    recorder = with_recorder(engine)
    await consent(engine)
    outcome = await engine.therapy.take_assessment(WS, ME, Instrument.PHQ9, [1] * 8 + [answer])
    assert outcome.crisis is not None and outcome.crisis.message == "You are not alone."
    [signal] = recorder.signals
    assert (signal.source, signal.ref, signal.level, signal.user_id) == (
        "assessment",
        outcome.record["id"],
        level,
        ME,
    )
    stored = await engine.therapy.assessments(WS, ME)
    assert [(a["score"], a["severity"]) for a in stored] == [
        (8 + answer, "mild" if answer < 2 else "moderate")
    ]


async def test_a_negative_item_9_raises_nothing(engine: Engine) -> None:
    recorder = with_recorder(engine)
    await consent(engine)
    outcome = await engine.therapy.take_assessment(WS, ME, Instrument.PHQ9, [3] * 8 + [0])
    assert outcome.crisis is None and recorder.signals == []
    assert outcome.record["severity"] == "severe"


async def test_without_consent_a_crisis_is_still_raised_but_nothing_stored(engine: Engine) -> None:
    recorder = with_recorder(engine)
    outcome = await engine.therapy.take_assessment(WS, ME, Instrument.PHQ9, [0] * 8 + [2])
    assert not outcome.stored and outcome.record["id"] is None
    assert [s.level for s in recorder.signals] == ["high"]
    await consent(engine)
    assert await engine.therapy.assessments(WS, ME) == []


async def test_invalid_answers_store_nothing_and_raise_nothing(engine: Engine) -> None:
    recorder = with_recorder(engine)
    await consent(engine)
    with pytest.raises(InvalidInput):
        await engine.therapy.take_assessment(WS, ME, Instrument.PHQ9, [0] * 8 + [5])
    assert recorder.signals == [] and await engine.therapy.assessments(WS, ME) == []


# --- progress, export and retention ---------------------------------------------------------


async def test_progress_buckets_assessment_scores_and_marker_counts(engine: Engine) -> None:
    await consent(engine)
    for answers in ([2] * 7, [1] * 7):
        await engine.therapy.take_assessment(WS, ME, Instrument.GAD7, answers)
    await engine.therapy.create_marker(WS, ME, MarkerType.INSIGHT, note="a", goal_id=None)
    await engine.therapy.create_marker(WS, ME, MarkerType.INSIGHT, note="b", goal_id=None)
    report = await engine.therapy.progress(WS, ME, "month")
    month = datetime.now(UTC).date().replace(day=1).isoformat()
    assert report["assessments"] == [
        {
            "instrument": "gad7",
            "points": [{"start": month, "count": 2, "mean": 10.5, "last": 7, "severity": "mild"}],
        }
    ]
    assert report["markers"] == [{"type": "insight", "points": [{"start": month, "count": 2}]}]


async def test_export_holds_everything_about_the_player(engine: Engine) -> None:
    await consent(engine)
    await engine.therapy.create_goal(WS, ME, title="Rest")
    await engine.therapy.take_assessment(WS, ME, Instrument.GAD7, [0] * 7)
    engine.caps.model = ScriptedModel(["Dawn.\n\nChoices:\n1. Wake\n2. Sleep\n"])
    sid = await therapy_session(engine)
    await play(engine, sid, text="I feel tired")
    exported = await engine.therapy.export(WS, ME, actor=ME)
    assert exported["profile"]["approaches"] == ["cbt", "mindfulness"]
    assert [g["title"] for g in exported["goals"]] == ["Rest"]
    assert len(exported["assessments"]) == 1 and len(exported["emotions"]) == 1
    [session] = exported["sessions"]
    assert session["id"] == sid
    assert [m["content"] for m in session["messages"]] == ["I feel tired", "Dawn."]
    assert "therapy.exported" in [e["action"] for e in await engine.audit.entries(workspace_id=WS)]


async def test_purge_deletes_only_what_is_past_retention(engine: Engine) -> None:
    await consent(engine, ProfileInput(therapy_data=True, retention_days=30))
    await engine.therapy.create_goal(WS, ME, title="Old goal")
    await engine.therapy.take_assessment(WS, ME, Instrument.GAD7, [0] * 7)
    soon = await engine.therapy.purge(at=datetime.now(UTC) + timedelta(days=29))
    assert sum(soon.deleted.values()) == 0
    assert len(await engine.therapy.assessments(WS, ME)) == 1
    later = await engine.therapy.purge(at=datetime.now(UTC) + timedelta(days=31))
    assert later.deleted["therapy_assessments"] == 1 and later.deleted["therapy_goals"] == 1
    assert await engine.therapy.goals(WS, ME) == []
    assert await engine.therapy.assessments(WS, ME) == []
    purged = [
        e for e in await engine.audit.entries(workspace_id=WS) if e["action"] == "therapy.purged"
    ]
    assert purged[-1]["details"]["deleted"]["therapy_assessments"] == 1
