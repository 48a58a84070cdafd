"""Checks of incoming request bodies, and conversion of OpenAI and Ollama bodies to the canonical shape.

The canonical shape is the Anthropic Messages body (system, tools, messages of content blocks).
The stub counts tokens and reads markers on it, so one conversation counts about the same
whichever protocol carries it. The checks cover mistakes that a gateway could make and that the
real services reject with a 400. They are not a full schema validation.
"""

from __future__ import annotations

from typing import Any

import orjson


class InvalidRequest(ValueError):
    """Raised for a request body that the real service would reject with a 400."""


def parse_json_object(raw: bytes) -> dict:
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(f"The request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"The request body must be a JSON object, got {type(body).__name__}.")
    return body


def _require_model(body: dict) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: a non-empty string is required.")
    return model


def _require_list(body: dict, key: str, *, non_empty: bool = True) -> list:
    value = body.get(key)
    if not isinstance(value, list) or (non_empty and not value):
        raise InvalidRequest(f"{key}: a non-empty list is required.")
    return value


def _optional_list(body: dict, key: str) -> list:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest(f"{key}: expected a list, got {type(value).__name__}.")
    return value


# ---------------------------------------------------------------------------------------------------
# Anthropic Messages


def check_anthropic(body: dict, *, count_tokens: bool = False) -> None:
    """Check a Messages (or count_tokens) body; raise InvalidRequest with the first problem found."""
    _require_model(body)
    if not count_tokens:
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise InvalidRequest("max_tokens: a positive integer is required.")
    messages = _require_list(body, "messages")
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise InvalidRequest("system: expected a string or a list of text blocks.")
    for index, tool in enumerate(_optional_list(body, "tools")):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise InvalidRequest(f"tools.{index}: each tool needs a string `name`.")

    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise InvalidRequest(f"{where}: expected an object with role and content.")
        if message.get("role") not in ("user", "assistant"):
            raise InvalidRequest(f'{where}.role: expected "user" or "assistant", got {message.get("role")!r}.')
        content = message.get("content")
        is_final_assistant = index == len(messages) - 1 and message["role"] == "assistant"
        if isinstance(content, str):
            if not content and not is_final_assistant:
                raise InvalidRequest(f"{where}: all messages must have non-empty content except for the optional final assistant message.")
            continue
        if not isinstance(content, list):
            raise InvalidRequest(f"{where}.content: expected a string or a list of content blocks.")
        if not content and not is_final_assistant:
            raise InvalidRequest(f"{where}: all messages must have non-empty content except for the optional final assistant message.")
        for block_index, block in enumerate(content):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                raise InvalidRequest(f"{where}.content.{block_index}: each content block needs a string `type`.")
            if block["type"] == "text" and not block.get("text"):
                raise InvalidRequest(f"{where}.content.{block_index}: text content blocks must be non-empty.")
    _check_tool_results_follow_tool_uses(messages)


def _check_tool_results_follow_tool_uses(messages: list) -> None:
    """Check that each tool_use has its tool_result at the start of the next message, as the real API requires."""
    for index, message in enumerate(messages[:-1]):
        content = message.get("content")
        if message.get("role") != "assistant" or not isinstance(content, list):
            continue
        use_ids = [block.get("id") for block in content if block.get("type") == "tool_use"]
        if not use_ids:
            continue
        following = messages[index + 1].get("content")
        leading_results: set = set()
        if isinstance(following, list):
            for block in following:
                if block.get("type") != "tool_result":
                    break
                leading_results.add(block.get("tool_use_id"))
        missing = [use_id for use_id in use_ids if use_id not in leading_results]
        if missing:
            raise InvalidRequest(
                f"messages.{index + 1}: tool_use ids were found without tool_result blocks immediately "
                f"after: {', '.join(map(str, missing))}. Each tool_use block must have a tool_result "
                "block at the start of the next message."
            )


# ---------------------------------------------------------------------------------------------------
# Shared helpers for the conversions


def _append(messages: list[dict], role: str, blocks: list) -> None:
    """Append blocks as a message, merging with the previous message of the same role."""
    if not blocks:
        return
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": list(blocks)})


def _parse_arguments(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return orjson.loads(arguments) if arguments else {}
        except orjson.JSONDecodeError:
            return arguments
    return arguments if arguments is not None else {}


def _function_tool(tool: Any) -> Any:
    """Convert an OpenAI function tool (nested or flat) to an Anthropic tool; others stay as they are."""
    if not isinstance(tool, dict):
        return tool
    function = tool.get("function") if isinstance(tool.get("function"), dict) else tool
    if tool.get("type", "function") != "function" or not isinstance(function.get("name"), str):
        return tool
    converted = {"name": function["name"]}
    if function.get("description") is not None:
        converted["description"] = function["description"]
    converted["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
    return converted


def _openai_parts(content: Any, where: str) -> list:
    """Convert OpenAI message content (a string or a list of parts) to content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content: expected a string, null or a list of content parts.")
    blocks: list = []
    for index, part in enumerate(content):
        if not isinstance(part, dict):
            raise InvalidRequest(f"{where}.content.{index}: each content part must be an object.")
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text"):
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind in ("image_url", "input_image"):
            url = part.get("image_url")
            if isinstance(url, dict):
                url = url.get("url")
            blocks.append({"type": "image", "source": {"type": "url", "url": url}})
        else:
            blocks.append(part)
    return blocks


def _text_of(blocks: list) -> str:
    return "\n".join(block["text"] for block in blocks if block.get("type") == "text")


# ---------------------------------------------------------------------------------------------------
# OpenAI Chat Completions


def chat_to_canonical(body: dict) -> dict:
    """Check an OpenAI Chat body and return it in the canonical shape."""
    model = _require_model(body)
    source = _require_list(body, "messages")
    system: list = []
    messages: list[dict] = []
    open_call_ids: set = set()
    for index, message in enumerate(source):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"{where}: expected an object with a role.")
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_openai_parts(message.get("content"), where))
        elif role == "user":
            _append(messages, "user", _openai_parts(message.get("content"), where))
        elif role == "assistant":
            blocks = _openai_parts(message.get("content"), where)
            for call_index, call in enumerate(message.get("tool_calls") or ()):
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                    raise InvalidRequest(f"{where}.tool_calls[{call_index}]: function.name is required.")
                open_call_ids.add(call.get("id"))
                blocks.append(
                    {"type": "tool_use", "id": call.get("id"), "name": function["name"], "input": _parse_arguments(function.get("arguments"))}
                )
            _append(messages, "assistant", blocks)
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in open_call_ids:
                raise InvalidRequest(f"Invalid parameter: messages with role 'tool' must be a response to a preceding message with 'tool_calls' ({where}).")
            content = message.get("content")
            if isinstance(content, list):
                content = _text_of(_openai_parts(content, where))
            _append(messages, "user", [{"type": "tool_result", "tool_use_id": call_id, "content": content or ""}])
        else:
            raise InvalidRequest(f"{where}.role: expected system, developer, user, assistant or tool, got {role!r}.")

    tools = [_function_tool(tool) for tool in _optional_list(body, "tools")]
    tools += [_function_tool({"type": "function", "function": function}) for function in _optional_list(body, "functions")]
    canonical: dict = {"model": model, "messages": messages}
    if system:
        canonical["system"] = system
    if tools:
        canonical["tools"] = tools
    return canonical


# ---------------------------------------------------------------------------------------------------
# OpenAI Responses


def responses_to_canonical(body: dict) -> dict:
    """Check an OpenAI Responses body and return it in the canonical shape."""
    model = _require_model(body)
    items = body.get("input")
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise InvalidRequest("input: a non-empty string or list of input items is required.")
    system: list = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        system.append({"type": "text", "text": instructions})
    messages: list[dict] = []
    for index, item in enumerate(items):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where}: expected an input item object.")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            blocks = _openai_parts(item.get("content"), where)
            if role in ("system", "developer"):
                system.extend(blocks)
            elif role in ("user", "assistant"):
                _append(messages, role, blocks)
            else:
                raise InvalidRequest(f"{where}.role: expected user, assistant, system or developer, got {role!r}.")
        elif kind in ("function_call", "custom_tool_call"):
            arguments = _parse_arguments(item.get("arguments")) if kind == "function_call" else {"input": item.get("input")}
            _append(messages, "assistant", [{"type": "tool_use", "id": item.get("call_id"), "name": item.get("name") or "", "input": arguments}])
        elif kind in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output")
            if isinstance(output, list):
                output = _openai_parts(output, where)
            _append(messages, "user", [{"type": "tool_result", "tool_use_id": item.get("call_id"), "content": output or ""}])
        elif kind == "reasoning":
            summary = " ".join(part.get("text", "") for part in item.get("summary") or () if isinstance(part, dict))
            if summary:
                _append(messages, "assistant", [{"type": "thinking", "thinking": summary}])
        else:
            # Items the stub does not model (web_search_call, local_shell_call, ...) still count as JSON.
            _append(messages, "assistant", [item])

    tools = [_function_tool(tool) for tool in _optional_list(body, "tools")]
    canonical: dict = {"model": model, "messages": messages}
    if system:
        canonical["system"] = system
    if tools:
        canonical["tools"] = tools
    return canonical


# ---------------------------------------------------------------------------------------------------
# Ollama native chat


def ollama_to_canonical(body: dict) -> dict:
    """Check an Ollama /api/chat body and return it in the canonical shape."""
    model = _require_model(body)
    source = _require_list(body, "messages")
    system: list = []
    messages: list[dict] = []
    call_count = 0
    for index, message in enumerate(source):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"{where}: expected an object with role and content.")
        role = message.get("role")
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise InvalidRequest(f"{where}.content: expected a string.")
        blocks: list = [{"type": "text", "text": content}] if content else []
        for image in message.get("images") or ():
            blocks.append({"type": "image", "source": {"type": "base64", "data": image}})
        if role == "system":
            system.extend(blocks)
        elif role == "user":
            _append(messages, "user", blocks)
        elif role == "assistant":
            for call in message.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                    raise InvalidRequest(f"{where}.tool_calls: function.name is required.")
                call_count += 1
                blocks.append({"type": "tool_use", "id": f"ollama_call_{call_count}", "name": function["name"], "input": _parse_arguments(function.get("arguments"))})
            _append(messages, "assistant", blocks)
        elif role == "tool":
            _append(messages, "user", [{"type": "tool_result", "tool_use_id": message.get("tool_name"), "content": content}])
        else:
            raise InvalidRequest(f"{where}.role: expected system, user, assistant or tool, got {role!r}.")

    tools = [_function_tool(tool) for tool in _optional_list(body, "tools")]
    canonical: dict = {"model": model, "messages": messages}
    if system:
        canonical["system"] = system
    if tools:
        canonical["tools"] = tools
    return canonical
