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
