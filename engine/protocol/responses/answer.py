"""Build the Responses API object (`"object": "response"`) from a canonical Anthropic message."""

from __future__ import annotations

from typing import Any

from engine.protocol.responses._common import (
    REDACTED_THINKING_PREFIX,
    custom_tool_input_text,
    format_arguments,
    incomplete_reason,
    item_id,
    responses_usage,
)


def message_to_response(message: dict[str, Any], side: dict[str, Any], response_id: str, created_at: int) -> dict[str, Any]:
    """Translate a canonical Anthropic Message into a Responses object.

    `side` is the second value of responses_request_to_canonical. A `max_tokens` stop gives
    `status: "incomplete"` with `incomplete_details.reason = "max_output_tokens"`.
    """
    custom_tools = set(side.get("custom_tools") or ())
    reason = incomplete_reason(message.get("stop_reason"))
    item_status = "incomplete" if reason else "completed"

    output: list[dict[str, Any]] = []
    pending_text: list[dict[str, Any]] = []

    def flush_text() -> None:
        if pending_text:
            output.append(message_item(item_id("msg", response_id, len(output)), list(pending_text), item_status))
            pending_text.clear()

    for block in message.get("content") or []:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            if block.get("text"):
                pending_text.append(output_text_part(block["text"]))
            continue
        flush_text()
        index = len(output)
        if kind == "tool_use":
            output.append(tool_call_item(block, custom_tools, response_id, index))
        elif kind in ("thinking", "redacted_thinking"):
            output.append(reasoning_item(block, item_id("rs", response_id, index)))
        # Server tool blocks (server_tool_use, web_search_tool_result, ...) have no Responses item.
    flush_text()

    return response_object(
        side,
        response_id,
        created_at,
        status="incomplete" if reason else "completed",
        output=output,
        usage=responses_usage(message.get("usage")),
        model=message.get("model") or side.get("model", ""),
        incomplete_reason=reason,
    )


def response_object(
    side: dict[str, Any],
    response_id: str,
    created_at: int,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    model: str | None = None,
    incomplete_reason: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the Responses object with the request settings echoed as OpenAI does."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": side.get("instructions"),
        "max_output_tokens": side.get("max_output_tokens"),
        "metadata": side.get("metadata") or {},
        "model": model or side.get("model", ""),
        "output": output,
        "parallel_tool_calls": side.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "prompt_cache_key": side.get("prompt_cache_key"),
        "reasoning": side.get("reasoning"),
        "store": bool(side.get("store")),
        "temperature": side.get("temperature"),
        "text": side.get("text"),
        "tool_choice": side.get("tool_choice") or "auto",
        "tools": side.get("tools") or [],
        "top_p": side.get("top_p"),
        "truncation": "disabled",
        "usage": usage,
        "user": side.get("user"),
    }


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(message_id: str, parts: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {"id": message_id, "type": "message", "status": status, "role": "assistant", "content": parts}


def tool_call_item(
    block: dict[str, Any], custom_tools: set[str], response_id: str, index: int, status: str = "completed"
) -> dict[str, Any]:
    """Build a `function_call` item, or a `custom_tool_call` item for a freeform tool."""
    name = block.get("name", "")
    call_id = block.get("id", "")
    if name in custom_tools:
        return {
            "id": item_id("ctc", response_id, index),
            "type": "custom_tool_call",
            "status": status,
            "call_id": call_id,
            "name": name,
            "input": custom_tool_input_text(block.get("input")),
        }
    return {
        "id": item_id("fc", response_id, index),
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": format_arguments(block.get("input")),
    }


def reasoning_item(block: dict[str, Any], reasoning_id: str) -> dict[str, Any]:
    """Build a `reasoning` item that carries a thinking block so the client can send it back.

    The thinking text becomes the summary. The signature, or the redacted data with a prefix,
    becomes `encrypted_content`, and the request translation turns it back into the same block.
    """
    if block.get("type") == "redacted_thinking":
        return {
            "id": reasoning_id,
            "type": "reasoning",
            "summary": [],
            "encrypted_content": REDACTED_THINKING_PREFIX + str(block.get("data", "")),
        }
    thinking = block.get("thinking") or ""
    signature = block.get("signature") or None
    return {
        "id": reasoning_id,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": thinking}] if thinking else [],
        "encrypted_content": signature,
    }
