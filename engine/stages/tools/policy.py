"""Policy models of tool selection: request classes (owned by the tool-selection stage)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ClassRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    when: dict = Field(default_factory=dict)
    keep: list[str] | str = "all"
