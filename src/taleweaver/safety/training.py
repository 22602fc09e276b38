"""Training the crisis model on the corpus: numpy only, deterministic, a minute or two.

The corpus is split by family (`families.split_of`): the heads learn on the train
families, the threshold is tuned on the validation families, and the test families
are written out, untouched, as the shipped evaluation set. Training messages are
also seen as typed in a hurry (lower case, no punctuation, a typo), so chat style
is not a new language to the model.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from taleweaver.safety import ngrams
from taleweaver.safety.encoder import Encoder
from taleweaver.safety.families import Family, Message, chat_variants, messages
from taleweaver.safety.learned import (
    CLASSES,
    CRISIS_LEVELS,
    CrisisModel,
    Head,
    Matrix,
    reads_as_english,
    softmax,
)

Progress = Callable[[str], None]
PRECISION_FLOOR = 0.95
ENCODER_WEIGHTS = (0.25, 0.35, 0.5)


@dataclass(frozen=True)
class Trained:
    model: CrisisModel
    test: list[Message]
    validation: list[Message]
    train_size: int


@dataclass(frozen=True)
class _Sparse:
    rows: npt.NDArray[np.int64]
    cols: npt.NDArray[np.int64]
    vals: npt.NDArray[np.float32]
    starts: npt.NDArray[np.int64]
    n: int


def _sparse(items: Sequence[Message]) -> _Sparse:
    rows: list[npt.NDArray[np.int64]] = []
    cols: list[npt.NDArray[np.int64]] = []
    vals: list[npt.NDArray[np.float32]] = []
    for i, message in enumerate(items):
        indices, values = ngrams.featurize(message.text, message.context)
        if not len(indices):  # an empty message still needs a row for the bias
            indices, values = np.zeros(1, np.int64), np.zeros(1, np.float32)
        rows.append(np.full(len(indices), i, np.int64))
        cols.append(indices)
        vals.append(values)
    row = np.concatenate(rows)
    starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]]).astype(np.int64)
    return _Sparse(row, np.concatenate(cols), np.concatenate(vals), starts, len(items))


def _fit(
    logits_of: Callable[[Matrix, Matrix], Matrix],
    grad_of: Callable[[Matrix], Matrix],
    shape: tuple[int, int],
    targets: npt.NDArray[np.int64],
    weights: Matrix,
    *,
    l2: float,
    epochs: int,
    rate: float,
) -> Head:
    """Softmax regression by full-batch Adam: deterministic, no library needed."""
    w = np.zeros(shape, np.float32)
    b = np.zeros(shape[1], np.float32)
    moments = [np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)]
    onehot = np.eye(shape[1], dtype=np.float32)[targets]
    total = float(weights.sum())
    for step in range(1, epochs + 1):
        probs = softmax(logits_of(w, b))
        delta = (probs - onehot) * (weights[:, None] / total)
        gw = grad_of(delta) + l2 * w
        gb = delta.sum(axis=0)
        for param, grad, m, v in ((w, gw, moments[0], moments[1]), (b, gb, moments[2], moments[3])):
            m *= 0.9
            m += 0.1 * grad
            v *= 0.999
            v += 0.001 * grad * grad
            param -= rate * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return Head(w, b)


def _sparse_head(
    data: _Sparse, targets: npt.NDArray[np.int64], weights: Matrix, classes: int, epochs: int
) -> Head:
    def logits_of(w: Matrix, b: Matrix) -> Matrix:
        contributions = w[data.cols] * data.vals[:, None]
        return np.add.reduceat(contributions, data.starts, axis=0) + b

    def grad_of(delta: Matrix) -> Matrix:
        scaled = delta[data.rows]
        return np.stack(
            [
                np.bincount(data.cols, weights=data.vals * scaled[:, k], minlength=ngrams.DIM)
                for k in range(classes)
            ],
            axis=1,
        ).astype(np.float32)

    shape = (ngrams.DIM, classes)
    return _fit(logits_of, grad_of, shape, targets, weights, l2=1e-6, epochs=epochs, rate=0.05)


def _dense_head(
    x: Matrix, targets: npt.NDArray[np.int64], weights: Matrix, classes: int, epochs: int
) -> Head:
    def logits_of(w: Matrix, b: Matrix) -> Matrix:
        return (x @ w + b).astype(np.float32)

    def grad_of(delta: Matrix) -> Matrix:
        return (x.T @ delta).astype(np.float32)

    shape = (x.shape[1], classes)
    return _fit(logits_of, grad_of, shape, targets, weights, l2=1e-5, epochs=epochs, rate=0.05)


def _balanced(targets: npt.NDArray[np.int64], classes: int) -> Matrix:
    """Weights so that "none" and the crises together count alike, each class evenly."""
    counts = np.bincount(targets, minlength=classes).astype(np.float32)
    present = counts > 0
    per_class = np.zeros(classes, np.float32)
    per_class[present] = 1.0 / counts[present]
    if classes == len(CLASSES) and present[0]:
        per_class[0] *= present[1:].sum()  # "none" weighs as much as all crises together
    return per_class[targets]


def _tune(p_none: Matrix, is_crisis: npt.NDArray[np.bool_], floor: float) -> tuple[float, float]:
    """The threshold on p(none) that catches the most crises on validation while its
    precision stays at `floor` (the rules add their own false alarms, and a
    false alarm pauses someone's story), with the recall it reaches there."""
    best, caught = 0.05, 0.0
    for threshold in np.linspace(0.05, 0.95, 91):
        flagged = p_none < threshold
        tp = float((flagged & is_crisis).sum())
        if flagged.sum() and tp / float(flagged.sum()) >= floor:
            best, caught = float(threshold), tp / max(1.0, float(is_crisis.sum()))
    return best, caught


def train(
    families: Sequence[Family],
    encoder: Encoder | None,
    *,
    version: str,
    epochs: int = 120,
    precision_floor: float = PRECISION_FLOOR,
    progress: Progress = lambda _: None,
) -> Trained:
    rng = random.Random(7)
    base = messages(families, "train")
    validation = messages(families, "validation")
    test = messages(families, "test")
    seen = base + [v for m in base for v in chat_variants(m, rng)]
    progress(
        f"train {len(seen)} messages ({len(base)} before chat style), "
        f"validation {len(validation)}, test {len(test)}"
    )
    targets = np.asarray([CLASSES.index(m.label) for m in seen], np.int64)
    weights = _balanced(targets, len(CLASSES))
    data = _sparse(seen)
    ngram = _sparse_head(data, targets, weights, len(CLASSES), epochs)
    progress("n-gram head trained")

    crises = [m for m in seen if m.label != "none"]
    level_targets = np.asarray([CRISIS_LEVELS.index(_crisis_level(m)) for m in crises], np.int64)
    level = _sparse_head(_sparse(crises), level_targets, _balanced(level_targets, 3), 3, epochs)
    progress("level head trained")

    encoder_head: Head | None = None
    val_probs = softmax(
        np.stack([ngram.sparse_logits(ngrams.featurize(m.text, m.context)) for m in validation])
    )
    is_crisis = np.asarray([m.label != "none" for m in validation])
    threshold_ngram, _ = _tune(val_probs[:, 0], is_crisis, precision_floor)
    threshold, encoder_weight = threshold_ngram, 0.0
    if encoder is not None:
        x = np.stack(encoder.encode_many([m.text for m in seen]))
        encoder_head = _dense_head(x, targets, weights, len(CLASSES), epochs * 4)
        progress("encoder head trained")
        val_x = np.stack(encoder.encode_many([m.text for m in validation]))
        meaning = softmax(encoder_head.dense_logits(val_x))
        english = np.asarray([reads_as_english(m.text) for m in validation])[:, None]
        best = -1.0
        for weight in ENCODER_WEIGHTS:  # the encoder's share on English, chosen on validation
            mixed = np.where(english, (1 - weight) * val_probs + weight * meaning, val_probs)
            at, caught = _tune(mixed[:, 0].astype(np.float32), is_crisis, precision_floor)
            if caught > best:
                best, threshold, encoder_weight = caught, at, weight
        progress(
            f"encoder weight {encoder_weight}, threshold {threshold:.2f}, "
            f"validation recall {best:.3f} at precision >= {precision_floor}"
        )
    model = CrisisModel(
        ngram,
        level,
        encoder_head,
        threshold,
        threshold_ngram,
        band=0.15,
        version=version,
        encoder_weight=encoder_weight,
    )
    return Trained(model, test, validation, len(seen))


def _crisis_level(message: Message) -> str:
    return message.level if message.level in CRISIS_LEVELS else "moderate"
