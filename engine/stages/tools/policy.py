"""Policy models of tool selection: tool groups and the ordered request-class rules.

A policy names tool groups (`tool_groups`: group -> exact tool names and globs, see `groups.py`) and
an ordered list of class rules (`classes`). The first rule whose conditions all hold gives the request its class, and the
class names the groups whose tools are forwarded. Regexes and globs compile here, at load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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

from engine.stages.tools.groups import ToolGroup, group_patterns
from engine.stages.tools.matchers import NameMatcher, as_pattern_list, compile_regex

KEEP_ALL = "all"


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
        return as_pattern_list(value)

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
        description="Tool groups whose tools are forwarded, or `all`. Tools in no group are always kept. "
        "Naming a conditional group (one with `needed_when`) forwards it as if its trigger held; `all` "
        "does not, so conditional groups still wait for their triggers.",
    )

    session_keep: list[str] | Literal["all"] | None = Field(
        None,
        description="Tool groups kept instead of `keep` on the first request of an agent session that sends "
        "a session header (Claude Code, Codex). The tool list starts the cached prompt prefix, so a session "
        "that later needs a removed tool re-writes its whole prefix; a broader first set avoids that.",
    )

    # Set at load when the rule is validated inside a whole policy (see `_check_groups`), otherwise on
    # first use by `bind_groups`.
    _keep_matcher: NameMatcher | None = PrivateAttr(None)
    _session_keep_matcher: NameMatcher | None = PrivateAttr(None)
    _grouped_matcher: NameMatcher | None = PrivateAttr(None)

    @field_validator("keep", "session_keep")
    @classmethod
    def _check_keep_list(cls, value: list[str] | str | None, info: ValidationInfo) -> list[str] | str | None:
        if isinstance(value, list) and KEEP_ALL in value:
            raise ValueError(f"write `{info.field_name}: all` on its own, not inside a list of groups")
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

    def bind_groups(self, tool_groups: dict[str, ToolGroup | list[str]]) -> None:
        """Compile the matchers of the kept groups and of all groups; raise ValueError on an unknown group."""
        self._keep_matcher = _groups_matcher("keep", self.keep, tool_groups)
        self._session_keep_matcher = _groups_matcher("session_keep", self.session_keep, tool_groups)
        self._grouped_matcher = NameMatcher([pattern for group in tool_groups.values() for pattern in group_patterns(group)])

    @property
    def is_bound(self) -> bool:
        return self._grouped_matcher is not None

    def keeps(self, name: str, session_start: bool = False) -> bool:
        """Return True if this class forwards the tool `name`: `keep: all`, a kept group, or a name in no group.

        With `session_start`, `session_keep` replaces `keep` when the rule sets it.
        """
        if self._grouped_matcher is None:
            raise RuntimeError(f"class rule {self.name!r} is used before its tool groups were bound")
        keep, matcher = self.keep, self._keep_matcher
        if session_start and self.session_keep is not None:
            keep, matcher = self.session_keep, self._session_keep_matcher
        if keep == KEEP_ALL:
            return True
        if not self._grouped_matcher.matches(name):
            return True
        return matcher is not None and matcher.matches(name)

    def named_groups(self, session_start: bool = False) -> list[str]:
        """Return the groups that the applicable keep list names; empty for `all`."""
        keep = self.session_keep if session_start and self.session_keep is not None else self.keep
        return keep if isinstance(keep, list) else []


def _groups_matcher(key: str, keep: list[str] | str | None,
                    tool_groups: dict[str, ToolGroup | list[str]]) -> NameMatcher | None:
    if not isinstance(keep, list):
        return None
    unknown = [group for group in keep if group not in tool_groups]
    if unknown:
        known = ", ".join(sorted(tool_groups)) or "none defined"
        raise ValueError(f"{key}: unknown tool group(s) {unknown}; known groups: {known}")
    return NameMatcher([pattern for group in keep for pattern in group_patterns(tool_groups[group])])
