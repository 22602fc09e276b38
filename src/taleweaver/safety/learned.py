"""The learned crisis detector: trained heads over n-grams and a sentence encoder.

Two softmax heads read the same message: one over hashed character and word
n-grams (every language, chat style, the conversation's earlier turns), one over
the MiniLM sentence vector (meaning, for wordings no n-gram has seen). MiniLM is an
English model: on a message in another language its head is confidently wrong, so
it is mixed in (with the weight tuned on validation) only when the message reads as
English, and the n-grams judge the rest alone. A message is a crisis when the
chance of "none" falls below the threshold tuned on the validation families. A
third small head picks the level. The weights are ours, trained by
`taleweaver safety train` on the corpus and shipped as `data/crisis_model.npz`;
nothing is downloaded.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.safety import Assessment
from taleweaver.domain.turns import CrisisLevel
from taleweaver.safety import ngrams
from taleweaver.safety.encoder import Encoder, load_encoder

log = logging.getLogger(__name__)

CLASSES = (
    "none",
    "suicidal_ideation",
    "self_harm",
    "medical_emergency",
    "abuse",
    "harm_to_others",
    "eating_disorder",
)
CRISIS_LEVELS: tuple[CrisisLevel, ...] = ("moderate", "high", "critical")
MODEL_FILE = "crisis_model.npz"
CONTEXT_TURNS = 4  # earlier turns a message is judged with
# Words that make a chat message read as English (a share of its words, at least).
_ENGLISH = """i i'm im me my you your the a an and to of it it's is was this that what
have has just so not don't dont can't cant be been with for on at in all he she they we
his her him them will would i've ive gonna wanna like about if but or no yes do did am
are after before again tonight today"""
ENGLISH_WORDS = frozenset(_ENGLISH.split())
ENGLISH_SHARE = 0.25
_LATIN_WORD = re.compile(r"[a-z']+")

Matrix = npt.NDArray[np.float32]


def reads_as_english(text: str) -> bool:
    """Whether enough of the message's words are common English ones."""
    found = _LATIN_WORD.findall(text.lower())
    return bool(found) and sum(w in ENGLISH_WORDS for w in found) / len(found) >= ENGLISH_SHARE


def softmax(logits: Matrix) -> Matrix:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    probs: Matrix = (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)
    return probs


@dataclass(frozen=True)
class Head:
    """A linear softmax layer: rows are features, columns classes."""

    weights: Matrix
    bias: Matrix

    def sparse_logits(self, features: ngrams.Features) -> Matrix:
        indices, values = features
        rows = self.weights[indices].astype(np.float32)
        return (values @ rows if len(indices) else np.zeros_like(self.bias)) + self.bias

    def dense_logits(self, vector: Matrix) -> Matrix:
        return (vector @ self.weights.astype(np.float32) + self.bias).astype(np.float32)


@dataclass(frozen=True)
class Verdict:
    """What the model thinks of one message, with its reasons in numbers."""

    probabilities: dict[str, float]
    label: str
    level: CrisisLevel
    uncertain: bool

    @property
    def p_crisis(self) -> float:
        return 1.0 - self.probabilities["none"]


@dataclass(frozen=True)
class CrisisModel:
    ngram: Head
    ngram_level: Head
    encoder_head: Head | None
    threshold: float  # p(none) below this is a crisis (with the encoder installed)
    threshold_ngram: float  # the same, when the encoder is not installed
    band: float  # |p_crisis - (1 - threshold)| within this is "uncertain"
    version: str
    encoder_weight: float = 0.5  # the encoder head's share on a message read as English

    def judge(
        self, text: str, context: Sequence[str] = (), encoder: Encoder | None = None
    ) -> Verdict:
        features = ngrams.featurize(text, context[-CONTEXT_TURNS:])
        probs = softmax(self.ngram.sparse_logits(features))
        threshold = self.threshold_ngram
        if encoder is not None and self.encoder_head is not None:
            threshold = self.threshold
            if reads_as_english(text):
                meaning = softmax(self.encoder_head.dense_logits(encoder.encode(text)))
                probs = self.mix(probs, meaning)
        by_class = {c: float(p) for c, p in zip(CLASSES, probs, strict=True)}
        crisis = by_class["none"] < threshold
        label = max(CLASSES[1:], key=lambda c: by_class[c]) if crisis else "none"
        level: CrisisLevel = "none"
        if crisis:
            levels = softmax(self.ngram_level.sparse_logits(features))
            level = CRISIS_LEVELS[int(np.argmax(levels))]
        uncertain = abs(by_class["none"] - threshold) < self.band
        return Verdict(by_class, label, level, uncertain)

    def mix(self, by_ngrams: Matrix, by_meaning: Matrix) -> Matrix:
        w = self.encoder_weight
        mixed: Matrix = ((1 - w) * by_ngrams + w * by_meaning).astype(np.float32)
        return mixed

    def save(self, path: Path) -> None:
        arrays: dict[str, npt.NDArray[np.generic]] = {
            "ngram_w": self.ngram.weights.astype(np.float16),
            "ngram_b": self.ngram.bias,
            "level_w": self.ngram_level.weights.astype(np.float16),
            "level_b": self.ngram_level.bias,
            "meta": np.asarray(
                [self.threshold, self.threshold_ngram, self.band, self.encoder_weight], np.float64
            ),
            "version": np.asarray(self.version),
        }
        if self.encoder_head is not None:
            arrays["enc_w"] = self.encoder_head.weights
            arrays["enc_b"] = self.encoder_head.bias
        with path.open("wb") as out:
            np.savez_compressed(out, **arrays)  # type: ignore[arg-type]


def shipped_model_path() -> Path:
    return Path(str(resources.files("taleweaver.safety").joinpath("data", MODEL_FILE)))


def load_model(path: Path | None = None) -> CrisisModel:
    where = path or shipped_model_path()
    try:
        with np.load(where) as data:
            meta = data["meta"]
            encoder_head = (
                Head(data["enc_w"].astype(np.float32), data["enc_b"]) if "enc_w" in data else None
            )
            return CrisisModel(
                ngram=Head(data["ngram_w"], data["ngram_b"]),
                ngram_level=Head(data["level_w"], data["level_b"]),
                encoder_head=encoder_head,
                threshold=float(meta[0]),
                threshold_ngram=float(meta[1]),
                band=float(meta[2]),
                version=str(data["version"]),
                encoder_weight=float(meta[3]) if len(meta) > 3 else 0.5,
            )
    except (OSError, KeyError, ValueError) as exc:
        raise InvalidInput(f"cannot load the crisis model at {where}: {exc}") from exc


class LearnedDetector:
    """The model and (when installed) the encoder, loaded once per process."""

    def __init__(self, model: CrisisModel, encoder: Encoder | None) -> None:
        self.model = model
        self.encoder = encoder

    @classmethod
    def load(cls, path: Path | None = None, *, use_encoder: bool = True) -> LearnedDetector:
        model = load_model(path)
        encoder = load_encoder() if use_encoder and model.encoder_head is not None else None
        return cls(model, encoder)

    @property
    def name(self) -> str:
        parts = ["ngrams"] + ([self.encoder.name] if self.encoder else [])
        return f"learned:{self.model.version}:{'+'.join(parts)}"

    def verdict(self, text: str, context: Sequence[str] = ()) -> Verdict:
        return self.model.judge(text, context, self.encoder)

    def assess(self, text: str, context: Sequence[str] = ()) -> Assessment:
        if not text.strip():
            return Assessment(source="learned")
        found = self.verdict(text, context)
        detail = {
            "p_crisis": round(found.p_crisis, 4),
            "probabilities": {c: round(p, 4) for c, p in found.probabilities.items()},
            "uncertain": found.uncertain,
            "model": self.name,
        }
        if found.label == "none":
            return Assessment(source="learned", detail=detail)
        # Near the threshold the model offers support (a warning), it does not pause
        # the story: only a sure verdict runs the crisis protocol on its own.
        level: CrisisLevel = "low" if found.uncertain else found.level
        return Assessment(level=level, categories=(found.label,), source="learned", detail=detail)
