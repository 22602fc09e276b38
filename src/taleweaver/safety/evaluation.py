"""The evaluation harness: precision, recall and a confusion matrix over a labelled set.

Each line of a set is JSON: {"text": ..., "label": category or "none", "level": ...},
optionally with "lang" (default en), "family", "author" and "context" (the earlier
turns the message is judged with). "Flagged" means any category at any level; a
prediction's category is the most severe one the detector found. Scores are given
overall, per category (with "caught": the share flagged as any crisis, which is
what starts the protocol), per language and per author, with the confusion matrix.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.safety import CATEGORIES, Assessment

LABELS = (*CATEGORIES, "none")
# A detector reads one message and the conversation before it, oldest turn first.
Detector = Callable[[str, Sequence[str]], Awaitable[Assessment]]


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: str
    level: str
    lang: str = "en"
    author: str = ""
    context: tuple[str, ...] = ()


@dataclass
class Report:
    total: int = 0
    # confusion[true label][predicted label]
    confusion: dict[str, dict[str, int]] = field(
        default_factory=lambda: {t: dict.fromkeys(LABELS, 0) for t in LABELS}
    )
    misses: list[tuple[Example, str]] = field(default_factory=list)
    # per group ("lang:fr", "author:b"): [true pos., false neg., false pos., examples]
    groups: dict[str, list[int]] = field(default_factory=dict)

    def add(self, example: Example, predicted: str) -> None:
        self.total += 1
        self.confusion[example.label][predicted] += 1
        if predicted != example.label:
            self.misses.append((example, predicted))
        is_crisis, flagged = example.label != "none", predicted != "none"
        for group in (f"lang:{example.lang}", f"author:{example.author or '-'}"):
            counts = self.groups.setdefault(group, [0, 0, 0, 0])
            counts[0] += is_crisis and flagged
            counts[1] += is_crisis and not flagged
            counts[2] += flagged and not is_crisis
            counts[3] += 1

    def group_scores(self, group: str) -> tuple[float, float, int]:
        """(precision, recall, examples) of "a crisis" within one language or author."""
        tp, fn, fp, n = self.groups[group]
        return _ratio(tp, tp + fp), _ratio(tp, tp + fn), n

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

    def caught(self, label: str) -> float:
        """The share of a category's messages flagged as a crisis of any category: the
        crisis protocol runs for them even when the category named is another one."""
        actual = sum(self.confusion[label].values())
        if label == "none":
            return _ratio(self.confusion["none"]["none"], actual)
        return _ratio(actual - self.confusion[label]["none"], actual)

    def lines(self, *, show_misses: bool = False) -> list[str]:
        precision, recall = self.crisis_scores()
        out = [
            f"examples: {self.total}",
            f"crisis (any category): precision {precision:.3f}  recall {recall:.3f}",
            "",
            f"{'category':<20}{'precision':>10}{'recall':>8}{'caught':>8}{'n':>5}",
        ]
        for label in LABELS:
            p, r, n = self.category_scores(label)
            out.append(f"{label:<20}{p:>10.3f}{r:>8.3f}{self.caught(label):>8.3f}{n:>5}")
        for prefix, title in (("lang:", "language"), ("author:", "author")):
            names = sorted(g for g in self.groups if g.startswith(prefix))
            if len(names) < 2:
                continue
            out += ["", f"{title:<20}{'precision':>10}{'recall':>8}{'n':>5}"]
            for group in names:
                p, r, n = self.group_scores(group)
                out.append(f"{group.removeprefix(prefix):<20}{p:>10.3f}{r:>8.3f}{n:>5}")
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
            example = Example(
                str(row["text"]),
                str(row["label"]),
                str(row.get("level", "none")),
                str(row.get("lang", "en")),
                str(row.get("author", "")),
                tuple(str(turn) for turn in row.get("context", ())),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"{where}:{number}: not a labelled example ({exc})") from exc
        if example.label not in LABELS:
            raise InvalidInput(f"{where}:{number}: unknown label {example.label!r}")
        yield example


async def evaluate(examples: Iterable[Example], detect: Detector) -> Report:
    report = Report()
    for example in examples:
        found = await detect(example.text, example.context)
        report.add(example, found.categories[0] if found.categories else "none")
    return report
