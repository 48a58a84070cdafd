"""Policy models of tier routing (owned by that stage)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TierModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features: list[str] = Field(default_factory=list)


class TierRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    when: dict = Field(default_factory=dict)
    force: str | None = None
    floor: str | None = None


class TierSessionSection(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MarkerVocabularies(BaseModel):
    model_config = ConfigDict(extra="forbid")
