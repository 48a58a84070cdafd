"""Policy models of prompt caching (owned by that stage)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PromptCachingSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
