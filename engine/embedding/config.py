"""Policy model of an embedder: which kind, where it runs, and its limits.

The semantic cache and the tier router's `semantic_difficulty` feature both embed the last user
text, and they share one embedder when their configs are equal (see `load_embedder`).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from engine.policy.durations import Duration

EmbedderKind = Literal["onnx-minilm", "ollama", "openai-compatible", "hashing"]


class EmbedderConfig(BaseModel):
    """Settings of one embedder. The model is frozen (hashable), so equal configs share one loaded embedder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: EmbedderKind = Field(
        "onnx-minilm",
        description="onnx-minilm: all-MiniLM-L6-v2 (int8 ONNX) in-process, no network. "
        "ollama / openai-compatible: an embedding endpoint at base_url. "
        "hashing: a deterministic bag-of-words hash for unit tests only (no semantic similarity).",
    )
    threads: int | None = Field(
        None,
        ge=1,
        le=64,
        description="onnx-minilm: intra-op threads of the ONNX Runtime session "
        "(default: 2, or 1 on a single-core machine).",
    )
    compute: Literal["int8", "float32"] = Field(
        "int8",
        description="onnx-minilm: int8 keeps the weights in int8 through a graph rewritten once into the "
        "cache folder ($LEANGATE_CACHE_DIR, else ~/.cache/leangate), a 45 MB session; float32 loads the "
        "package's graph as it is, which ONNX Runtime expands to a 160 MB session. Vectors agree within "
        "5e-3 in cosine.",
    )
    max_tokens: int = Field(
        256,
        ge=8,
        le=512,
        description="onnx-minilm: texts are truncated to this many WordPiece tokens "
        "(all-MiniLM-L6-v2 was trained on at most 256).",
    )
    base_url: str | None = Field(
        None,
        description="ollama / openai-compatible: root URL of the server, e.g. http://127.0.0.1:11434.",
    )
    model: str | None = Field(None, description="ollama / openai-compatible: the embedding model name.")
    api_key: SecretStr | None = Field(
        None, description="openai-compatible: bearer token; write `${ENV_NAME}`, never the key itself."
    )
    dim: int | None = Field(
        None,
        ge=2,
        le=16_384,
        description="Vector size. hashing: default 256. ollama / openai-compatible: checked against "
        "every answer; when unset, the first answer sets it.",
    )
    timeout: Duration = Field(10.0, description="ollama / openai-compatible: seconds for one embedding call.")

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_remote_fields(self) -> "EmbedderConfig":
        if self.kind in ("ollama", "openai-compatible"):
            missing = [name for name in ("base_url", "model") if getattr(self, name) is None]
            if missing:
                raise ValueError(f"embedder kind {self.kind!r} needs {' and '.join(missing)}")
        return self
