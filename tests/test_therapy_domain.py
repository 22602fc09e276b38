"""The therapeutic layer's pure rules: scoring, scenes, choice tags, emotions,
compatibility and time buckets."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.therapy import (
    ChoiceType,
    Instrument,
    MarkerType,
    SceneType,
    TaggedChoice,
    WorldParams,
    bucket_start,
    choice_consequence,
    compatibility,
    is_recovery,
    parse_choice_tag,
    read_emotions,
    scene_for,
    score_answers,
    world_params,
)
from taleweaver.therapy.catalog import instruments, lexicon


@pytest.mark.parametrize(
    ("total", "band"),
    [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "moderately severe"),
        (19, "moderately severe"),
        (20, "severe"),
        (27, "severe"),
    ],
)
def test_phq9_severity_bands_follow_the_published_cut_offs(total: int, band: str) -> None:
    answers = [min(3, max(0, total - 3 * i)) for i in range(9)]
    scored = score_answers(Instrument.PHQ9, answers)
    assert (scored.score, scored.severity) == (total, band)


@pytest.mark.parametrize(
    ("total", "band"),
    [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "severe"),
        (21, "severe"),
    ],
)
def test_gad7_severity_bands_follow_the_published_cut_offs(total: int, band: str) -> None:
    answers = [min(3, max(0, total - 3 * i)) for i in range(7)]
    assert sum(answers) == total
    assert score_answers(Instrument.GAD7, answers).severity == band


@pytest.mark.parametrize(
    ("answer", "level"), [(0, None), (1, "moderate"), (2, "high"), (3, "critical")]
)
def test_phq9_item_9_sets_the_crisis_level_by_how_often(answer: int, level: str | None) -> None:
    assert score_answers(Instrument.PHQ9, [0] * 8 + [answer]).crisis == level


def test_gad7_never_raises_a_crisis() -> None:
    assert score_answers(Instrument.GAD7, [3] * 7).crisis is None


@pytest.mark.parametrize(
    ("instrument", "answers", "message"),
    [
        (Instrument.PHQ9, [0] * 7, "phq9 has 9 items"),
        (Instrument.GAD7, [0] * 9, "gad7 has 7 items"),
        (Instrument.GAD7, [0] * 6 + [4], "item 7 must be between 0 and 3"),
        (Instrument.PHQ9, [-1] + [0] * 8, "item 1 must be between 0 and 3"),
    ],
)
def test_wrong_answers_are_refused(
    instrument: Instrument, answers: list[int], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        score_answers(instrument, answers)


def test_instrument_texts_are_the_published_items() -> None:
    texts = instruments()
    assert len(texts[Instrument.PHQ9].items) == 9 and len(texts[Instrument.GAD7].items) == 7
    assert texts[Instrument.PHQ9].items[8] == (
        "Thoughts that you would be better off dead or of hurting yourself in some way"
    )
    assert texts[Instrument.GAD7].items[0] == "Feeling nervous, anxious or on edge"
    assert texts[Instrument.GAD7].answers == (
        "Not at all",
        "Several days",
        "More than half the days",
        "Nearly every day",
    )


def test_scenes_open_with_an_introduction_explore_then_cycle() -> None:
    scenes = [scene_for(n, 10, "moderate") for n in range(1, 9)]
    assert scenes == [
        SceneType.INTRODUCTION,
        SceneType.EXPLORATION,
        SceneType.EXPLORATION,
        SceneType.CHALLENGE,
        SceneType.REFLECTION,
        SceneType.THERAPEUTIC,
        SceneType.EXPLORATION,
        SceneType.CHALLENGE,
    ]


def test_a_slow_world_explores_longer_than_a_fast_one() -> None:
    assert scene_for(4, 0, "slow") == SceneType.EXPLORATION
    assert scene_for(3, 0, "fast") == SceneType.CHALLENGE


def test_nearly_met_goals_bring_the_resolution() -> None:
    assert scene_for(6, 90) == SceneType.RESOLUTION
    assert scene_for(6, 89) != SceneType.RESOLUTION
    assert scene_for(1, 100) == SceneType.INTRODUCTION


@given(
    st.integers(min_value=1, max_value=10_000),
    st.floats(0, 100),
    st.sampled_from(["slow", "moderate", "fast", "odd"]),
)
def test_every_turn_has_a_scene(turn: int, progress: float, pace: str) -> None:
    assert scene_for(turn, progress, pace) in SceneType


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[therapeutic #a1b2c3] Breathe slowly",
            TaggedChoice(ChoiceType.THERAPEUTIC, "Breathe slowly", "a1b2c3"),
        ),
        (
            "[Skill Building] Practise the plan",
            TaggedChoice(ChoiceType.SKILL_BUILDING, "Practise the plan"),
        ),
        (
            "[social_interaction:abcdef12] Say hello",
            TaggedChoice(ChoiceType.SOCIAL_INTERACTION, "Say hello", "abcdef12"),
        ),
        ("Open the door", TaggedChoice(ChoiceType.NARRATIVE, "Open the door")),
        ("[sword] Draw it", TaggedChoice(ChoiceType.NARRATIVE, "[sword] Draw it")),
    ],
)
def test_choice_tags_are_read_off_the_option(text: str, expected: TaggedChoice) -> None:
    assert parse_choice_tag(text) == expected


def test_a_therapeutic_choice_moves_its_goal_and_marks_milestones() -> None:
    therapeutic = TaggedChoice(ChoiceType.THERAPEUTIC, "x")
    assert choice_consequence(10, therapeutic).progress == 20
    assert choice_consequence(20, therapeutic).marker == MarkerType.MILESTONE
    skill = TaggedChoice(ChoiceType.SKILL_BUILDING, "x")
    assert choice_consequence(45, skill).marker == MarkerType.SKILL_ACQUIRED
    done = choice_consequence(95, therapeutic)
    assert (done.progress, done.marker) == (100, MarkerType.GOAL_ACHIEVED)
    assert choice_consequence(100, therapeutic).marker is None
    assert choice_consequence(30, TaggedChoice(ChoiceType.NARRATIVE, "x")).progress == 30


def test_emotions_are_read_from_the_players_words() -> None:
    reading = read_emotions("I feel so anxious and scared about tomorrow", lexicon())
    assert reading is not None
    assert reading.dominant == "fear" and reading.valence < -0.5 and reading.arousal > 0.7
    calm = read_emotions("I'm calm and hopeful now", lexicon())
    assert calm is not None and calm.valence > 0.5


def test_a_negation_flips_the_feeling() -> None:
    reading = read_emotions("I am not happy", lexicon())
    assert reading is not None and reading.valence < 0 and "joy" not in reading.emotions


def test_words_outside_the_lexicon_read_as_nothing() -> None:
    assert read_emotions("I open the door and walk north", lexicon()) is None


def test_recovery_needs_a_real_swing() -> None:
    assert is_recovery(-0.6, 0.5)
    assert not is_recovery(-0.2, 0.5) and not is_recovery(None, 0.9)


def test_world_params_are_read_leniently_from_settings() -> None:
    assert world_params({}) == WorldParams()
    odd = world_params({"world_params": {"intensity": 9, "pace": "warp", "focus_topics": "x"}})
    assert odd == WorldParams()
    read = world_params(
        {"world_params": {"intensity": 4, "pace": "slow", "focus_topics": ["Grief", " "]}}
    )
    assert read == WorldParams(4, "slow", ("Grief",), ())


def test_compatibility_names_every_conflict() -> None:
    world = WorldParams(intensity=4, focus_topics=("Social Anxiety", "loss"))
    found = compatibility(2, ["social  anxiety"], world)
    assert [c.kind for c in found] == ["intensity", "avoided_topic"]
    assert "Social Anxiety" in found[1].detail
    assert compatibility(4, ["spiders"], world) == []


def test_buckets_start_on_the_day_monday_and_first_of_month() -> None:
    at = datetime(2026, 11, 26, 23, 30, tzinfo=UTC)  # a Thursday
    assert bucket_start(at, "day") == date(2026, 11, 26)
    assert bucket_start(at, "week") == date(2026, 11, 23)
    assert bucket_start(at, "month") == date(2026, 11, 1)
    assert bucket_start(datetime(2026, 11, 26, 23, 30), "day") == date(2026, 11, 26)
