"""The shipped data: the assessment instruments' item texts and the emotion lexicon."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from taleweaver.domain.therapy import ITEM_COUNT, Instrument, LexiconEntry


def _load(name: str) -> Any:
    return json.loads(resources.files("taleweaver.therapy").joinpath("data", name).read_text())


@dataclass(frozen=True, slots=True)
class InstrumentText:
    instrument: Instrument
    name: str
    question: str
    items: tuple[str, ...]
    answers: tuple[str, ...]  # the label of each answer value, 0 first


@cache
def instruments() -> dict[Instrument, InstrumentText]:
    data = _load("instruments.json")
    found = {
        kind: InstrumentText(
            kind,
            data[kind]["name"],
            data[kind]["question"],
            tuple(data[kind]["items"]),
            tuple(data["answers"]),
        )
        for kind in Instrument
    }
    for kind, text in found.items():  # the scoring rules and the texts must agree
        assert len(text.items) == ITEM_COUNT[kind], kind
    return found


@cache
def lexicon() -> dict[str, LexiconEntry]:
    return {
        word: LexiconEntry(emotion, float(valence), float(arousal))
        for word, (emotion, valence, arousal) in _load("emotions.json").items()
    }
