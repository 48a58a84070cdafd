"""Exceptions raised by embedders."""

from __future__ import annotations


class EmbeddingError(Exception):
    """Raised when an embedder cannot produce vectors (bad model file, server down, bad answer)."""


class ModelFileError(EmbeddingError):
    """Raised when the bundled model or tokenizer file is missing or its sha256 does not match."""
