"""Crisis rules: what counts as a person in danger, and what is story, game or idiom."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from taleweaver.cli.main import cli
from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.safety import Assessment, assess, compile_rules, find_topics, normalise
from taleweaver.safety.evaluation import evaluate, load_set
from taleweaver.safety.rules import RULES_ENV, RulesProvider, shipped_rules_path

RULES = RulesProvider().current()


def category(text: str) -> str:
    found = assess(text, RULES)
    return found.categories[0] if found.categories else "none"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I don't see the point of going on", "suicidal_ideation"),
        ("everyone would be better off without me", "suicidal_ideation"),
        ("I want to go to sleep and not wake up", "suicidal_ideation"),
        ("i\u2019m gonna kms", "suicidal_ideation"),
        ("I've been cutting my wrists again", "self_harm"),
        ("my stepdad hits me when he is drunk", "abuse"),
        ("I swallowed a whole bottle of sleeping pills", "medical_emergency"),
        ("I'm going to hurt my roommate", "harm_to_others"),
    ],
)
def test_a_person_in_danger_is_recognised(text: str, expected: str) -> None:
    assert category(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The orc swings his axe",
        "I draw my sword and kill the goblin",
        "this level is killing me",
        "I could murder a pizza",
        "I'm dying to know who the spy is",
        "He kills himself rather than surrender, says the bard",
        "I'm going to kill you at chess tonight",
        "I burned myself a little on the stove while cooking",
    ],
)
def test_fiction_games_and_idiom_are_not_a_crisis(text: str) -> None:
    assert category(text) == "none"


def test_negation_cancels_a_match_but_not_a_crisis_phrased_with_not() -> None:
    assert category("I would never kill myself") == "none"
    assert category("I don't want to die") == "none"
    assert category("I don't want to live anymore") == "suicidal_ideation"


def test_a_plan_and_a_time_raise_the_level_and_support_lowers_it() -> None:
    assert assess("I want to kill myself", RULES).level == "high"
    tonight = assess("I want to kill myself tonight", RULES)
    assert tonight.level == "critical"
    assert "risk.timeframe" in tonight.risk_factors
    supported = assess("I want to die but I promised my therapist I'd call her", RULES)
    assert supported.level == "moderate"
    assert supported.protective_factors


def test_the_past_tense_is_a_warning_not_a_crisis() -> None:
    assert assess("I used to want to kill myself years ago", RULES).level == "low"


def test_normalising_spells_out_contractions_and_slang() -> None:
    assert normalise("I\u2019m  NOT gonna, can't, won't") == "i am not going to, can not, will not"


def test_a_rules_file_without_a_version_or_with_a_bad_pattern_is_refused() -> None:
    with pytest.raises(InvalidInput, match="version"):
        compile_rules({"rule": [{"id": "a", "category": "self_harm", "pattern": "x"}]})
    with pytest.raises(InvalidInput, match="bad pattern"):
        compile_rules(
            {"version": "1", "rule": [{"id": "a", "category": "self_harm", "pattern": "(x"}]}
        )
    with pytest.raises(InvalidInput, match="unknown category"):
        compile_rules({"version": "1", "rule": [{"id": "a", "category": "sad", "pattern": "x"}]})
    with pytest.raises(InvalidInput, match="unknown lexicon"):
        compile_rules(
            {"version": "1", "rule": [{"id": "a", "category": "abuse", "pattern": "{nope}"}]}
        )


def _write(path: Path, version: str, pattern: str) -> None:
    path.write_text(
        f'version = "{version}"\n[[rule]]\nid = "t"\ncategory = "self_harm"\n'
        f"level = \"high\"\npattern = '{pattern}'\n"
    )


def test_an_edited_rules_file_is_picked_up_without_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rules.toml"
    _write(path, "1", "bluebird")
    monkeypatch.setenv(RULES_ENV, str(path))
    provider = RulesProvider()
    assert provider.path == path and provider.version == "1"
    _write(path, "2", "redbird")
    os.utime(path, (time.time() + 5, time.time() + 5))
    monkeypatch.setattr("taleweaver.safety.rules.CHECK_EVERY_S", 0.0)
    rules = provider.current()
    assert rules.version == "2"
    assert assess("a redbird", rules).categories == ("self_harm",)


def test_a_broken_edit_keeps_the_old_rules_and_reload_reports_it(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    _write(path, "1", "bluebird")
    provider = RulesProvider(path)
    path.write_text("version = ")
    with pytest.raises(InvalidInput, match="not valid TOML"):
        provider.reload()
    assert provider.current().version == "1"


def test_topics_match_whole_words_and_plurals() -> None:
    assert find_topics("Two Spiders crawl by", ["spider", "snake"]) == ["spider"]
    assert find_topics("a spiderweb", ["spider"]) == []


@pytest.mark.parametrize("name", ["eval_set.jsonl", "eval_holdout.jsonl"])
async def test_rules_alone_meet_the_recall_and_precision_targets(name: str) -> None:
    examples = load_set(name=name)
    assert len(examples) >= (300 if name == "eval_set.jsonl" else 90)

    async def detect(text: str, context: Sequence[str]) -> Assessment:
        return assess(text, RULES)

    report = await evaluate(examples, detect)
    precision, recall = report.crisis_scores()
    assert recall >= 0.95 and precision >= 0.90, "\n".join(report.lines(show_misses=True))


def test_the_eval_command_prints_scores_and_the_confusion_matrix() -> None:
    result = CliRunner().invoke(cli, ["safety", "eval", "--holdout", "--policy", "rules"])
    assert result.exit_code == 0, result.output
    assert "crisis (any category): precision" in result.output
    assert "confusion (rows: true, columns: predicted)" in result.output
    assert "target: crisis recall >= 0.95 with precision >= 0.9: met" in result.output


def test_the_eval_command_refuses_a_malformed_set(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "hi", "label": "sadness"}\n')
    result = CliRunner().invoke(cli, ["safety", "eval", "--set", str(bad)])
    assert result.exit_code == 1
    assert "unknown label 'sadness'" in result.output


def test_the_shipped_rules_file_is_the_default() -> None:
    assert RulesProvider().path == shipped_rules_path() or os.environ.get(RULES_ENV)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_any_text_is_assessed_without_error_and_normalising_twice_changes_nothing(
    text: str,
) -> None:
    found = assess(text, RULES)
    assert found.level in ("none", "low", "moderate", "high", "critical")
    assert (found.level == "none") == (not found.categories)
    assert normalise(normalise(text)) == normalise(text)
