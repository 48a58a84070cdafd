"""Policy models of tool groups, plain and conditional.

A group is a list of tool names and globs, or a mapping with `tools` and `needed_when`. A group with
`needed_when` is conditional: its tools are forwarded only on requests where one of its triggers
matches (or where the class names the group, or the tool is protected), because tools such as
`NotebookEdit` or `ExitPlanMode` are useful only in situations that the conversation itself shows.
Regexes and globs compile here, at load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from engine.stages.tools.matchers import NameMatcher, as_pattern_list, compile_regex


class TriggerConditions(BaseModel):
    """One trigger of a conditional group: every condition that is set must hold, and at least one is set.

    Text conditions search the whole conversation, not only the last message, so a trigger that held
    once keeps holding on every later request of the same conversation.
    """

    model_config = ConfigDict(extra="forbid")

    user_text: str | None = Field(
        None,
        description="Regex searched in the text of every user message, with system-reminder blocks removed "
        "and tool results excluded: what the user wrote. Write `(?i)` for case-insensitive matching.",
    )
    conversation_text: str | None = Field(
        None,
        description="Regex searched in every text of every message: user and assistant text (system "
        "reminders included, thinking excluded), tool-call inputs as compact JSON, and tool results.",
    )
    system_text: str | None = Field(
        None,
        description="Regex searched in the system prompt and in every `<system-reminder>` block of the "
        "messages, where clients such as Claude Code state modes like plan mode.",
    )
    called_tool: list[str] | str | None = Field(
        None, description="Names or globs. The conversation contains a call to a matching tool."
    )
    tool_input: dict[str, str] | None = Field(
        None,
        description="Tool name or glob -> regex searched in the input of each call to a matching tool, "
        'serialised as compact JSON (`{"command":"npm run dev","run_in_background":true}`).',
    )
    client: str | None = Field(
        None,
        description="Regex searched in the `user-agent`, `x-app` and `originator` request headers, where "
        "one match is enough. Use it to limit a trigger to one agent.",
    )

    _compiled: "CompiledTrigger" = PrivateAttr(None)

    @field_validator("user_text", "conversation_text", "system_text", "client")
    @classmethod
    def _check_regex(cls, value: str | None) -> str | None:
        if value is not None:
            compile_regex(value)
        return value

    @field_validator("called_tool")
    @classmethod
    def _accept_single_pattern(cls, value: Any) -> Any:
        return as_pattern_list(value)

    @field_validator("tool_input")
    @classmethod
    def _check_tool_input(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("tool_input needs at least one `tool name or glob: regex` entry")
        for pattern, regex in value.items():
            try:
                compile_regex(regex)
            except ValueError as error:
                raise ValueError(f"tool_input[{pattern!r}]: {error}") from None
        return value

    @model_validator(mode="after")
    def _compile(self) -> "TriggerConditions":
        if all(value is None for value in self.__dict__.values()):
            raise ValueError(
                "a trigger needs at least one condition (user_text, conversation_text, system_text, "
                "called_tool, tool_input), because an empty trigger would always hold"
            )
        tool_input = None
        if self.tool_input is not None:
            tool_input = tuple((NameMatcher([pattern]), compile_regex(regex)) for pattern, regex in self.tool_input.items())
        self._compiled = CompiledTrigger(
            user_text=_compile_optional(self.user_text),
            conversation_text=_compile_optional(self.conversation_text),
            system_text=_compile_optional(self.system_text),
            called_tool=NameMatcher(self.called_tool) if self.called_tool is not None else None,
            tool_input=tool_input,
            client=_compile_optional(self.client),
        )
        return self

    @property
    def compiled(self) -> "CompiledTrigger":
        return self._compiled


def _compile_optional(pattern: str | None) -> re.Pattern[str] | None:
    return compile_regex(pattern) if pattern is not None else None


@dataclass(frozen=True, slots=True)
class CompiledTrigger:
    """TriggerConditions with regexes and globs compiled; None means the condition is not set."""

    user_text: re.Pattern[str] | None
    conversation_text: re.Pattern[str] | None
    system_text: re.Pattern[str] | None
    called_tool: NameMatcher | None
    tool_input: tuple[tuple[NameMatcher, re.Pattern[str]], ...] | None
    client: re.Pattern[str] | None


def _allow_single_trigger(schema: dict[str, Any]) -> None:
    # `_accept_single_trigger` also takes one mapping, which the generated schema cannot see.
    list_form = schema["anyOf"][0]
    schema["anyOf"].insert(1, dict(list_form["items"]))


class ToolGroup(BaseModel):
    """A named set of tool names and globs; with `needed_when`, a conditional group.

    A policy may write a plain group as a list (`read: [Read, Glob]`), which validates as `tools`.
    """

    model_config = ConfigDict(extra="forbid")

    tools: list[str] = Field(description="Exact tool names and shell-style globs (`mcp__github__*`).")
    description: str | None = None
    needed_when: list[TriggerConditions] | None = Field(
        None,
        description="Makes the group conditional: its tools are forwarded only on a request where one of "
        "these triggers matches, where the class names the group in `keep` (or `session_keep` on a "
        "session's first request), or where the tool is already called, forced by `tool_choice`, or "
        "forwarded earlier in the session. This applies to every request, with or without a session. A "
        "single mapping is accepted as a list of one. `null` makes the group plain again (for team files).",
        json_schema_extra=_allow_single_trigger,
    )

    @model_validator(mode="before")
    @classmethod
    def _accept_list(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"tools": value}
        return value

    @field_validator("needed_when", mode="before")
    @classmethod
    def _accept_single_trigger(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return [value]
        if isinstance(value, list) and not value:
            raise ValueError("needed_when lists no trigger, so the group would never be forwarded. "
                             "Add a trigger, or write `needed_when: null` to forward the group as usual")
        return value

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        # The list form is accepted by `_accept_list`, which the generated schema cannot see.
        mapping = handler(core_schema)
        if "$ref" in mapping:
            mapping = handler.resolve_ref_schema(mapping)
        return {
            "anyOf": [
                {"type": "array", "items": {"type": "string"}, "description": "A plain group: tool names and globs."},
                mapping,
            ]
        }

    @property
    def conditional(self) -> bool:
        return self.needed_when is not None


@dataclass(frozen=True, slots=True)
class ConditionalGroup:
    name: str
    matcher: NameMatcher
    triggers: tuple[CompiledTrigger, ...]


def group_patterns(group: ToolGroup | list[str]) -> list[str]:
    """Return the tool names and globs of a group in either form (code may build plain lists)."""
    return group.tools if isinstance(group, ToolGroup) else list(group)


# Conditional groups compiled per `tool_groups` mapping, by id, with the mapping itself so the id
# stays unique while the entry lives.
_compiled_groups: dict[int, tuple[Mapping, tuple[ConditionalGroup, ...]]] = {}


def conditional_groups(tool_groups: Mapping[str, ToolGroup | list[str]]) -> tuple[ConditionalGroup, ...]:
    """Return the policy's conditional groups in policy order, compiled once per policy."""
    cached = _compiled_groups.get(id(tool_groups))
    if cached is not None and cached[0] is tool_groups:
        return cached[1]
    groups = tuple(
        ConditionalGroup(name, NameMatcher(group.tools), tuple(trigger.compiled for trigger in group.needed_when))
        for name, group in tool_groups.items()
        if isinstance(group, ToolGroup) and group.needed_when is not None
    )
    if len(_compiled_groups) > 256:
        _compiled_groups.clear()
    _compiled_groups[id(tool_groups)] = (tool_groups, groups)
    return groups
