"""Anthropic Messages wire format: response bodies, SSE events and errors."""

from __future__ import annotations

import orjson

from engine.stub.replies import Reply, Usage, split_fragments, split_words

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(status: int, message: str, request_id: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": error_type(status), "message": message}, "request_id": request_id})


def usage_fields(usage: Usage, output_tokens: int) -> dict:
    return {
        "input_tokens": usage.uncached_input_tokens,
        "cache_creation_input_tokens": usage.cache_creation_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "output_tokens": output_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.cache_creation_5m_tokens,
            "ephemeral_1h_input_tokens": usage.cache_creation_1h_tokens,
        },
        "service_tier": "standard",
    }


def _content(reply: Reply) -> list[dict]:
    blocks: list[dict] = []
    if reply.text:
        blocks.append({"type": "text", "text": reply.text})
    for call in reply.tool_calls:
        blocks.append({"type": "tool_use", "id": f"toolu_{call.id_suffix}", "name": call.name, "input": call.arguments})
    return blocks


def message_body(reply: Reply, model: str, usage: Usage, message_id: str) -> bytes:
    return orjson.dumps(
        {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": _content(reply),
            "stop_reason": reply.stop,
            "stop_sequence": None,
            "usage": usage_fields(usage, usage.output_tokens),
        }
    )


def _event(name: str, data: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def stream_events(reply: Reply, model: str, usage: Usage, message_id: str) -> list[bytes]:
    """Return the SSE events of a streamed response in the API's order, one bytes item per event."""
    start_message = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage_fields(usage, 1),
    }
    events = [_event("message_start", {"type": "message_start", "message": start_message})]
    index = 0
    if reply.text:
        events.append(_event("content_block_start", {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}))
        for piece in split_words(reply.text):
            delta = {"type": "text_delta", "text": piece}
            events.append(_event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        events.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    for call in reply.tool_calls:
        block = {"type": "tool_use", "id": f"toolu_{call.id_suffix}", "name": call.name, "input": {}}
        events.append(_event("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}))
        # The real API opens each tool input with an empty fragment.
        for piece in ["", *split_fragments(call.arguments_json)]:
            delta = {"type": "input_json_delta", "partial_json": piece}
            events.append(_event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        events.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    closing = {"stop_reason": reply.stop, "stop_sequence": None}
    events.append(_event("message_delta", {"type": "message_delta", "delta": closing, "usage": usage_fields(usage, usage.output_tokens)}))
    events.append(_event("message_stop", {"type": "message_stop"}))
    return events


def stream_error_event(message: str) -> bytes:
    return _event("error", {"type": "error", "error": {"type": "overloaded_error", "message": message}})


def count_tokens_body(input_tokens: int) -> bytes:
    return orjson.dumps({"input_tokens": input_tokens})


MODELS = ("claude-opus-4-1", "claude-sonnet-4-5", "claude-haiku-4-5")


def models_body() -> bytes:
    data = [
        {
            "type": "model",
            "id": model,
            "display_name": model.replace("-", " ").title(),
            "created_at": "2025-01-01T00:00:00Z",
            "max_input_tokens": 200000,
            "max_tokens": 64000,
        }
        for model in MODELS
    ]
    return orjson.dumps({"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]})
