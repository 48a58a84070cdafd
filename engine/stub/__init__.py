"""A local stand-in provider (`leangate stub-upstream`) and its prompt-caching simulator."""

from engine.stub.prompt_cache import AnthropicCacheUsage, PromptCacheError, PromptCacheSimulator
from engine.stub.server import StubConfig, StubUpstream

__all__ = ["AnthropicCacheUsage", "PromptCacheError", "PromptCacheSimulator", "StubConfig", "StubUpstream"]
