"""`taleweaver safety ...`: the evaluation harness and a one-off check of a text."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from taleweaver.config import Settings
from taleweaver.domain.safety import Assessment, assess
from taleweaver.safety.evaluation import Report, evaluate, load_set
from taleweaver.safety.policy import Policy, apply
from taleweaver.safety.rules import RulesProvider

TARGET_RECALL = 0.95
TARGET_PRECISION = 0.90


@click.group()
def safety() -> None:
    """Crisis detection: evaluate the rules, check a text."""


async def _evaluate(
    settings: Settings, set_path: Path | None, holdout: bool, policy: Policy
) -> Report:
    examples = load_set(set_path, name="eval_holdout.jsonl" if holdout else "eval_set.jsonl")
    rules = RulesProvider()
    if policy == Policy.RULES:

        async def by_rules(text: str) -> Assessment:
            return assess(text, rules.current())

        return await evaluate(examples, by_rules)
    from taleweaver.engine import Engine
    from taleweaver.llm.routing import CallScope
    from taleweaver.safety.classifier import ModelClassifier

    engine = await Engine.open(settings)
    try:
        classifier = ModelClassifier(engine.caps.model)

        async def by_policy(text: str) -> Assessment:
            async def ask() -> Assessment | None:
                return await classifier.classify(text, CallScope())

            return await apply(policy, assess(text, rules.current()), ask)

        return await evaluate(examples, by_policy)
    finally:
        await engine.close()


@safety.command("eval")
@click.option(
    "--set",
    "set_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A JSONL file of {text, label, level}; default: the shipped set.",
)
@click.option("--holdout", is_flag=True, help="Use the shipped held-out set.")
@click.option(
    "--policy",
    type=click.Choice([p.value for p in Policy]),
    default=Policy.RULES.value,
    show_default=True,
    help="How rules and the model classifier combine.",
)
@click.option("--misses", is_flag=True, help="List every misclassified example.")
def eval_command(set_path: Path | None, holdout: bool, policy: str, misses: bool) -> None:
    """Precision, recall and the confusion matrix per category on a labelled set."""
    from taleweaver.cli.main import _run, _settings

    report = _run(_evaluate(_settings(), set_path, holdout, Policy(policy)))
    click.echo(f"policy: {policy}  rules version: {RulesProvider().version}")
    for line in report.lines(show_misses=misses):
        click.echo(line)
    precision, recall = report.crisis_scores()
    met = recall >= TARGET_RECALL and precision >= TARGET_PRECISION
    click.echo(
        f"target: crisis recall >= {TARGET_RECALL} with precision >= {TARGET_PRECISION}: "
        + ("met" if met else "NOT met")
    )
    if not met:
        sys.exit(1)


@safety.command("check")
@click.argument("text")
def check_command(text: str) -> None:
    """What the rules say about TEXT (no crisis protocol runs)."""
    found = assess(text, RulesProvider().current())
    click.echo(json.dumps(found.to_dict(), indent=2))


commands: list[click.Command] = [safety]
