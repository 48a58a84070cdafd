"""The embedder interface shared by the semantic cache and the tier router's difficulty feature."""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, one row a text."""

    name: str  # identifies the model and its version; stored with cache entries and tier centroids
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:  # shape (len(texts), dim), float32, unit rows
        ...


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """Scale each row to unit L2 norm and return float32; an all-zero row stays zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
