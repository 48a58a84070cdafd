"""Policy models of the compression stage (owned by that stage)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CompressionTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    path: str
    tool: str | None = None
    min_tokens: int = 0
    actions: list = Field(default_factory=list)
