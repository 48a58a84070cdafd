"""Pydantic models of a policy document: the single source of truth for its schema.

`leangate schema` writes `schemas/policy.schema.json` from `Policy`. Stage sections live beside
their stages (`engine/stages/*/policy.py`) and are assembled here.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
)

from engine.policy.durations import Duration
from engine.stages.cache.policy import CacheSection
from engine.stages.compress.policy import CompressionTarget
from engine.stages.prompt_cache.policy import PromptCachingSection
from engine.stages.tier.policy import TierModel, TierRule, TierSessionSection, MarkerVocabularies
from engine.stages.tools.groups import ToolGroup
from engine.stages.tools.policy import ClassRule


class Strict(BaseModel):
    """Base for policy models: unknown keys are errors, so typos surface at load."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


ProviderKind = Literal["anthropic", "openai", "azure-openai", "ollama", "openai-compatible"]


class Timeouts(Strict):
    connect: Duration = Field(5.0, description="Seconds (or a duration such as 5s) to open a connection.")
    read: Duration = Field(300.0, description="Seconds to wait between bytes of the upstream response.")
    total: Duration | None = Field(None, description="Upper bound for a whole non-streaming call.")


class Retry(Strict):
    attempts: int = Field(2, ge=0, le=10, description="Retries after the first try, on 408, 429, 5xx and connection errors.")
    backoff: Duration = Field(0.5, description="First wait between tries; it doubles each time.")
    max_backoff: Duration = Field(8.0, description="Maximum wait between tries, `retry-after` included.")
    retry_on: list[int] = Field(default_factory=lambda: [408, 409, 429, 500, 502, 503, 504, 529])


class Provider(Strict):
    kind: ProviderKind
    base_url: str = Field(description="Root URL of the provider, e.g. https://api.anthropic.com.")
    api_key: SecretStr | None = Field(
        None, description="Provider key; always `${ENV_NAME}`, never inline (checked at load)."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers sent upstream.")
    timeout: Timeouts = Field(default_factory=Timeouts)
    retry: Retry = Field(default_factory=Retry)
    max_connections: int = Field(200, ge=1, le=10_000)
    # azure-openai
    api_version: str | None = Field(None, description="azure-openai: the `api-version` query value.")
    deployments: dict[str, str] = Field(
        default_factory=dict, description="azure-openai: model name -> deployment name (default: the model name)."
    )
    # ollama
    num_ctx: int | None = Field(None, ge=512, description="ollama: context window set on every request.")
    think: bool = Field(
        False,
        description="ollama: forward the client's thinking request as `think`. Models without thinking support "
        "reject it, and Claude Code asks for thinking on most turns, so it is off unless the model supports it.",
    )
    # openai and openai-compatible
    wire_api: Literal["chat", "responses"] = Field(
        "chat", description="openai: send requests upstream as Chat Completions or as Responses."
    )
    reasoning_content: bool = Field(
        False, description="openai-compatible: echo thinking as `reasoning_content` (DeepSeek, Kimi)."
    )

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")


class ModelLimits(Strict):
    max_output_tokens: int | None = Field(None, ge=1, description="Clamp for max_tokens.")
    context_window: int | None = Field(None, ge=1)
    display_name: str | None = None


class FallbackTarget(Strict):
    provider: str
    model: str


class Tier(Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    provider: str
    model: str
    below: float | None = Field(
        None,
        ge=0,
        le=1,
        description="This tier serves requests whose strong-tier probability is below this bound; "
        "the last tier takes the rest.",
    )
    fallbacks: list[FallbackTarget] = Field(default_factory=list)


class ApiKey(Strict):
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] = Field(
        description="sha256 hex digest of the gateway key (`leangate hash-key` prints it)."
    )
    team: str = "default"
    name: str | None = Field(None, description="A label for logs; never the key itself.")


class AdminKey(Strict):
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    name: str | None = None


class DecisionLog(Strict):
    path: str | None = Field("logs/decisions.jsonl", description="JSON Lines file; null turns the log off.")
    prompt_text: bool = Field(False, description="Also log the last user text (off by default).")


class Sessions(Strict):
    max_sessions: int = Field(10_000, ge=1, description="Agent sessions remembered (least recently used evicted).")
    idle_ttl: Duration = Field(6 * 3600.0, description="A session idle this long is forgotten.")
    header: str | None = Field(None, description="An extra request header that carries a session id.")
    derive_from_conversation: bool = Field(
        True,
        description="Without a session header, identify a session by a hash of its system prompt and first "
        "user message, so that tool sets and tiers stay sticky for clients that send no session id.",
    )


class Policy(Strict):
    """A complete policy: `policies/default.yaml`, or a team file merged over it."""

    version: int = Field(1, description="Policy format version.")
    extends: str | None = Field(None, description="Team files: the policy this one overrides (`default`).")
    description: str | None = None
    auth: Literal["none", "keys"] = Field(
        "keys", description="`none` serves without gateway keys, accepted only while bound to loopback."
    )
    keys: list[ApiKey] = Field(default_factory=list)
    admin_keys: list[AdminKey] = Field(default_factory=list)
    providers: dict[str, Provider]
    tiers: list[Tier] = Field(min_length=1)
    aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Requested model name or glob -> tier name, or `auto` for the tier model.",
    )
    models: dict[str, ModelLimits] = Field(default_factory=dict, description="Limits per upstream model name.")
    tier_model: TierModel | None = None
    tier_rules: list[TierRule] = Field(default_factory=list)
    tier_session: TierSessionSection = Field(default_factory=TierSessionSection)
    markers: MarkerVocabularies = Field(default_factory=MarkerVocabularies)
    tool_groups: dict[str, ToolGroup] = Field(default_factory=dict)
    classes: list[ClassRule] = Field(default_factory=list)
    compression: list[CompressionTarget] = Field(default_factory=list)
    cache: CacheSection = Field(default_factory=CacheSection)
    prompt_caching: PromptCachingSection = Field(default_factory=PromptCachingSection)
    sessions: Sessions = Field(default_factory=Sessions)
    decision_log: DecisionLog = Field(default_factory=DecisionLog)
    tests: str | None = Field("tests", description="Folder of `leangate test` cases, relative to the policy folder.")

    def tier(self, name: str) -> Tier:
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise KeyError(name)

    def model_limits(self, model: str) -> ModelLimits | None:
        return self.models.get(model)


def reference_errors(policy: Policy) -> list[tuple[tuple[str | int, ...], str]]:
    """Check names that refer to other parts of the policy; return (key path, message) pairs."""
    errors: list[tuple[tuple[str | int, ...], str]] = []
    seen: set[str] = set()
    for index, tier in enumerate(policy.tiers):
        if tier.name in seen:
            errors.append((("tiers", index, "name"), f"duplicate tier name {tier.name!r}"))
        seen.add(tier.name)
        if tier.provider not in policy.providers:
            errors.append((("tiers", index, "provider"), f"unknown provider {tier.provider!r}; known: {sorted(policy.providers)}"))
        for fallback_index, fallback in enumerate(tier.fallbacks):
            if fallback.provider not in policy.providers:
                errors.append(
                    (("tiers", index, "fallbacks", fallback_index, "provider"), f"unknown provider {fallback.provider!r}")
                )
        if index < len(policy.tiers) - 1 and tier.below is None:
            errors.append((("tiers", index, "below"), "every tier but the last needs a `below` probability bound"))
    for pattern, target in policy.aliases.items():
        if target != "auto" and target not in seen:
            errors.append((("aliases", pattern), f"unknown tier {target!r}; use a tier name or `auto`"))
    for provider, rule in policy.prompt_caching.providers.items():
        if provider not in policy.providers:
            errors.append((("prompt_caching", "providers", provider), f"unknown provider {provider!r}; known: {sorted(policy.providers)}"))
        for tier_name in rule.tiers:
            if tier_name not in seen:
                errors.append((("prompt_caching", "providers", provider, "tiers", tier_name), f"unknown tier {tier_name!r}"))
    return errors


def json_schema() -> dict[str, Any]:
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://leangate.dev/schemas/policy.schema.json"
    schema["title"] = "leangate policy"
    return schema
