"""Text embedders: `load_embedder(config)` returns one loaded `Embedder` per distinct config.

Kinds: `onnx-minilm` (default; all-MiniLM-L6-v2 in-process, no network), `ollama` and
`openai-compatible` (an embedding server at a configured URL), and `hashing` (unit tests only).
"""

from __future__ import annotations

import threading

from engine.embedding.base import Embedder, normalise_rows
from engine.embedding.config import EmbedderConfig, EmbedderKind
from engine.embedding.errors import EmbeddingError, ModelFileError

__all__ = [
    "Embedder",
    "EmbedderConfig",
    "EmbedderKind",
    "EmbeddingError",
    "ModelFileError",
    "load_embedder",
    "normalise_rows",
]

_loaded: dict[EmbedderConfig, Embedder] = {}
_load_lock = threading.Lock()


def load_embedder(config: EmbedderConfig | dict | None = None) -> Embedder:
    """Load the embedder that `config` describes, or return the one already loaded for an equal config.

    Loading is lazy: the ONNX model is read and its sha256 checked on the first call for its config.
    Raises `ModelFileError` when a model file is missing or altered, and pydantic's
    `ValidationError` for an invalid config dict.
    """
    if config is None:
        config = EmbedderConfig()
    elif isinstance(config, dict):
        config = EmbedderConfig.model_validate(config)

    with _load_lock:
        embedder = _loaded.get(config)
        if embedder is None:
            embedder = _build(config)
            _loaded[config] = embedder
        return embedder


def _build(config: EmbedderConfig) -> Embedder:
    if config.kind == "onnx-minilm":
        from engine.embedding.onnx_minilm import OnnxMiniLMEmbedder

        return OnnxMiniLMEmbedder(threads=config.threads, max_tokens=config.max_tokens, compute=config.compute)
    if config.kind == "hashing":
        from engine.embedding.hashing import HashingEmbedder

        return HashingEmbedder(dim=config.dim or 256)
    if config.kind == "ollama":
        from engine.embedding.remote import OllamaEmbedder

        return OllamaEmbedder(config)
    if config.kind == "openai-compatible":
        from engine.embedding.remote import OpenAICompatibleEmbedder

        return OpenAICompatibleEmbedder(config)
    raise ValueError(f"unknown embedder kind {config.kind!r}")
