"""The upstream side: send a canonical request to a Responses API provider and read its output.

Used by the `openai` provider with `wire_api: responses`.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.protocol.errors import ProtocolError
from engine.protocol.responses._common import (
    CUSTOM_TOOL_INPUT_KEY,
    canonical_usage,
    data_url,
    format_arguments,
    openai_reasoning_signature,
    parse_arguments,
    unpack_openai_reasoning,
)

logger = logging.getLogger(__name__)

# Anthropic extended-thinking budget -> Responses reasoning effort: the smallest effort whose
# budget (as mapped on the request side) covers it.
_EFFORT_BY_BUDGET = ((2048, "low"), (8192, "medium"))


def canonical_to_responses_request(body: dict[str, Any], model: str, *, max_output_tokens: int | None) -> dict[str, Any]:
    """Translate a canonical request into a Responses request body with `store: false`.

    `max_output_tokens` is the model's output limit (None when unknown): the request's
    `max_tokens` is clamped to it.

    The same input gives the same dict in the same key order, so the serialised bytes are stable
    and the provider's prompt cache keeps hitting. Thinking blocks that came from an OpenAI
    reasoning item go back as that item. Anthropic thinking is not sent, because OpenAI accepts only
    its own reasoning items.
    """
    request: dict[str, Any] = {"model": model}
    instructions = _instructions(body.get("system"))
    if instructions:
        request["instructions"] = instructions
    request["input"] = _input_items(body.get("messages") or [])

    tools = [_function_tool(tool) for tool in body.get("tools") or [] if "input_schema" in tool]
    if tools:
        request["tools"] = tools
        choice = body.get("tool_choice") or {}
        request["tool_choice"] = _tool_choice(choice)
        request["parallel_tool_calls"] = not choice.get("disable_parallel_tool_use", False)

    limit = _output_limit(body.get("max_tokens"), max_output_tokens)
    if limit is not None:
        request["max_output_tokens"] = limit
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            request[name] = body[name]
    effort = _reasoning_effort(body.get("thinking"))
    if effort:
        request["reasoning"] = {"effort": effort}
        # With `store: false` the next turn can pass the reasoning back only in encrypted form.
        request["include"] = ["reasoning.encrypted_content"]
    request["store"] = False
    request["stream"] = bool(body.get("stream"))
    return request


def _output_limit(max_tokens: Any, model_limit: int | None) -> int | None:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        return model_limit
    if model_limit is not None and max_tokens > model_limit:
        return model_limit
    return max_tokens


def _instructions(system: Any) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        texts = [block.get("text", "") for block in system if isinstance(block, dict) and block.get("type") == "text"]
        return "\n\n".join(text for text in texts if text)
    return ""


def _input_items(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        parts: list[dict[str, Any]] = []

        def flush() -> None:
            if parts:
                items.append({"type": "message", "role": role, "content": list(parts)})
                parts.clear()

        for block in content or []:
            kind = block.get("type")
            if kind == "text" and block.get("text"):
                parts.append({"type": "output_text" if role == "assistant" else "input_text", "text": block["text"]})
            elif kind in ("image", "document") and role == "user":
                part = _file_part(block)
                if part:
                    parts.append(part)
            elif kind == "tool_use":
                flush()
                items.append(
                    {
                        "type": "function_call",
                        "call_id": block.get("id", ""),
                        "name": block.get("name", ""),
                        "arguments": format_arguments(block.get("input")),
                    }
                )
            elif kind == "thinking" and role == "assistant" and unpack_openai_reasoning(block.get("signature") or ""):
                flush()
                items.append(_reasoning_item(block))
            elif kind == "tool_result":
                flush()
                items.append(
                    {"type": "function_call_output", "call_id": block.get("tool_use_id", ""), "output": _tool_output(block)}
                )
            else:
                # Anthropic thinking and server tool blocks: see canonical_to_responses_request.
                logger.debug("not sending a %s block to a Responses upstream", kind)
        flush()
    return items


def _reasoning_item(block: dict[str, Any]) -> dict[str, Any]:
    reasoning_id, encrypted = unpack_openai_reasoning(block["signature"]) or ("", "")
    thinking = block.get("thinking") or ""
    return {
        "type": "reasoning",
        "id": reasoning_id,
        "summary": [{"type": "summary_text", "text": thinking}] if thinking else [],
        "encrypted_content": encrypted,
    }


def _file_part(block: dict[str, Any]) -> dict[str, Any] | None:
    source = block.get("source") or {}
    url = data_url(source)
    if not url:
        return None
    if block["type"] == "image":
        return {"type": "input_image", "image_url": url, "detail": "auto"}
    if source.get("type") == "url":
        return {"type": "input_file", "file_url": url}
    return {"type": "input_file", "filename": "document.pdf", "file_data": url}


def _tool_output(block: dict[str, Any]) -> str | list[dict[str, Any]]:
    content = block.get("content")
    prefix = "Error: " if block.get("is_error") else ""
    if content is None or isinstance(content, str):
        return prefix + (content or "")

    parts: list[dict[str, Any]] = []
    for item in content:
        if item.get("type") == "text" and item.get("text"):
            parts.append({"type": "input_text", "text": item["text"]})
        elif item.get("type") in ("image", "document"):
            part = _file_part(item)
            if part:
                parts.append(part)
    if all(part["type"] == "input_text" for part in parts):
        return prefix + "\n".join(part["text"] for part in parts)
    if prefix:
        parts.insert(0, {"type": "input_text", "text": prefix.strip()})
    return parts


def _function_tool(tool: dict[str, Any]) -> dict[str, Any]:
    # The Responses API makes function tools strict by default, and strict mode rejects
    # the schemas most agents send (optional properties, no additionalProperties: false).
    return {
        "type": "function",
        "name": tool.get("name", ""),
        "description": tool.get("description", ""),
        "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
        "strict": False,
    }


def _tool_choice(choice: dict[str, Any]) -> Any:
    kind = choice.get("type", "auto")
    if kind == "any":
        return "required"
    if kind == "tool":
        return {"type": "function", "name": choice.get("name", "")}
    if kind == "none":
        return "none"
    return "auto"


def _reasoning_effort(thinking: Any) -> str | None:
    if not isinstance(thinking, dict) or thinking.get("type") == "disabled":
        return None
    if thinking.get("type") == "adaptive":
        return "medium"
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int):
        return None
    for limit, effort in _EFFORT_BY_BUDGET:
        if budget <= limit:
            return effort
    return "high"


# --- provider output ---------------------------------------------------------------------------


def responses_to_message(resp: dict[str, Any]) -> dict[str, Any]:
    """Translate a Responses object from a provider into a canonical Anthropic Message.

    Raises ProtocolError when the provider reports `status: "failed"` (502, or 429 for a rate
    limit) or sends something that is not a Responses object (502).
    """
    if not isinstance(resp, dict) or not isinstance(resp.get("output", []), list):
        raise ProtocolError("the upstream answer is not a Responses object", status=502)
    if resp.get("status") == "failed":
        raise upstream_failure(resp.get("error"))

    content: list[dict[str, Any]] = []
    for item in resp.get("output") or []:
        if isinstance(item, dict):
            content.extend(output_item_blocks(item))

    has_tool_use = any(block["type"] == "tool_use" for block in content)
    return {
        "id": resp.get("id", ""),
        "type": "message",
        "role": "assistant",
        "model": resp.get("model", ""),
        "content": content,
        "stop_reason": stop_reason(resp.get("status"), resp.get("incomplete_details"), has_tool_use),
        "stop_sequence": None,
        "usage": canonical_usage(resp.get("usage")),
    }


def output_item_blocks(item: dict[str, Any]) -> list[dict[str, Any]]:
    """Translate one Responses output item into canonical content blocks (none for hosted tools)."""
    kind = item.get("type")
    if kind == "message":
        blocks = []
        for part in item.get("content") or []:
            text = part.get("text") if part.get("type") == "output_text" else part.get("refusal")
            if isinstance(text, str) and text:
                blocks.append({"type": "text", "text": text})
        return blocks
    if kind == "function_call":
        arguments = item.get("arguments") or ""
        return [
            {
                "type": "tool_use",
                "id": item.get("call_id", ""),
                "name": item.get("name", ""),
                "input": parse_arguments(arguments if isinstance(arguments, str) else ""),
            }
        ]
    if kind == "custom_tool_call":
        return [{"type": "tool_use", "id": item.get("call_id", ""), "name": item.get("name", ""), "input": {CUSTOM_TOOL_INPUT_KEY: item.get("input", "")}}]
    if kind == "reasoning":
        # Without encrypted content no provider can take the reasoning back, so it is dropped.
        encrypted = item.get("encrypted_content")
        if not isinstance(encrypted, str) or not encrypted:
            return []
        text = "".join(part.get("text", "") for part in item.get("summary") or [] if isinstance(part, dict))
        signature = openai_reasoning_signature(str(item.get("id") or ""), encrypted)
        return [{"type": "thinking", "thinking": text, "signature": signature}]
    return []


def stop_reason(status: Any, incomplete_details: Any, has_tool_use: bool) -> str:
    """Derive the Anthropic stop_reason. A tool call makes it tool_use, whatever the provider's status."""
    reason = incomplete_details.get("reason") if isinstance(incomplete_details, dict) else None
    if status == "incomplete" and reason == "content_filter":
        return "refusal"
    if status == "incomplete":
        return "max_tokens"
    if has_tool_use:
        return "tool_use"
    return "end_turn"


def upstream_failure(error: Any) -> ProtocolError:
    """Build the ProtocolError for a provider's `response.failed` error object."""
    error = error if isinstance(error, dict) else {}
    code = error.get("code") or "server_error"
    message = error.get("message") or "the upstream model failed"
    if code in ("rate_limit_exceeded", "insufficient_quota"):
        return ProtocolError(f"upstream {code}: {message}", status=429)
    return ProtocolError(f"upstream {code}: {message}", status=502)
