"""Policy models of tool selection: tool groups and the ordered request-class rules.

A policy names tool groups (`tool_groups`: group -> exact tool names and globs) and an ordered list of
class rules (`classes`). The first rule whose conditions all hold gives the request its class, and the
class names the groups whose tools are forwarded. Regexes and globs compile here, at load.
"""

from __future__ import annotations

from dataclasses import dataclass

import fnmatch
import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

KEEP_ALL = "all"


class NameMatcher:
    """Exact names and shell-style globs (`mcp__github__*`), compiled into one case-sensitive regex."""

    __slots__ = ("patterns", "_regex")

    def __init__(self, patterns: list[str]):
        self.patterns = list(patterns)
        if self.patterns:
            alternatives = "|".join(f"(?:{fnmatch.translate(pattern)})" for pattern in self.patterns)
            self._regex: re.Pattern[str] | None = re.compile(alternatives)
        else:
            self._regex = None

    def matches(self, name: str) -> bool:
        return self._regex is not None and self._regex.match(name) is not None

    def __repr__(self) -> str:
        return f"NameMatcher({self.patterns!r})"


def compile_regex(pattern: str) -> re.Pattern[str]:
    """Compile a policy regex, or raise ValueError with the regex error (the loader adds the pattern)."""
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(f"invalid regular expression: {error}") from None


def _as_pattern_list(value: Any) -> Any:
    # A single glob may be written without a list: `last_tool: Bash`.
    if isinstance(value, str):
        return [value]
    return value


class ClassConditions(BaseModel):
    """Conditions of one class rule; every condition that is set must hold (an empty set always holds)."""

    model_config = ConfigDict(extra="forbid")

    last_user_text: str | None = Field(
        None,
        description="Regex searched in the last user text (system-reminder blocks removed, tool results "
        "excluded). Write `(?i)` for case-insensitive matching.",
    )
    not_last_user_text: str | None = Field(
        None, description="Regex that must NOT be found in the last user text."
    )
    tool_results: bool | None = Field(
        None, description="true: the conversation contains tool results; false: it contains none."
    )
    min_messages: int | None = Field(None, ge=0, description="At least this many messages.")
    max_messages: int | None = Field(None, ge=0, description="At most this many messages.")
    last_tool: list[str] | None = Field(
        None, description="Names or globs; the last tool called in the conversation must match one."
    )
    client: str | None = Field(
        None,
        description="Regex searched in the `user-agent`, `x-app` and `originator` request headers; "
        "one match is enough.",
    )
    model: list[str] | None = Field(None, description="Globs on the requested model name.")

    # The compiled conditions, as one plain object: pydantic resolves private attributes through
    # __getattr__, which is slow enough to show in profiles of the request path when read per field.
    _compiled: "CompiledConditions" = PrivateAttr(None)

    @field_validator("last_user_text", "not_last_user_text", "client")
    @classmethod
    def _check_regex(cls, value: str | None) -> str | None:
        if value is not None:
            compile_regex(value)
        return value

    @field_validator("last_tool", "model", mode="before")
    @classmethod
    def _accept_single_pattern(cls, value: Any) -> Any:
        return _as_pattern_list(value)

    @model_validator(mode="after")
    def _compile(self) -> "ClassConditions":
        if self.min_messages is not None and self.max_messages is not None and self.min_messages > self.max_messages:
            raise ValueError(
                f"min_messages ({self.min_messages}) must not be greater than max_messages ({self.max_messages})"
            )
        self._compiled = CompiledConditions(
            last_user_text=compile_regex(self.last_user_text) if self.last_user_text is not None else None,
            not_last_user_text=compile_regex(self.not_last_user_text) if self.not_last_user_text is not None else None,
            tool_results=self.tool_results,
            min_messages=self.min_messages,
            max_messages=self.max_messages,
            last_tool=NameMatcher(self.last_tool) if self.last_tool is not None else None,
            client=compile_regex(self.client) if self.client is not None else None,
            model=NameMatcher(self.model) if self.model is not None else None,
        )
        return self

    @property
    def compiled(self) -> "CompiledConditions":
        return self._compiled


@dataclass(frozen=True, slots=True)
class CompiledConditions:
    """ClassConditions with regexes and globs compiled; None means the condition is not set."""

    last_user_text: re.Pattern[str] | None
    not_last_user_text: re.Pattern[str] | None
    tool_results: bool | None
    min_messages: int | None
    max_messages: int | None
    last_tool: NameMatcher | None
    client: re.Pattern[str] | None
    model: NameMatcher | None


class ClassRule(BaseModel):
    """One request-class rule: a name, its conditions (`when`) and the tool groups it keeps."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="The request class; tier rules refer to it.")
    description: str | None = None
    when: ClassConditions = Field(default_factory=ClassConditions)
    keep: list[str] | Literal["all"] = Field(
        KEEP_ALL,
        description="Tool groups whose tools are forwarded, or `all`. Tools in no group are always kept.",
    )

    # Set at load when the rule is validated inside a whole policy (see `_check_groups`), otherwise on
    # first use by `bind_groups`.
    _keep_matcher: NameMatcher | None = PrivateAttr(None)
    _grouped_matcher: NameMatcher | None = PrivateAttr(None)

    @field_validator("keep")
    @classmethod
    def _check_keep_list(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list) and KEEP_ALL in value:
            raise ValueError("write `keep: all` on its own, not inside a list of groups")
        return value

    @model_validator(mode="after")
    def _check_groups(self, info: ValidationInfo) -> "ClassRule":
        # NOTE: inside `Policy.model_validate`, pydantic-core passes the fields of the enclosing policy
        # that were validated before `classes` (so `tool_groups`) as `info.data`. That lets an unknown
        # group fail at this rule's key path (`classes.N.keep`). A rule validated on its own has no
        # groups to check against and is bound later by `bind_groups`.
        data = info.data if isinstance(info.data, dict) else {}
        groups = data.get("tool_groups")
        if isinstance(groups, dict):
            self.bind_groups(groups)
        return self

    def bind_groups(self, tool_groups: dict[str, list[str]]) -> None:
        """Compile the matchers of the kept groups and of all groups; raise ValueError on an unknown group."""
        if isinstance(self.keep, list):
            unknown = [group for group in self.keep if group not in tool_groups]
            if unknown:
                known = ", ".join(sorted(tool_groups)) or "none defined"
                raise ValueError(f"keep: unknown tool group(s) {unknown}; known groups: {known}")
            kept_patterns = [pattern for group in self.keep for pattern in tool_groups[group]]
            self._keep_matcher = NameMatcher(kept_patterns)
        else:
            self._keep_matcher = None
        self._grouped_matcher = NameMatcher([pattern for patterns in tool_groups.values() for pattern in patterns])

    @property
    def is_bound(self) -> bool:
        return self._grouped_matcher is not None

    def keeps(self, name: str) -> bool:
        """Return True if this class forwards the tool `name`: `keep: all`, a kept group, or a name in no group."""
        if self._grouped_matcher is None:
            raise RuntimeError(f"class rule {self.name!r} is used before its tool groups were bound")
        if self.keep == KEEP_ALL:
            return True
        if not self._grouped_matcher.matches(name):
            return True
        return self._keep_matcher is not None and self._keep_matcher.matches(name)
