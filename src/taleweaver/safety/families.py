"""The crisis corpus (`corpus/`): template families, expanded and split by family.

A family (see `corpus/FORMAT.md`) is one way of saying one thing. The split into
train, validation and test is decided by a hash of the family id (families written
after the test side was frozen pin themselves to train or validation), so every
message of a family lands on the same side: the test set measures how the detector
does on wordings it has never seen, not how well it remembers lines. Expansion is
deterministic (a seeded sample of the slot combinations) so figures are repeatable.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
import string
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Literal

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.safety import LEVELS
from taleweaver.safety.evaluation import LABELS

Split = Literal["train", "validation", "test"]
PER_FAMILY = 14  # messages kept per family: enough variety, no family dominates
_SLOT = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class Family:
    id: str
    author: str
    lang: str
    label: str
    level: str
    kind: str
    templates: tuple[str, ...]
    slots: dict[str, tuple[str, ...]]
    context: tuple[str, ...] = ()
    # Pinned side: families written after the test families were frozen go to train
    # or validation only, so the held-out set stays the one measured before them.
    split: Split | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """One labelled message, with the family it came from and its conversation."""

    text: str
    label: str
    level: str
    lang: str
    family: str
    author: str
    kind: str
    context: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        row: dict[str, object] = {
            "text": self.text,
            "label": self.label,
            "level": self.level,
            "lang": self.lang,
            "family": self.family,
            "author": self.author,
            "kind": self.kind,
        }
        if self.context:
            row["context"] = list(self.context)
        return row


def parse_family(row: object, where: str) -> Family:
    """One line of a families file, checked; a bad line names itself."""
    if not isinstance(row, dict):
        raise InvalidInput(f"{where}: a family is a JSON object")
    try:
        family = Family(
            id=str(row["family"]),
            author=str(row.get("author", row["family"].split("-", 1)[0])),
            lang=str(row["lang"]),
            label=str(row["label"]),
            level=str(row.get("level", "none")),
            kind=str(row.get("kind", "")),
            templates=tuple(str(t) for t in row["templates"]),
            slots={str(k): tuple(str(v) for v in vs) for k, vs in row.get("slots", {}).items()},
            context=tuple(str(c) for c in row.get("context", ())),
            split=_pinned(row.get("split"), where),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise InvalidInput(f"{where}: not a family ({exc})") from exc
    if family.label not in LABELS:
        raise InvalidInput(f"{where}: unknown label {family.label!r}")
    if family.level not in LEVELS:
        raise InvalidInput(f"{where}: unknown level {family.level!r}")
    if (family.label == "none") != (family.level == "none"):
        raise InvalidInput(f"{where}: a negative has level none and a crisis has a level")
    if not family.templates:
        raise InvalidInput(f"{where}: a family needs at least one template")
    for template in family.templates:
        for slot in _SLOT.findall(template):
            if not family.slots.get(slot):
                raise InvalidInput(f"{where}: template uses {{{slot}}} which has no values")
    return family


def _pinned(value: object, where: str) -> Split | None:
    """A family may pin itself to train or validation, never to test: the test side
    is the hash's alone, so nobody can choose what the detector is measured on."""
    if value is None:
        return None
    if value == "train":
        return "train"
    if value == "validation":
        return "validation"
    raise InvalidInput(f"{where}: a family may pin split to train or validation only")


def side_of(family: Family) -> Split:
    """The family's side: its pinned one, else the hash of its id."""
    return family.split or split_of(family.id)


def expand(family: Family, limit: int = PER_FAMILY) -> list[Message]:
    """Up to `limit` distinct messages of a family, the same ones every run."""
    texts: list[str] = []
    for template in family.templates:
        names = sorted(set(_SLOT.findall(template)))
        for values in itertools.product(*(family.slots[n] for n in names)):
            texts.append(_fill(template, dict(zip(names, values, strict=True))))
    unique = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
    rng = random.Random(_seed(family.id))
    if len(unique) > limit:
        # Every template keeps a share before the rest is sampled.
        firsts = [u for u in unique if u in {_first(family, t) for t in family.templates}]
        rest = [u for u in unique if u not in firsts]
        unique = firsts[:limit] + rng.sample(rest, max(0, limit - len(firsts)))
    return [
        Message(
            t,
            family.label,
            family.level,
            family.lang,
            family.id,
            family.author,
            family.kind,
            family.context,
        )
        for t in unique
    ]


def _fill(template: str, values: dict[str, str]) -> str:
    return _SLOT.sub(lambda m: values[m.group(1)], template)


def _first(family: Family, template: str) -> str:
    return _fill(template, {k: v[0] for k, v in family.slots.items()}).strip()


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def split_of(family_id: str, *, test_share: float = 0.3, validation_share: float = 0.1) -> Split:
    """Which side of the split a family is on: a hash of its id, nothing else."""
    point = _seed("split:" + family_id) / 2**64
    if point < test_share:
        return "test"
    if point < test_share + validation_share:
        return "validation"
    return "train"


def corpus_dir() -> Path:
    return Path(str(resources.files("taleweaver.safety").joinpath("corpus")))


def load_families(paths: Iterable[Path] | None = None) -> list[Family]:
    """Every family in the given files (default: the shipped corpus files)."""
    files = sorted(corpus_dir().glob("families_*.jsonl")) if paths is None else list(paths)
    families: list[Family] = []
    seen: set[str] = set()
    for path in files:
        try:
            lines = path.read_text("utf-8").splitlines()
        except OSError as exc:
            raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path.name}:{number}"
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise InvalidInput(f"{where}: not JSON ({exc})") from exc
            family = parse_family(row, where)
            if family.id in seen:
                raise InvalidInput(f"{where}: family {family.id!r} appears twice")
            seen.add(family.id)
            families.append(family)
    return families


def messages(families: Iterable[Family], split: Split | None = None) -> list[Message]:
    return [m for f in families if split is None or side_of(f) == split for m in expand(f)]


# Chat style for training only: people drop case, accents and punctuation.
_PUNCT = str.maketrans("", "", string.punctuation.replace("'", ""))


def chat_variants(message: Message, rng: random.Random) -> Iterator[Message]:
    """The message as typed on a phone in a hurry: lower case, unpunctuated, one typo."""
    lowered = message.text.lower().translate(_PUNCT)
    if lowered != message.text:
        yield replace(message, text=lowered)
    words = lowered.split()
    if len(words) > 3:
        i = rng.randrange(len(words))
        word = words[i]
        if len(word) > 3:
            j = rng.randrange(1, len(word) - 1)
            words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
            yield replace(message, text=" ".join(words))


def write_jsonl(path: Path, rows: Sequence[Message]) -> None:
    path.write_text(
        "".join(json.dumps(m.to_json(), ensure_ascii=False) + "\n" for m in rows), "utf-8"
    )
