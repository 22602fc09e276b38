"""The crisis detector's view of the bundled sentence encoder (`taleweaver.llm`'s,
one runtime and one copy of the weights for the whole process).

Without the encoder's packages `load_encoder()` says why in the log and returns None,
and the learned detector runs on its n-gram head alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from taleweaver.llm import SentenceEncoder, Vector, shared_sentence_encoder

log = logging.getLogger(__name__)

MAX_TOKENS = 48  # a chat message; a longer one is judged on its start here, whole by n-grams
DIM = 384


class Encoder(Protocol):
    name: str

    def encode(self, text: str) -> Vector: ...

    def encode_many(self, texts: Sequence[str]) -> list[Vector]: ...


class MessageEncoder:
    """A message's vector as the encoder head was trained on it: its first 48 pieces."""

    def __init__(self, encoder: SentenceEncoder) -> None:
        self.encoder = encoder
        self.name = encoder.name

    def encode(self, text: str) -> Vector:
        return self.encoder.encode(text, max_tokens=MAX_TOKENS)

    def encode_many(self, texts: Sequence[str]) -> list[Vector]:
        """Many messages at once (training): batched, the same vectors as one by one."""
        return self.encoder.encode_many(texts, max_tokens=MAX_TOKENS)


def load_encoder() -> Encoder | None:
    """The bundled encoder, or None (logged) when its packages are not installed."""
    encoder = shared_sentence_encoder()
    if encoder is None:
        log.info("no sentence encoder; the crisis model uses n-grams alone")
        return None
    return MessageEncoder(encoder)
