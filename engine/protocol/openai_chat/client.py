"""Client side: Chat Completions request -> canonical request, and the canonical Message back."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from engine.protocol.errors import ProtocolError
from engine.protocol.openai_chat._common import anthropic_usage_to_openai, finish_reason_from_stop, format_arguments

logger = logging.getLogger(__name__)


# Anthropic requires `max_tokens`; Chat Completions clients often leave it out.
DEFAULT_MAX_TOKENS = 4096

_IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")

# Top-level Chat fields that have a canonical equivalent or go to the side dict; others are dropped.
_HANDLED_FIELDS = frozenset(
    {
        "model", "messages", "tools", "tool_choice", "parallel_tool_calls", "max_tokens",
        "max_completion_tokens", "stop", "temperature", "top_p", "user", "metadata", "stream",
        "stream_options", "n", "response_format", "seed", "reasoning_effort",
    }
)  # fmt: skip


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _preview(value: Any) -> str:
    """Show a rejected value in an error message, cut short so a huge value cannot flood the message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _expect(value: Any, kind: type, param: str, description: str) -> Any:
    if not isinstance(value, kind):
        raise ProtocolError(f"must be {description}, got {_type_name(value)}", param=param)
    return value


def _optional_int(body: dict[str, Any], key: str, minimum: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ProtocolError(f"must be an integer >= {minimum}, got {_preview(value)}", param=key)
    return value


def _optional_number(body: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise ProtocolError(f"must be a number between {low} and {high}, got {_preview(value)}", param=key)
    return value


def _image_block(url: Any, param: str) -> dict[str, Any]:
    """Translate an `image_url` URL: a base64 data URL becomes a base64 source, http(s) a url source."""
    if not isinstance(url, str) or not url:
        raise ProtocolError("must be a non-empty string", param=param)
    if url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not comma or encoding != "base64" or not data:
            raise ProtocolError("invalid data URL: expected data:<media type>;base64,<data>", param=param)
        if media_type not in _IMAGE_MEDIA_TYPES:
            raise ProtocolError(
                f"unsupported image media type {_preview(media_type)}; use one of {', '.join(_IMAGE_MEDIA_TYPES)}", param=param
            )
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise ProtocolError("invalid image URL: expected a data: URL or an http(s) URL", param=param)


def _file_block(file: Any, param: str) -> dict[str, Any]:
    _expect(file, dict, param, "an object")
    data_url = file.get("file_data")
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        raise ProtocolError("only inline files are supported: send file_data as a data: URL", param=f"{param}.file_data")
    header, comma, data = data_url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not comma or encoding != "base64" or media_type != "application/pdf":
        raise ProtocolError("invalid file data: expected data:application/pdf;base64,<data>", param=f"{param}.file_data")
    block: dict[str, Any] = {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if isinstance(file.get("filename"), str) and file["filename"]:
        block["title"] = file["filename"]
    return block


def _content_blocks(content: Any, param: str, allowed: tuple[str, ...]) -> list[dict[str, Any]]:
    """Translate a Chat `content` (string or list of parts) into content blocks, skipping empty text."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    _expect(content, list, param, "a string or a list of content parts")

    blocks: list[dict[str, Any]] = []
    for position, part in enumerate(content):
        part_param = f"{param}.{position}"
        _expect(part, dict, part_param, "an object")
        kind = part.get("type")
        if kind not in allowed:
            raise ProtocolError(f"unsupported content part type {_preview(kind)}; expected one of {', '.join(allowed)}", param=f"{part_param}.type")
        if kind in ("text", "refusal"):
            text = _expect(part.get(kind), str, f"{part_param}.{kind}", "a string")
            if text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            blocks.append(_image_block(url, f"{part_param}.image_url.url"))
        elif kind == "file":
            blocks.append(_file_block(part.get("file"), f"{part_param}.file"))
    return blocks


def _tool_use_blocks(calls: Any, param: str) -> list[dict[str, Any]]:
    _expect(calls, list, param, "a list")
    blocks = []
    for position, call in enumerate(calls):
        call_param = f"{param}.{position}"
        _expect(call, dict, call_param, "an object")
        if call.get("type", "function") != "function":
            raise ProtocolError(f"unsupported tool call type {_preview(call.get('type'))}; only function is supported", param=f"{call_param}.type")
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise ProtocolError("must be a non-empty string", param=f"{call_param}.id")
        function = _expect(call.get("function"), dict, f"{call_param}.function", "an object")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise ProtocolError("must be a non-empty string", param=f"{call_param}.function.name")
        arguments = function.get("arguments", "")
        arguments_param = f"{call_param}.function.arguments"
        _expect(arguments, str, arguments_param, "a JSON string")
        tool_input: Any = {}
        if arguments.strip():
            try:
                tool_input = orjson.loads(arguments)
            except orjson.JSONDecodeError as exc:
                raise ProtocolError(f"is not valid JSON: {exc}", param=arguments_param) from None
        if not isinstance(tool_input, dict):
            raise ProtocolError(f"must encode a JSON object, got {_type_name(tool_input)}", param=arguments_param)
        blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": tool_input})
    return blocks


def _tool_result_block(message: dict[str, Any], param: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise ProtocolError("must be a non-empty string", param=f"{param}.tool_call_id")
    blocks = _content_blocks(message.get("content"), f"{param}.content", ("text",))
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    # A tool message carries text only, so it becomes a plain string, the most compact form.
    text = "\n".join(item["text"] for item in blocks)
    if text:
        block["content"] = text
    return block


def _append_turn(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Append a turn, merging it into the previous one when the roles match (Anthropic alternates)."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


class _ToolCallTracker:
    """Checks that the tool messages after an assistant message reply to each of its tool calls."""

    def __init__(self) -> None:
        self.pending: dict[str, None] = {}  # unanswered call ids, in call order
        self.answered: set[str] = set()
        self.assistant_param = ""

    def on_assistant(self, blocks: list[dict[str, Any]], param: str) -> None:
        self.check_answered()
        self.pending = {block["id"]: None for block in blocks if block["type"] == "tool_use"}
        self.answered = set()
        self.assistant_param = param

    def on_tool(self, call_id: str, param: str) -> None:
        if call_id in self.answered:
            raise ProtocolError(f"tool call {_preview(call_id)} has more than one tool message", param=param)
        if call_id not in self.pending:
            raise ProtocolError(
                f"{_preview(call_id)} does not match a tool call of the preceding assistant message", param=param
            )
        del self.pending[call_id]
        self.answered.add(call_id)

    def check_answered(self) -> None:
        if self.pending:
            raise ProtocolError(
                f"tool calls {', '.join(self.pending)} have no tool message; send one per tool_call_id after this message",
                param=f"{self.assistant_param}.tool_calls",
            )


def _translate_chat_messages(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Translate Chat messages into (system blocks, canonical turns)."""
    if not isinstance(messages, list) or not messages:
        raise ProtocolError("must be a non-empty list of messages", param="messages")

    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    calls = _ToolCallTracker()
    for position, message in enumerate(messages):
        param = f"messages.{position}"
        _expect(message, dict, param, "an object")
        role = message.get("role")

        if role in ("system", "developer"):
            system.extend(_content_blocks(message.get("content"), f"{param}.content", ("text",)))
        elif role == "user":
            blocks = _content_blocks(message.get("content"), f"{param}.content", ("text", "image_url", "file"))
            _append_turn(turns, "user", blocks)
        elif role == "tool":
            block = _tool_result_block(message, param)
            calls.on_tool(block["tool_use_id"], f"{param}.tool_call_id")
            _append_turn(turns, "user", [block])
        elif role == "assistant":
            blocks = []
            reasoning = message.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                # NOTE: Chat clients hold no signature, so this block must not be sent to Anthropic.
                blocks.append({"type": "thinking", "thinking": reasoning, "signature": ""})
            blocks += _content_blocks(message.get("content"), f"{param}.content", ("text", "refusal"))
            if message.get("tool_calls") is not None:
                blocks += _tool_use_blocks(message["tool_calls"], f"{param}.tool_calls")
            calls.on_assistant(blocks, param)
            _append_turn(turns, "assistant", blocks)
        elif role == "function":
            raise ProtocolError("legacy function messages are not supported; send tool_calls and tool messages", param=f"{param}.role")
        else:
            raise ProtocolError(
                f"unknown role {_preview(role)}; expected system, developer, user, assistant or tool", param=f"{param}.role"
            )

    # Unanswered calls are fine only on the last message: the client asks the model to continue it.
    if turns and turns[-1]["role"] != "assistant":
        calls.check_answered()
    if not turns:
        raise ProtocolError("must contain at least one user or assistant message with content", param="messages")
    _order_tool_results_first(turns)
    return system, turns


def _order_tool_results_first(turns: list[dict[str, Any]]) -> None:
    """Move tool_result blocks to the start of their user turn, keeping both groups in order.

    Anthropic wants the results of a tool call at the start of the next user turn. A user message
    that a client placed between the tool messages would otherwise split them.
    """
    for turn in turns:
        if turn["role"] == "user":
            results = [block for block in turn["content"] if block["type"] == "tool_result"]
            if results:
                others = [block for block in turn["content"] if block["type"] != "tool_result"]
                turn["content"] = results + others


def _translate_chat_tools(tools: Any) -> list[dict[str, Any]]:
    _expect(tools, list, "tools", "a list")
    translated = []
    for position, tool in enumerate(tools):
        param = f"tools.{position}"
        _expect(tool, dict, param, "an object")
        if tool.get("type", "function") != "function":
            raise ProtocolError(f"unsupported tool type {_preview(tool.get('type'))}; only function tools are supported", param=f"{param}.type")
        # Cursor sometimes sends the flat Responses form: name and parameters beside `type`.
        function = tool.get("function", tool)
        function_param = f"{param}.function" if "function" in tool else param
        _expect(function, dict, function_param, "an object")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise ProtocolError("must be a non-empty string", param=f"{function_param}.name")

        converted: dict[str, Any] = {"name": name}
        description = function.get("description")
        if description is not None:
            converted["description"] = _expect(description, str, f"{function_param}.description", "a string")
        parameters = function.get("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        converted["input_schema"] = _expect(parameters, dict, f"{function_param}.parameters", "a JSON schema object")
        if isinstance(function.get("strict"), bool):
            converted["strict"] = function["strict"]
        translated.append(converted)
    return translated


def _translate_chat_tool_choice(choice: Any, names: set[str]) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice == "none":
        return {"type": "none"}
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or name not in names:
            raise ProtocolError(f"names tool {_preview(name)}, which is not in tools", param="tool_choice.function.name")
        return {"type": "tool", "name": name}
    raise ProtocolError(
        'must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}', param="tool_choice"
    )


def _stop_sequences(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    _expect(stop, list, "stop", "a string or a list of strings")
    for position, item in enumerate(stop):
        _expect(item, str, f"stop.{position}", "a string")
    # Anthropic rejects empty stop sequences; OpenAI ignores them.
    return [item for item in stop if item]


def chat_request_to_canonical(body: object) -> tuple[dict[str, Any], dict[str, Any]]:
    """Translate a Chat Completions request into (canonical request, side fields).

    The side dict contains the fields that only the Chat response needs, which the canonical form
    has no place for: `model`, `created` (Unix seconds), `stream`, and when sent `stream_options`,
    `n`, `response_format`, `seed`, `reasoning_effort` and `metadata`. Raises ProtocolError(400) with the key path for
    malformed input. System and developer messages anywhere in the list are moved into `system`.
    """
    if not isinstance(body, dict):
        raise ProtocolError(f"request body must be a JSON object, got {_type_name(body)}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ProtocolError("is required and must be a non-empty string", param="model")
    for legacy in ("functions", "function_call"):
        if body.get(legacy) is not None:
            # Dropping them would silently leave the model without tools, so they are rejected.
            raise ProtocolError("legacy function calling is not supported; send tools and tool_choice", param=legacy)
    n = _optional_int(body, "n", 1)
    if n is not None and n > 1:
        raise ProtocolError("only n=1 is supported", param="n")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise ProtocolError(f"must be a boolean, got {_type_name(stream)}", param="stream")
    stream_options = body.get("stream_options")
    if stream_options is not None:
        _expect(stream_options, dict, "stream_options", "an object")

    system, turns = _translate_chat_messages(body.get("messages"))
    max_tokens = _optional_int(body, "max_completion_tokens", 1) or _optional_int(body, "max_tokens", 1)

    canonical: dict[str, Any] = {"model": model, "max_tokens": max_tokens or DEFAULT_MAX_TOKENS}
    if system:
        canonical["system"] = system
    canonical["messages"] = turns

    tools = _translate_chat_tools(body["tools"]) if body.get("tools") is not None else []
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise ProtocolError(f"must be a boolean, got {_type_name(parallel)}", param="parallel_tool_calls")
    if tools:
        canonical["tools"] = tools
        tool_choice = _translate_chat_tool_choice(body.get("tool_choice"), {tool["name"] for tool in tools})
        if parallel is False and (tool_choice is None or tool_choice["type"] != "none"):
            tool_choice = {**(tool_choice or {"type": "auto"}), "disable_parallel_tool_use": True}
        if tool_choice is not None:
            canonical["tool_choice"] = tool_choice
    elif body.get("tool_choice") not in (None, "none", "auto"):
        raise ProtocolError("requires tools, but the request has none", param="tool_choice")

    stop = _stop_sequences(body.get("stop"))
    if stop:
        canonical["stop_sequences"] = stop
    temperature = _optional_number(body, "temperature", 0.0, 2.0)
    if temperature is not None:
        # NOTE: Anthropic accepts 0..1 and OpenAI 0..2; values above 1 are clamped, not rescaled.
        canonical["temperature"] = min(temperature, 1.0)
    top_p = _optional_number(body, "top_p", 0.0, 1.0)
    if top_p is not None:
        canonical["top_p"] = top_p
    user = body.get("user")
    if user is not None:
        canonical["metadata"] = {"user_id": _expect(user, str, "user", "a string")}
    if stream:
        canonical["stream"] = True

    ignored = sorted(key for key in body if key not in _HANDLED_FIELDS)
    if ignored:
        logger.debug("dropped Chat request fields without a canonical equivalent: %s", ", ".join(ignored))

    side: dict[str, Any] = {"model": model, "created": int(time.time()), "stream": bool(stream)}
    for key in ("stream_options", "n", "response_format", "seed", "reasoning_effort", "metadata"):
        if body.get(key) is not None:
            side[key] = body[key]
    return canonical, side


# ---------------------------------------------------------------------------------------------
# Client side: canonical Message -> Chat Completions response
# ---------------------------------------------------------------------------------------------


def message_to_chat_response(message: dict[str, Any], model: str, response_id: str, created: int) -> dict[str, Any]:
    """Translate a canonical Message into a Chat Completions response.

    `content` is null when the message has only tool calls, thinking becomes `reasoning_content`,
    and usage counts cached tokens inside `prompt_tokens`, as OpenAI does.
    """
    texts: list[str] = []
    thinking: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in message.get("content") or []:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            texts.append(block["text"])
        elif kind == "thinking" and block.get("thinking"):
            thinking.append(block["thinking"])
        elif kind == "tool_use":
            function = {"name": block.get("name", ""), "arguments": format_arguments(block.get("input"))}
            tool_calls.append({"id": block.get("id", ""), "type": "function", "function": function})

    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if thinking:
        reply["reasoning_content"] = "\n".join(thinking)
    if tool_calls:
        reply["tool_calls"] = tool_calls

    finish_reason = finish_reason_from_stop(message.get("stop_reason"))
    if tool_calls and finish_reason == "stop":
        finish_reason = "tool_calls"
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": reply, "logprobs": None, "finish_reason": finish_reason}],
        "usage": anthropic_usage_to_openai(message.get("usage")),
    }
