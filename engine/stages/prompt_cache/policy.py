"""Policy models of provider prompt caching: the mode and TTL per provider and tier, and the minimum
cacheable prefix per model family.

The section resolves a setting from the most specific level that sets it: the tier under the
provider, then the provider, then `default`. A mode is one value for every client protocol, or a
mapping from client protocol to mode. A protocol missing from a mapping falls through to the next
level.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

CacheMode = Literal["preserve", "inject", "off"]
CacheTtl = Literal["5m", "1h"]
ClientProtocolName = Literal["anthropic", "openai-chat", "openai-responses"]

# Used when no level of the policy sets a value: Anthropic-format clients (Claude Code) mark their
# own requests, the OpenAI-format clients (Cursor, Aider, Cline, Codex) mark nothing.
FALLBACK_MODES: dict[str, CacheMode] = {"anthropic": "preserve", "openai-chat": "inject", "openai-responses": "inject"}
FALLBACK_TTL: CacheTtl = "5m"
FALLBACK_MIN_TOKENS = 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CachingRule(_Strict):
    """Prompt-caching settings at one level. Unset fields come from the next, less specific level."""

    mode: CacheMode | dict[ClientProtocolName, CacheMode] | None = Field(
        None,
        description="`preserve` forwards the client's cache_control breakpoints untouched, `inject` adds "
        "breakpoints after the client's last one (after tools, system and the latest turns when it sent "
        "none), `off` strips them. One value, or a mapping from client protocol "
        "(anthropic, openai-chat, openai-responses) to a value.",
    )
    ttl: CacheTtl | None = Field(
        None,
        description='Lifetime of the breakpoints that `inject` adds: "5m" (writes cost 1.25x input) or '
        '"1h" (writes cost 2x input).',
    )
    previous_turn: bool | None = Field(
        None,
        description="`inject` also marks the last block of the previous user turn, so a turn that adds "
        "more than 20 blocks still reads the prefix written one turn earlier.",
    )

    def mode_for(self, protocol: str) -> CacheMode | None:
        if isinstance(self.mode, dict):
            return self.mode.get(protocol)  # type: ignore[call-overload]
        return self.mode


class ProviderCaching(CachingRule):
    """Settings for one provider (a key of `providers`), with optional overrides per tier name."""

    tiers: dict[str, CachingRule] = Field(default_factory=dict, description="Tier name -> settings for that tier.")


@dataclass(frozen=True, slots=True)
class CachingSettings:
    """The settings that apply to one request after resolving every level."""

    mode: CacheMode
    ttl: CacheTtl
    previous_turn: bool
    min_tokens: int


class PromptCachingSection(_Strict):
    """The `prompt_caching` section of a policy."""

    default: CachingRule = Field(
        default_factory=lambda: CachingRule(mode=dict(FALLBACK_MODES), ttl=FALLBACK_TTL, previous_turn=True),
        description="Settings for every provider and tier that sets nothing more specific.",
    )
    providers: dict[str, ProviderCaching] = Field(
        default_factory=dict, description="Provider name -> settings for requests routed to it."
    )
    min_tokens: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: {"*": FALLBACK_MIN_TOKENS},
        description="Model name glob -> minimum prefix length in tokens that the provider caches. The "
        "first matching glob wins. A breakpoint whose prefix is shorter is not added.",
    )

    extended_ttl_beta: str | None = Field(
        "extended-cache-ttl-2025-04-11",
        description="`anthropic-beta` value sent with a request when `inject` adds a 1h breakpoint, "
        "because Anthropic introduced the 1-hour TTL behind this beta flag. Null sends none.",
    )

    _min_tokens_patterns: list[tuple[re.Pattern[str], int]] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _compile_min_tokens(self) -> "PromptCachingSection":
        patterns = []
        for glob, value in self.min_tokens.items():
            patterns.append((re.compile(fnmatch.translate(glob)), value))
        self._min_tokens_patterns = patterns
        return self

    def min_tokens_for(self, model: str) -> int:
        for pattern, value in self._min_tokens_patterns:
            if pattern.match(model):
                return value
        return FALLBACK_MIN_TOKENS

    def resolve(self, provider: str, tier: str | None, protocol: str, model: str) -> CachingSettings:
        """Return the settings for a request from `protocol` routed to `provider`, `tier` and `model`."""
        provider_rule = self.providers.get(provider)
        levels: list[CachingRule] = []
        if provider_rule is not None:
            if tier is not None and tier in provider_rule.tiers:
                levels.append(provider_rule.tiers[tier])
            levels.append(provider_rule)
        levels.append(self.default)

        mode = next((m for m in (level.mode_for(protocol) for level in levels) if m is not None), None)
        ttl = next((level.ttl for level in levels if level.ttl is not None), FALLBACK_TTL)
        previous_turn = next((level.previous_turn for level in levels if level.previous_turn is not None), True)
        return CachingSettings(
            mode=mode or FALLBACK_MODES.get(protocol, "preserve"),
            ttl=ttl,
            previous_turn=previous_turn,
            min_tokens=self.min_tokens_for(model),
        )
