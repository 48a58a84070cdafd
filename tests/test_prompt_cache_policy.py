"""The `prompt_caching` policy section: resolution order, defaults and load errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from engine.policy.errors import PolicyError
from engine.policy.loader import load_policy_set
from engine.stages.prompt_cache.policy import PromptCachingSection

POLICIES = Path(__file__).resolve().parent.parent / "policies"


def section(**values) -> PromptCachingSection:
    return PromptCachingSection.model_validate(values)


def test_built_in_default_modes_per_client():
    settings = PromptCachingSection()
    assert settings.resolve("anthropic", "strong", "anthropic", "claude-sonnet-4-5").mode == "preserve"
    assert settings.resolve("anthropic", "strong", "openai-chat", "claude-sonnet-4-5").mode == "inject"
    assert settings.resolve("anthropic", "strong", "openai-responses", "claude-sonnet-4-5").mode == "inject"
    assert settings.resolve("anthropic", "strong", "anthropic", "claude-sonnet-4-5").ttl == "5m"


def test_tier_overrides_provider_overrides_default():
    settings = section(
        default={"mode": "off", "ttl": "5m"},
        providers={"anthropic": {"mode": "inject", "ttl": "1h", "tiers": {"fast": {"mode": "preserve"}}}},
    )
    fast = settings.resolve("anthropic", "fast", "openai-chat", "claude-haiku-4-5")
    strong = settings.resolve("anthropic", "strong", "openai-chat", "claude-sonnet-4-5")
    other = settings.resolve("bedrock", "strong", "openai-chat", "claude-sonnet-4-5")
    assert fast.mode == "preserve"
    assert fast.ttl == "1h", "a tier without ttl takes its provider's"
    assert strong.mode == "inject"
    assert other.mode == "off"
    assert other.ttl == "5m"


def test_protocol_missing_from_mapping_falls_through():
    settings = section(
        default={"mode": {"anthropic": "preserve", "openai-chat": "off", "openai-responses": "off"}},
        providers={"anthropic": {"mode": {"openai-chat": "inject"}}},
    )
    assert settings.resolve("anthropic", None, "openai-chat", "m").mode == "inject"
    assert settings.resolve("anthropic", None, "openai-responses", "m").mode == "off"
    assert settings.resolve("anthropic", None, "anthropic", "m").mode == "preserve"


def test_min_tokens_first_matching_glob_wins():
    settings = section(min_tokens={"claude-haiku-4-5*": 4096, "*haiku*": 2048, "*": 1024})
    assert settings.resolve("a", None, "anthropic", "claude-haiku-4-5-20251001").min_tokens == 4096
    assert settings.resolve("a", None, "anthropic", "claude-3-5-haiku").min_tokens == 2048
    assert settings.resolve("a", None, "anthropic", "claude-sonnet-4-5").min_tokens == 1024


def test_min_tokens_without_match_uses_1024():
    settings = section(min_tokens={"claude-haiku*": 2048})
    assert settings.resolve("a", None, "anthropic", "claude-sonnet-4-5").min_tokens == 1024


@pytest.mark.parametrize(
    "values",
    [
        {"default": {"mode": "sometimes"}},
        {"default": {"ttl": "10m"}},
        {"default": {"mode": {"cursor": "inject"}}},
        {"min_tokens": {"*": -1}},
        {"providers": {"anthropic": {"tiers": {"fast": {"tiers": {}}}}}},
        {"breakpoints": 3},
    ],
)
def test_invalid_section_is_rejected(values):
    with pytest.raises(ValidationError):
        section(**values)


def test_shipped_policy_resolves_haiku_minimum():
    policy = load_policy_set(POLICIES).base
    fast = policy.prompt_caching.resolve("anthropic", "fast", "openai-chat", "claude-haiku-4-5")
    strong = policy.prompt_caching.resolve("anthropic", "strong", "openai-chat", "claude-sonnet-4-5")
    assert fast.min_tokens == 4096
    assert strong.min_tokens == 1024
    assert fast.mode == "inject"
    assert policy.prompt_caching.resolve("anthropic", "strong", "anthropic", "claude-sonnet-4-5").mode == "preserve"


def test_loader_reports_bad_mode_with_location(tmp_path):
    folder = tmp_path / "policies"
    shutil.copytree(POLICIES, folder, ignore=shutil.ignore_patterns("teams", "tests"))
    path = folder / "default.yaml"
    text = path.read_text()
    broken = text.replace("openai-chat: inject, openai-responses: inject}", "openai-chat: always, openai-responses: inject}", 1)
    assert broken != text
    path.write_text(broken)
    line = next(number for number, content in enumerate(broken.splitlines(), 1) if "openai-chat: always" in content)

    with pytest.raises(PolicyError) as caught:
        load_policy_set(folder)
    issues = [issue for issue in caught.value.issues if issue.key_path.startswith("prompt_caching.default.mode")]
    assert issues, [str(issue) for issue in caught.value.issues]
    assert all(issue.line == line for issue in issues)
