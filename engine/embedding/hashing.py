"""A deterministic hashing embedder for unit tests only.

It hashes lower-cased words and word bigrams into `dim` buckets with a sign bit. Texts that share
words score high, but paraphrases with other words do not, so it must never serve real traffic:
it exists so that tests of the cache's index, scope, TTL and persistence run without the model.
"""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

import numpy as np

from engine.embedding.base import normalise_rows

_WORD = re.compile(r"\w+")


class HashingEmbedder:
    """Embed texts as signed feature hashes of their words and word bigrams (tests only)."""

    def __init__(self, dim: int = 256) -> None:
        if dim < 2:
            raise ValueError(f"hashing embedder dim must be at least 2, got {dim}")
        self.dim = dim
        self.name = f"hashing-{dim}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single str")
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(str(text).lower())
            features = words + [f"{first} {second}" for first, second in zip(words, words[1:])]
            for feature in features:
                digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                sign = 1.0 if value & 1 else -1.0
                vectors[row, (value >> 1) % self.dim] += sign
        return normalise_rows(vectors)
