"""Upstream side: canonical request -> Chat Completions request, and the response back."""

from __future__ import annotations

import logging
from typing import Any

from engine.protocol.openai_chat._common import (
    format_arguments,
    message_id,
    new_tool_use_id,
    openai_usage_to_anthropic,
    parse_arguments,
    reasoning_text,
    stop_reason_from_finish,
)

logger = logging.getLogger(__name__)

# Chat Completions accepts at most four stop strings.
MAX_STOP_SEQUENCES = 4

# Sent as `reasoning_content` when a provider requires it on an assistant message that has none.
# Moonshot's Kimi K2.6 rejects an empty string as missing, so the placeholder is not empty.
REASONING_PLACEHOLDER = "(no reasoning recorded)"


def _text_of_blocks(content: Any, separator: str = "\n") -> str:
    """Join the text of a string or a list of text blocks; other block types are skipped."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [
        block["text"]
        for block in content
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
    ]
    return separator.join(text for text in texts if text)


def _image_part(block: dict[str, Any]) -> dict[str, Any] | None:
    source = block.get("source")
    if not isinstance(source, dict):
        return None
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif source.get("type") == "url":
        url = source.get("url", "")
    else:
        return None
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(block: dict[str, Any]) -> dict[str, Any] | None:
    source = block.get("source")
    if not isinstance(source, dict):
        return None
    if source.get("type") == "text":
        return {"type": "text", "text": source.get("data", "")}
    if source.get("type") == "base64":
        file = {"file_data": f"data:{source.get('media_type', 'application/pdf')};base64,{source.get('data', '')}"}
        if isinstance(block.get("title"), str):
            file["filename"] = block["title"]
        return {"type": "file", "file": file}
    logger.debug("dropped a document block with source type %r: Chat Completions has no equivalent", source.get("type"))
    return None


def _user_parts(blocks: list[Any]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        part = None
        if kind == "text":
            if block.get("text"):
                part = {"type": "text", "text": block["text"]}
        elif kind == "image":
            part = _image_part(block)
        elif kind == "document":
            part = _document_part(block)
        else:
            logger.debug("dropped a %r block from a user turn: Chat Completions has no equivalent", kind)
        if part is not None:
            parts.append(part)
    return parts


def _user_message(parts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Build one user message; text-only content becomes a plain string, which every backend accepts."""
    if not parts:
        return None
    if all(part["type"] == "text" for part in parts):
        return {"role": "user", "content": "\n\n".join(part["text"] for part in parts)}
    return {"role": "user", "content": parts}


def _tool_result_messages(block: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Translate a tool_result block into a `tool` message plus media parts for a later user message.

    Chat Completions tool messages carry text only, so images and documents in a result move to the
    user message that follows the tool messages. Chat has no error flag, so `is_error` becomes an
    `Error:` prefix.
    """
    content = block.get("content")
    media: list[dict[str, Any]] = []
    if isinstance(content, list):
        texts = []
        for item in content:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "text" and item.get("text"):
                texts.append(item["text"])
            elif item.get("type") in ("image", "document"):
                part = _image_part(item) if item.get("type") == "image" else _document_part(item)
                if part is not None:
                    media.append(part)
        text = "\n".join(texts)
    elif isinstance(content, str):
        text = content
    else:
        text = ""

    if block.get("is_error"):
        text = f"Error: {text}" if text else "Error"
    message = {"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": text}
    return message, media


def _translate_user_turn(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}] if content else []
    if not isinstance(content, list):
        return []

    messages: list[dict[str, Any]] = []
    moved_media: list[dict[str, Any]] = []
    others: list[Any] = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            tool_message, media = _tool_result_messages(block)
            messages.append(tool_message)
            moved_media.extend(media)
        else:
            others.append(block)

    # Tool messages must directly follow the assistant's tool calls, so the rest of the turn
    # (media moved out of results first, then the user's own blocks) comes after all of them.
    user = _user_message(moved_media + _user_parts(others))
    if user is not None:
        messages.append(user)
    return messages


def _translate_assistant_turn(content: Any, reasoning_content: bool) -> dict[str, Any] | None:
    if isinstance(content, str):
        return {"role": "assistant", "content": content} if content else None
    if not isinstance(content, list):
        return None

    texts: list[str] = []
    thinking: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            texts.append(block["text"])
        elif kind == "tool_use":
            arguments = format_arguments(block.get("input"))
            function = {"name": block.get("name", ""), "arguments": arguments}
            tool_calls.append({"id": block.get("id", ""), "type": "function", "function": function})
        elif kind == "thinking" and block.get("thinking"):
            thinking.append(block["thinking"])
        elif kind not in ("thinking", "redacted_thinking"):
            logger.debug("dropped a %r block from an assistant turn: Chat Completions has no equivalent", kind)

    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning_content and (thinking or tool_calls):
        message["reasoning_content"] = "\n".join(thinking) or REASONING_PLACEHOLDER
    if message["content"] is None and not tool_calls:
        return None
    return message


def function_tools(tools: Any, *, strict: bool = True) -> list[dict[str, Any]]:
    """Translate Anthropic tool definitions into OpenAI-style function tools (also Ollama's format).

    Server tools with a versioned `type` and no `input_schema` have no function form and are dropped
    (logged at debug level). `strict` copies each tool's `strict` flag.
    """
    translated = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        if "input_schema" not in tool and tool.get("type") not in (None, "custom"):
            logger.debug("dropped server tool %r (type %r): it has no function form", tool.get("name"), tool.get("type"))
            continue
        function: dict[str, Any] = {"name": tool.get("name", "")}
        if tool.get("description"):
            function["description"] = tool["description"]
        function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
        if strict and isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        translated.append({"type": "function", "function": function})
    return translated


def _translate_tool_choice(choice: Any, tool_names: set[str]) -> str | dict[str, Any] | None:
    if not isinstance(choice, dict):
        return None
    kind = choice.get("type")
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool":
        name = choice.get("name")
        if name in tool_names:
            return {"type": "function", "function": {"name": name}}
        logger.debug("dropped tool_choice for %r: that tool is not sent upstream", name)
    return None


def canonical_to_chat_request(
    body: dict[str, Any],
    model: str,
    *,
    max_output_tokens: int | None,
    reasoning_content: bool = False,
    use_max_completion_tokens: bool = False,
) -> dict[str, Any]:
    """Translate a canonical (Anthropic Messages) request into a Chat Completions request.

    The output is deterministic: the same body gives the same keys in the same order, so that a
    provider's automatic prefix caching keeps hitting. `max_tokens` is clamped to
    `max_output_tokens` when that is set. DeepSeek and Moonshot require `reasoning_content` on
    assistant messages, so with `reasoning_content=True` the thinking text is echoed there, and
    tool-call messages without thinking get a placeholder. Otherwise thinking blocks are dropped.
    `cache_control` markers, server tools and unknown top-level fields are always dropped.
    """
    messages: list[dict[str, Any]] = []
    system = _text_of_blocks(body.get("system"), separator="\n\n")
    if system:
        messages.append({"role": "system", "content": system})

    for turn in body.get("messages") or []:
        if not isinstance(turn, dict):
            continue
        if turn.get("role") == "assistant":
            assistant = _translate_assistant_turn(turn.get("content"), reasoning_content)
            if assistant is not None:
                messages.append(assistant)
        else:
            messages.extend(_translate_user_turn(turn.get("content")))

    request: dict[str, Any] = {"model": model, "messages": messages}

    tools = function_tools(body.get("tools"))
    if tools:
        request["tools"] = tools
        choice = body.get("tool_choice")
        tool_choice = _translate_tool_choice(choice, {tool["function"]["name"] for tool in tools})
        if tool_choice is not None:
            request["tool_choice"] = tool_choice
        if isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True:
            request["parallel_tool_calls"] = False

    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int):
        if max_output_tokens is not None and max_tokens > max_output_tokens:
            max_tokens = max_output_tokens
        request["max_completion_tokens" if use_max_completion_tokens else "max_tokens"] = max_tokens

    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            request[key] = body[key]

    stop = body.get("stop_sequences")
    if isinstance(stop, list) and stop:
        if len(stop) > MAX_STOP_SEQUENCES:
            # NOTE: the extra stop strings are lost; Chat Completions rejects more than four.
            logger.debug("sending the first %d of %d stop sequences upstream", MAX_STOP_SEQUENCES, len(stop))
        request["stop"] = stop[:MAX_STOP_SEQUENCES]

    if body.get("stream"):
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    return request


def chat_response_to_message(resp: dict[str, Any], model: str) -> dict[str, Any]:
    """Translate a non-streaming Chat Completions response into an Anthropic Message dict.

    Only the first choice is read. A response without choices gives an empty `end_turn` message.
    A finish_reason of `stop` that comes with tool calls becomes `tool_use`.
    """
    choices = resp.get("choices") if isinstance(resp, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}

    content: list[dict[str, Any]] = []
    reasoning = reasoning_text(message)
    if reasoning:
        # NOTE: Chat providers send no signature, so this block cannot be replayed to Anthropic.
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})

    text = message.get("content")
    refusal = message.get("refusal")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    elif isinstance(refusal, str) and refusal:
        content.append({"type": "text", "text": refusal})

    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        calls = []
    legacy_call = message.get("function_call")
    if isinstance(legacy_call, dict):
        calls = [*calls, {"function": legacy_call}]
    for call in calls:
        if not isinstance(call, dict):
            continue
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or new_tool_use_id(),
                "name": function.get("name") or "",
                "input": parse_arguments(function.get("arguments")),
            }
        )

    has_tool_calls = any(block["type"] == "tool_use" for block in content)
    stop_reason = stop_reason_from_finish(choice.get("finish_reason"), has_tool_calls)
    if refusal and not text and not has_tool_calls:
        stop_reason = "refusal"
    return {
        "id": message_id(resp.get("id") if isinstance(resp, dict) else None),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": openai_usage_to_anthropic(resp.get("usage") if isinstance(resp, dict) else None),
    }
