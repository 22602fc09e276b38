"""A hashing embedder: each word hashed into one of 64 buckets. It knows no meaning,
only shared words, but needs no model files and costs microseconds: the fallback
when the sentence encoder is not installed, and the fast choice for tests."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

__all__ = ["HashingEmbedder"]

_WORD = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    dim = 64
    name = "hash-64@1"

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vector(t) for t in texts]

    def vector(self, text: str) -> list[float]:
        out = [0.0] * self.dim
        for word in _WORD.findall(text.casefold()):
            out[
                int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest()) % self.dim
            ] += 1.0
        norm = math.sqrt(sum(x * x for x in out)) or 1.0
        return [x / norm for x in out]
