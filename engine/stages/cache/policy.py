"""Policy models of the semantic cache (the `cache:` section of a policy).

Settings fall in two groups. Those read per request (`similarity`, `class_similarity`, `ttl`,
`scope`, `eligibility`, `guards`) may differ between teams and take effect on reload. Those that
shape the shared store (`embedder`, `max_entries`, `index`, `persistence`) are read when a
`SemanticCache` is built; `cache_for` builds a new one when they change.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.embedding.config import EmbedderConfig
from engine.policy.durations import Duration


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CacheScope(_Section):
    """Scope keys beyond the team, which is always part of the scope."""

    model: bool = Field(True, description="Scope by the requested model name.")
    system: bool = Field(True, description="Scope by a hash of the system prompt.")
    tools: bool = Field(True, description="Scope by a hash of the tool definitions and tool_choice.")
    headers: list[str] = Field(
        default_factory=list,
        description="Extra request headers whose values join the scope (e.g. x-repository).",
    )

    @field_validator("headers")
    @classmethod
    def _lower_case_headers(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name):
                raise ValueError(f"invalid header name {name!r}")
        return [name.lower() for name in value]


class CacheEligibility(_Section):
    """Rules for which requests may be served from the cache and which responses may be stored."""

    max_messages: int = Field(
        1, ge=1, description="Largest number of messages in an eligible request (1 = single-turn only)."
    )
    tool_results: bool = Field(False, description="Allow requests that contain tool_result blocks.")
    max_temperature: float = Field(
        1.0,
        ge=0,
        le=2,
        description="Requests with a higher temperature are ineligible. A request without one counts as 1.0, "
        "the Anthropic default, so a bound below 1.0 also excludes those.",
    )
    classes: list[str] | None = Field(
        None, description="Request classes that may use the cache (null = every class)."
    )
    semantic_max_tokens: int = Field(
        200,
        ge=1,
        le=2000,
        description="Longer last user texts get exact matching only, because the embedder reads at most "
        "256 WordPiece tokens and would not see a difference past that.",
    )
    store_tool_calls: bool = Field(
        False, description="Store responses that contain tool_use blocks (off: they act on one workspace)."
    )


class CacheGuards(_Section):
    """Checks a semantic candidate must pass beyond the similarity threshold. Each is on by default."""

    identifiers: bool = Field(True, description="Same code identifiers (snake_case, camelCase, dotted names, calls).")
    literals: bool = Field(True, description="Same quoted strings and backticked code spans.")
    numbers: bool = Field(True, description="Same numbers and versions.")
    paths: bool = Field(True, description="Same file paths, file names and URLs.")
    languages: bool = Field(True, description="Same programming languages, frameworks and tools.")
    data_types: bool = Field(True, description="Same data types and structures (list, dict, string, int ...).")
    negations: bool = Field(True, description="Same count of negations, and no un-/non-/in- prefixed opposites.")
    opposites: bool = Field(True, description="No word of an opposite pair (sync/async, min/max ...) on one side only.")
    word_order: bool = Field(
        True, description="No reversed direction: `A to B` against `B to A` (also into, from, as, over, than)."
    )
    substitution: bool = Field(
        True, description="Reject texts that differ by exactly one content word swapped for a non-synonym."
    )
    extra_languages: list[str] = Field(
        default_factory=list, description="More names to treat as languages or tools (lower-case words)."
    )
    extra_opposites: list[tuple[str, str]] = Field(
        default_factory=list, description="More opposite word pairs, e.g. [[staging, production]]."
    )


class CacheIndex(_Section):
    """The FAISS index of each scope."""

    exact_up_to: int = Field(
        20_000,
        ge=1,
        description="A scope keeps an exact IndexFlatIP up to this many entries and moves to HNSW above.",
    )
    hnsw_m: int = Field(32, ge=4, le=128, description="HNSW neighbours per node.")
    hnsw_ef_construction: int = Field(80, ge=8, le=1024, description="HNSW candidate list size while adding.")
    hnsw_ef_search: int = Field(64, ge=8, le=1024, description="HNSW candidate list size while searching.")
    candidates: int = Field(8, ge=1, le=64, description="Nearest entries checked against the guards per lookup.")


class CachePersistence(_Section):
    directory: str | None = Field(None, description="Folder for the cache files (null = memory only).")
    interval: Duration = Field(30.0, description="Seconds between snapshots while entries change.")


class CacheSection(_Section):
    """The `cache:` section: exact and semantic response caching, off by default."""

    enabled: bool = False
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    similarity: float = Field(
        0.90, gt=0, le=1, description="Least cosine similarity for a semantic hit (unit vectors)."
    )
    class_similarity: dict[str, float] = Field(
        default_factory=dict, description="Request class -> threshold that replaces `similarity`."
    )
    ttl: Duration = Field(24 * 3600.0, description="Entries older than this are not served.")
    max_entries: int = Field(100_000, ge=1, le=10_000_000, description="Entries kept; least recently used go first.")
    index: CacheIndex = Field(default_factory=CacheIndex)
    scope: CacheScope = Field(default_factory=CacheScope)
    eligibility: CacheEligibility = Field(default_factory=CacheEligibility)
    guards: CacheGuards = Field(default_factory=CacheGuards)
    persistence: CachePersistence = Field(default_factory=CachePersistence)

    @field_validator("class_similarity")
    @classmethod
    def _check_class_thresholds(cls, value: dict[str, float]) -> dict[str, float]:
        for name, threshold in value.items():
            if not 0 < threshold <= 1:
                raise ValueError(f"threshold of class {name!r} must be above 0 and at most 1, got {threshold}")
        return value

    def threshold_for(self, request_class: str | None) -> float:
        if request_class is not None and request_class in self.class_similarity:
            return self.class_similarity[request_class]
        return self.similarity

    def store_settings(self) -> dict[str, Any]:
        """Return the settings that shape the shared store; a change needs a new `SemanticCache`."""
        return {
            "embedder": self.embedder.model_dump(mode="json"),
            "max_entries": self.max_entries,
            "index": self.index.model_dump(),
            "persistence": self.persistence.model_dump(),
        }
