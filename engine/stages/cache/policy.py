"""Policy models of the semantic cache (owned by that stage)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class CacheSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
