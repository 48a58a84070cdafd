"""Embedders that call an embedding server over HTTP: Ollama's `/api/embed` and OpenAI-compatible
`/v1/embeddings` (vLLM, llama.cpp server, LM Studio, OpenAI itself).

Calls are synchronous (`httpx.Client`), because `Embedder.embed` is synchronous; the cache runs
remote embedders in a worker thread so that the event loop keeps serving.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Sequence

import httpx
import numpy as np

from engine.embedding.base import normalise_rows
from engine.embedding.config import EmbedderConfig
from engine.embedding.errors import EmbeddingError

logger = logging.getLogger(__name__)


class _HttpEmbedder:
    """Shared plumbing: one pooled client, dimension checks, normalisation, error wrapping."""

    kind = ""
    path = ""

    def __init__(self, config: EmbedderConfig) -> None:
        assert config.base_url is not None and config.model is not None  # EmbedderConfig checks both
        self.base_url = config.base_url
        self.model = config.model
        self.name = f"{self.kind}:{config.model}"
        self._dim = config.dim
        self._dim_lock = threading.Lock()
        headers = {"content-type": "application/json"}
        if config.api_key is not None and config.api_key.get_secret_value():
            headers["authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        self._client = httpx.Client(base_url=config.base_url, headers=headers, timeout=config.timeout)

    @property
    def dim(self) -> int:
        """Vector size; when the config left it unset, one probe call to the server sets it."""
        if self._dim is None:
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single str")
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)

        url = f"{self.base_url}{self.path}"
        try:
            response = self._client.post(self.path, json=self._request_body(list(texts)))
        except httpx.HTTPError as error:
            raise EmbeddingError(f"embedding request to {url} failed: {type(error).__name__}: {error}") from error
        if response.status_code != 200:
            raise EmbeddingError(
                f"embedding request to {url} returned HTTP {response.status_code}: {response.text[:200]!r}"
            )
        try:
            rows = self._vectors_from(response.json())
            vectors = np.asarray(rows, dtype=np.float32)
        except (ValueError, KeyError, TypeError, IndexError) as error:
            raise EmbeddingError(f"embedding response from {url} is not in the expected shape: {error}") from error

        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise EmbeddingError(
                f"embedding response from {url} has shape {vectors.shape}, expected {len(texts)} rows"
            )
        self._check_dim(vectors.shape[1], url)
        return normalise_rows(vectors)

    def _check_dim(self, dim: int, url: str) -> None:
        with self._dim_lock:
            if self._dim is None:
                self._dim = dim
                logger.info("embedder %s at %s returns %d dimensions", self.name, url, dim)
            elif dim != self._dim:
                raise EmbeddingError(f"embedding response from {url} has {dim} dimensions, expected {self._dim}")

    def close(self) -> None:
        self._client.close()

    def _request_body(self, texts: list[str]) -> dict[str, Any]:
        raise NotImplementedError

    def _vectors_from(self, payload: Any) -> list[list[float]]:
        raise NotImplementedError


class OllamaEmbedder(_HttpEmbedder):
    """Embed with Ollama's `POST /api/embed` (`{"model", "input": [...]}` -> `{"embeddings": [...]}`)."""

    kind = "ollama"
    path = "/api/embed"

    def _request_body(self, texts: list[str]) -> dict[str, Any]:
        return {"model": self.model, "input": texts, "truncate": True}

    def _vectors_from(self, payload: Any) -> list[list[float]]:
        return payload["embeddings"]


class OpenAICompatibleEmbedder(_HttpEmbedder):
    """Embed with `POST /v1/embeddings` (`{"data": [{"index", "embedding"}, ...]}`)."""

    kind = "openai-compatible"
    path = "/v1/embeddings"

    def _request_body(self, texts: list[str]) -> dict[str, Any]:
        return {"model": self.model, "input": texts, "encoding_format": "float"}

    def _vectors_from(self, payload: Any) -> list[list[float]]:
        items = sorted(payload["data"], key=lambda item: item["index"])
        return [item["embedding"] for item in items]
