"""`taleweaver safety ...`: the evaluation harness and a one-off check of a text."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from taleweaver.domain.safety import Assessment, assess
from taleweaver.safety.evaluation import Report, evaluate, load_set
from taleweaver.safety.policy import Policy
from taleweaver.safety.rules import RulesProvider

if TYPE_CHECKING:  # heavy (the settings, the model router): imported where they run
    from taleweaver.config import Settings
    from taleweaver.safety.classifier import ModelClassifier

TARGET_RECALL = 0.95
TARGET_PRECISION = 0.90
# The learned detector's targets on its held-out families (the figures).
LEARNED_RECALL = 0.97
LEARNED_PRECISION = 0.92
LEARNED_SET = "crisis_eval.jsonl"


@click.group()
def safety() -> None:
    """Crisis detection: evaluate the layers, train the learned detector, check a text."""


async def _evaluate(settings: Settings, set_path: Path | None, name: str, policy: Policy) -> Report:
    from taleweaver.safety.layered import detect
    from taleweaver.safety.service import shared_detector

    examples = load_set(set_path, name=name)
    rules = RulesProvider()
    learned = shared_detector() if policy.uses_learned else None
    if policy.uses_learned and learned is None:
        raise click.ClickException("the learned crisis detector is not available (see the log)")

    async def run(classifier: ModelClassifier | None) -> Report:
        async def by_policy(text: str, context: Sequence[str]) -> Assessment:
            return await detect(
                policy, rules, text, learned=learned, classifier=classifier, context=context
            )

        return await evaluate(examples, by_policy)

    if not policy.uses_judge:
        return await run(None)
    from taleweaver.engine import Engine
    from taleweaver.safety.classifier import ModelClassifier

    engine = await Engine.open(settings)
    try:
        return await run(ModelClassifier(engine.caps.model))
    finally:
        await engine.close()


@safety.command("eval")
@click.option(
    "--set",
    "set_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A JSONL file of {text, label, level[, lang, context]}; default: the shipped "
    "held-out families of the learned detector.",
)
@click.option("--holdout", is_flag=True, help="Use the rules' shipped held-out set.")
@click.option("--rules-set", is_flag=True, help="Use the set written beside the rules.")
@click.option(
    "--policy",
    type=click.Choice([p.value for p in Policy]),
    default=Policy.RULES_LEARNED.value,
    show_default=True,
    help="How the rules, the learned detector and the model judge combine.",
)
@click.option("--misses", is_flag=True, help="List every misclassified example.")
def eval_command(
    set_path: Path | None, holdout: bool, rules_set: bool, policy: str, misses: bool
) -> None:
    """Precision, recall and the confusion matrix per category and language on a set."""
    from taleweaver.cli.main import _run, _settings
    from taleweaver.safety.service import shared_detector

    name = "eval_holdout.jsonl" if holdout else "eval_set.jsonl" if rules_set else LEARNED_SET
    chosen = Policy(policy)
    report = _run(_evaluate(_settings(), set_path, name, chosen))
    model = shared_detector() if chosen.uses_learned else None
    click.echo(
        f"set: {set_path or name}  policy: {policy}  rules version: {RulesProvider().version}"
        + (f"  model: {model.name}" if model else "")
    )
    for line in report.lines(show_misses=misses):
        click.echo(line)
    precision, recall = report.crisis_scores()
    learned_targets = set_path is None and name == LEARNED_SET
    want_r, want_p = (
        (LEARNED_RECALL, LEARNED_PRECISION)
        if learned_targets
        else (TARGET_RECALL, TARGET_PRECISION)
    )
    met = recall >= want_r and precision >= want_p
    click.echo(
        f"target: crisis recall >= {want_r} with precision >= {want_p}: "
        + ("met" if met else "NOT met")
    )
    if not met:
        sys.exit(1)


@safety.command("train")
@click.option(
    "--corpus",
    "corpus",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    multiple=True,
    help="A families file (repeatable); default: every file in safety/corpus/.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=True, file_okay=False),
    default=None,
    help="Where the model and the held-out set go; default: the package's data folder.",
)
@click.option("--no-encoder", is_flag=True, help="Train the n-gram heads only.")
@click.option(
    "--precision-floor",
    type=click.FloatRange(0.5, 1.0),
    default=0.93,
    show_default=True,
    help="The threshold catches the most validation crises at this precision or above.",
)
def train_command(
    corpus: tuple[Path, ...], out: Path | None, no_encoder: bool, precision_floor: float
) -> None:
    """Train the learned crisis detector on the corpus, split by family."""
    from taleweaver.safety.encoder import load_encoder
    from taleweaver.safety.families import load_families, write_jsonl
    from taleweaver.safety.learned import MODEL_FILE, shipped_model_path
    from taleweaver.safety.training import train

    families = load_families(list(corpus) or None)
    if not families:
        raise click.ClickException("the corpus has no families")
    encoder = None if no_encoder else load_encoder()
    folder = out or shipped_model_path().parent
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(
        "".join(sorted(f.id + f.label for f in families)).encode("utf-8")
    ).hexdigest()[:8]
    trained = train(
        families,
        encoder,
        version=f"{len(families)}f-{digest}",
        precision_floor=precision_floor,
        progress=click.echo,
    )
    trained.model.save(folder / MODEL_FILE)
    write_jsonl(folder / LEARNED_SET, trained.test)
    click.echo(
        f"model {trained.model.version} ({'n-grams + encoder' if encoder else 'n-grams'}) "
        f"-> {folder / MODEL_FILE}; {len(trained.test)} held-out messages -> "
        f"{folder / LEARNED_SET}"
    )


@safety.command("check")
@click.argument("text")
def check_command(text: str) -> None:
    """What the rules and the learned detector say about TEXT (no crisis protocol runs)."""
    from taleweaver.safety.service import shared_detector

    found = assess(text, RulesProvider().current())
    report = {"rules": found.to_dict()}
    learned = shared_detector()
    if learned is not None:
        found_by_model = learned.assess(text)
        report["learned"] = found_by_model.to_dict() | found_by_model.detail
    click.echo(json.dumps(report, indent=2))


commands: list[click.Command] = [safety]
