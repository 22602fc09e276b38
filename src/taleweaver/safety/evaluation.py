"""The evaluation harness: precision, recall and a confusion matrix over a labelled set.

Each line of a set is JSON: {"text": ..., "label": category or "none", "level": ...}.
"Flagged" means any category at any level; a prediction's category is the most
severe one the detector found.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.safety import CATEGORIES, Assessment

LABELS = (*CATEGORIES, "none")
Detector = Callable[[str], Awaitable[Assessment]]


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: str
    level: str


@dataclass
class Report:
    total: int = 0
    # confusion[true label][predicted label]
    confusion: dict[str, dict[str, int]] = field(
        default_factory=lambda: {t: dict.fromkeys(LABELS, 0) for t in LABELS}
    )
    misses: list[tuple[Example, str]] = field(default_factory=list)

    def add(self, example: Example, predicted: str) -> None:
        self.total += 1
        self.confusion[example.label][predicted] += 1
        if predicted != example.label:
            self.misses.append((example, predicted))

    def crisis_scores(self) -> tuple[float, float]:
        """(precision, recall) of "this is a crisis message", whatever the category."""
        tp = sum(self.confusion[t][p] for t in CATEGORIES for p in CATEGORIES)
        fn = sum(self.confusion[t]["none"] for t in CATEGORIES)
        fp = sum(self.confusion["none"][p] for p in CATEGORIES)
        return _ratio(tp, tp + fp), _ratio(tp, tp + fn)

    def category_scores(self, label: str) -> tuple[float, float, int]:
        tp = self.confusion[label][label]
        predicted = sum(self.confusion[t][label] for t in LABELS)
        actual = sum(self.confusion[label].values())
        return _ratio(tp, predicted), _ratio(tp, actual), actual

    def lines(self, *, show_misses: bool = False) -> list[str]:
        precision, recall = self.crisis_scores()
        out = [
            f"examples: {self.total}",
            f"crisis (any category): precision {precision:.3f}  recall {recall:.3f}",
            "",
            f"{'category':<20}{'precision':>10}{'recall':>8}{'n':>5}",
        ]
        for label in LABELS:
            p, r, n = self.category_scores(label)
            out.append(f"{label:<20}{p:>10.3f}{r:>8.3f}{n:>5}")
        short = {label: label[:6] for label in LABELS}
        out += ["", "confusion (rows: true, columns: predicted)"]
        out.append(" " * 20 + "".join(f"{short[p]:>8}" for p in LABELS))
        for t in LABELS:
            out.append(f"{t:<20}" + "".join(f"{self.confusion[t][p]:>8}" for p in LABELS))
        if show_misses and self.misses:
            out += ["", "misses:"]
            out += [f"  [{e.label} -> {p}] {e.text}" for e, p in self.misses]
        return out


def _ratio(a: int, b: int) -> float:
    return a / b if b else 1.0


def load_set(path: Path | None = None, *, name: str = "eval_set.jsonl") -> list[Example]:
    """A labelled set from a file, or one shipped with the package by name."""
    if path is None:
        text = resources.files("taleweaver.safety").joinpath("data", name).read_text("utf-8")
        where = name
    else:
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
        where = str(path)
    return list(_parse(text.splitlines(), where))


def _parse(lines: Iterable[str], where: str) -> Iterable[Example]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            example = Example(str(row["text"]), str(row["label"]), str(row.get("level", "none")))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"{where}:{number}: not a labelled example ({exc})") from exc
        if example.label not in LABELS:
            raise InvalidInput(f"{where}:{number}: unknown label {example.label!r}")
        yield example


async def evaluate(examples: Iterable[Example], detect: Detector) -> Report:
    report = Report()
    for example in examples:
        found = await detect(example.text)
        report.add(example, found.categories[0] if found.categories else "none")
    return report
