"""Translate Responses tool definitions and tool_choice into their Anthropic forms."""

from __future__ import annotations

from typing import Any

from engine.protocol.errors import ProtocolError
from engine.protocol.responses._common import CUSTOM_TOOL_INPUT_KEY, required_string


def translate_tools(tools: Any) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Translate Responses tools into (Anthropic tools, custom tool names, dropped tool types)."""
    if tools is None:
        return [], [], []
    if not isinstance(tools, list):
        raise ProtocolError("must be a list of tool definitions", param="tools")

    translated: list[dict[str, Any]] = []
    custom_names: list[str] = []
    dropped: list[str] = []
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        path = f"tools.{index}"
        if not isinstance(tool, dict):
            raise ProtocolError("must be an object", param=path)
        kind = tool.get("type")
        if kind == "function":
            anthropic_tool = _function_tool(tool, path)
        elif kind == "custom":
            anthropic_tool = _custom_tool(tool, path)
            custom_names.append(anthropic_tool["name"])
        elif isinstance(kind, str) and kind:
            # Hosted tools (web_search, local_shell, file_search, ...) run on OpenAI's servers or
            # need a client protocol Anthropic models do not speak; they are dropped.
            dropped.append(kind)
            continue
        else:
            raise ProtocolError("missing tool `type`", param=f"{path}.type")
        if anthropic_tool["name"] in seen:
            raise ProtocolError(f"duplicate tool name {anthropic_tool['name']!r}", param=f"{path}.name")
        seen.add(anthropic_tool["name"])
        translated.append(anthropic_tool)
    return translated, custom_names, dropped


def _function_tool(tool: dict[str, Any], path: str) -> dict[str, Any]:
    name = required_string(tool, "name", path)
    parameters = tool.get("parameters")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise ProtocolError("must be a JSON Schema object", param=f"{path}.parameters")
    result: dict[str, Any] = {"name": name}
    description = tool.get("description")
    if description is not None:
        if not isinstance(description, str):
            raise ProtocolError("must be a string", param=f"{path}.description")
        if description:
            result["description"] = description
    result["input_schema"] = parameters
    return result


def _custom_tool(tool: dict[str, Any], path: str) -> dict[str, Any]:
    name = required_string(tool, "name", path)
    description = tool.get("description") or ""
    if not isinstance(description, str):
        raise ProtocolError("must be a string", param=f"{path}.description")
    tool_format = tool.get("format")
    if tool_format is not None and not isinstance(tool_format, dict):
        raise ProtocolError("must be an object", param=f"{path}.format")

    parts = [description] if description else []
    if tool_format and tool_format.get("type") == "grammar":
        definition = tool_format.get("definition")
        if not isinstance(definition, str) or not definition:
            raise ProtocolError("missing grammar definition", param=f"{path}.format.definition")
        syntax = tool_format.get("syntax") or "lark"
        parts.append(
            f"Put the whole tool input, as raw text, in the `{CUSTOM_TOOL_INPUT_KEY}` string. "
            f"It must match this {syntax} grammar:\n{definition}"
        )
    else:
        parts.append(f"Put the whole tool input, as raw text, in the `{CUSTOM_TOOL_INPUT_KEY}` string.")
    return {
        "name": name,
        "description": "\n\n".join(parts),
        "input_schema": {
            "type": "object",
            "properties": {CUSTOM_TOOL_INPUT_KEY: {"type": "string"}},
            "required": [CUSTOM_TOOL_INPUT_KEY],
        },
    }


def check_tool_choice_shape(tool_choice: Any) -> None:
    if tool_choice is None or isinstance(tool_choice, (str, dict)):
        return
    raise ProtocolError("must be a string or an object", param="tool_choice")


def translate_tool_choice(
    tool_choice: Any, tools: list[dict[str, Any]], parallel_tool_calls: bool | None
) -> dict[str, Any] | None:
    """Translate tool_choice and parallel_tool_calls, or return None when Anthropic's default applies."""
    names = {tool["name"] for tool in tools}
    if tool_choice is None or tool_choice == "auto":
        choice: dict[str, Any] = {"type": "auto"}
    elif tool_choice == "none":
        return {"type": "none"}
    elif tool_choice == "required":
        choice = {"type": "any"}
    elif isinstance(tool_choice, dict) and tool_choice.get("type") in ("function", "custom"):
        name = tool_choice.get("name")
        if not isinstance(name, str) or name not in names:
            raise ProtocolError(f"names no tool in `tools`: {name!r}", param="tool_choice.name")
        choice = {"type": "tool", "name": name}
    elif isinstance(tool_choice, dict) and tool_choice.get("type") == "allowed_tools":
        # Anthropic cannot restrict a request to a subset of its tools, so only the mode is kept.
        mode = tool_choice.get("mode", "auto")
        if mode not in ("auto", "required"):
            raise ProtocolError(f"invalid mode {mode!r}; use auto or required", param="tool_choice.mode")
        choice = {"type": "any" if mode == "required" else "auto"}
    elif isinstance(tool_choice, dict) and isinstance(tool_choice.get("type"), str):
        # A hosted tool (web_search, file_search, ...) was dropped, so the model chooses freely.
        choice = {"type": "auto"}
    else:
        raise ProtocolError(
            f"invalid tool_choice {tool_choice!r}; use auto, none, required or {{\"type\": \"function\", \"name\": ...}}",
            param="tool_choice",
        )

    if tool_choice is None and parallel_tool_calls is not False:
        return None
    if parallel_tool_calls is False:
        choice["disable_parallel_tool_use"] = True
    return choice
