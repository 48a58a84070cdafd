"""Helpers shared by the Responses translators: JSON text, item ids, usage and stop-reason mapping."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from engine.protocol.anthropic.validate import OPENAI_REASONING_PREFIX
from engine.protocol.errors import ProtocolError

# Anthropic rejects a request without `max_tokens`, and Codex sends no `max_output_tokens`.
# 32000 is the max_tokens that Claude Code sends. NOTE: some models allow less, so the provider
# adapter must clamp it per model.
DEFAULT_MAX_TOKENS = 32000

# A model can emit `arguments` that are not a JSON object, and the client sends them back in the
# history. Such a string is kept under this key, so it translates back to the same string.
RAW_ARGUMENTS_KEY = "_raw_arguments"

# A `custom` (freeform) tool is offered to the model as a function with this one string parameter.
CUSTOM_TOOL_INPUT_KEY = "input"

# `encrypted_content` of a reasoning item that carries an Anthropic `redacted_thinking` block.
REDACTED_THINKING_PREFIX = "anthropic-redacted:"

# OPENAI_REASONING_PREFIX starts the signature of a canonical thinking block made from an OpenAI
# reasoning item: `openai-reasoning:<item id>:<encrypted_content>`. The prefix tells adapters that the
# block is no Anthropic thinking (Anthropic rejects the signature), and the id and content let a
# Responses upstream get its reasoning item back.

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")

# Anthropic error types -> the Responses `error.code` that Codex acts on.
ERROR_CODES: dict[str, str] = {
    "rate_limit_error": "rate_limit_exceeded",
    "overloaded_error": "server_error",
    "api_error": "server_error",
    "timeout_error": "server_error",
    "billing_error": "insufficient_quota",
    "invalid_request_error": "invalid_prompt",
    "request_too_large": "context_length_exceeded",
}


def dumps(value: Any) -> str:
    """Serialise compactly and deterministically, as OpenAI tool-call `arguments` are sent."""
    return orjson.dumps(value).decode()


def parse_arguments(arguments: str) -> dict[str, Any]:
    """Parse a tool call's `arguments` string into a tool_use input object.

    A string that is not a JSON object is wrapped under RAW_ARGUMENTS_KEY instead of failing.
    """
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {RAW_ARGUMENTS_KEY: arguments}
    if isinstance(value, dict):
        return value
    return {RAW_ARGUMENTS_KEY: arguments}


def format_arguments(tool_input: Any) -> str:
    """Serialise a tool_use input as an `arguments` string; the inverse of parse_arguments."""
    if isinstance(tool_input, dict) and set(tool_input) == {RAW_ARGUMENTS_KEY}:
        raw = tool_input[RAW_ARGUMENTS_KEY]
        if isinstance(raw, str):
            return raw
    if tool_input is None:
        return "{}"
    return dumps(tool_input)


def custom_tool_input_text(tool_input: Any) -> str:
    """Return the freeform text of a custom tool call from the tool_use input the model produced."""
    if isinstance(tool_input, dict):
        value = tool_input.get(CUSTOM_TOOL_INPUT_KEY)
        if isinstance(value, str):
            return value
        strings = [v for v in tool_input.values() if isinstance(v, str)]
        if len(tool_input) == 1 and strings:
            return strings[0]
    if isinstance(tool_input, str):
        return tool_input
    return format_arguments(tool_input)


def required_string(item: dict[str, Any], key: str, path: str) -> str:
    """Return `item[key]` if it is a non-empty string; raise ProtocolError naming `path.key` if not."""
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError("missing or empty: expected a non-empty string", param=f"{path}.{key}")
    return value


def openai_reasoning_signature(reasoning_id: str, encrypted_content: str) -> str:
    """Pack an OpenAI reasoning item's id and encrypted content into a thinking block signature."""
    return f"{OPENAI_REASONING_PREFIX}{reasoning_id}:{encrypted_content}"


def is_openai_reasoning(block: dict[str, Any]) -> bool:
    """Tell whether a canonical thinking block carries an OpenAI reasoning item, not Anthropic thinking.

    An Anthropic adapter must drop such blocks, because Anthropic rejects their signature.
    """
    signature = block.get("signature") if block.get("type") == "thinking" else None
    return isinstance(signature, str) and signature.startswith(OPENAI_REASONING_PREFIX)


def unpack_openai_reasoning(signature: str) -> tuple[str, str] | None:
    """Return (reasoning item id, encrypted content) from a signature, or None if it carries none."""
    if not signature.startswith(OPENAI_REASONING_PREFIX):
        return None
    reasoning_id, colon, encrypted = signature[len(OPENAI_REASONING_PREFIX) :].partition(":")
    if not colon or not reasoning_id or not encrypted:
        return None
    return reasoning_id, encrypted


def item_id(prefix: str, response_id: str, output_index: int) -> str:
    """Build a stable output item id, for example `fc_<response suffix>_2`."""
    suffix = response_id.split("_", 1)[1] if "_" in response_id else response_id
    return f"{prefix}_{suffix}_{output_index}"


def image_source_from_url(url: str, param: str) -> dict[str, Any]:
    """Turn an OpenAI `image_url` string (data URL or http(s) URL) into an Anthropic image source."""
    if url.startswith("data:"):
        media_type, data = _split_data_url(url, param)
        if media_type not in IMAGE_MEDIA_TYPES:
            raise ProtocolError(
                f"unsupported image media type {media_type!r}; use one of {', '.join(IMAGE_MEDIA_TYPES)}",
                param=param,
            )
        return {"type": "base64", "media_type": media_type, "data": data}
    if url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    raise ProtocolError("invalid image URL: expected a data: URL or an http(s) URL", param=param)


def document_source_from_data_url(url: str, param: str) -> dict[str, Any]:
    """Turn a `data:application/pdf;base64,...` file into an Anthropic document source."""
    media_type, data = _split_data_url(url, param)
    if media_type != "application/pdf":
        raise ProtocolError(f"unsupported file media type {media_type!r}; only application/pdf is supported", param=param)
    return {"type": "base64", "media_type": media_type, "data": data}


def data_url(source: dict[str, Any]) -> str | None:
    """Return the data URL or plain URL of an Anthropic image or document source, if it has one."""
    if source.get("type") == "base64":
        return f"data:{source.get('media_type', '')};base64,{source.get('data', '')}"
    if source.get("type") == "url":
        return source.get("url")
    return None


def _split_data_url(url: str, param: str) -> tuple[str, str]:
    header, comma, data = url.partition(",")
    if not comma or not header.endswith(";base64"):
        raise ProtocolError("invalid data URL: expected data:<media type>;base64,<data>", param=param)
    media_type = header[len("data:") : -len(";base64")].lower()
    try:
        base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("invalid data URL: the data is not base64", param=param) from None
    return media_type, data


def responses_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """Map canonical (Anthropic) usage to Responses usage.

    Anthropic's `input_tokens` excludes cached tokens; the Responses `input_tokens` includes them.
    """
    usage = usage or {}
    uncached = _int(usage.get("input_tokens"))
    cache_read = _int(usage.get("cache_read_input_tokens"))
    cache_write = _int(usage.get("cache_creation_input_tokens"))
    output_tokens = _int(usage.get("output_tokens"))
    details = usage.get("output_tokens_details") or {}
    reasoning_tokens = _int(details.get("reasoning_tokens")) if isinstance(details, dict) else 0
    input_tokens = uncached + cache_read + cache_write
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cache_read, "cache_write_tokens": cache_write},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }


def canonical_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """Map Responses usage to canonical (Anthropic) usage; the inverse of responses_usage."""
    usage = usage or {}
    input_details = usage.get("input_tokens_details") or {}
    output_details = usage.get("output_tokens_details") or {}
    cache_read = _int(input_details.get("cached_tokens")) if isinstance(input_details, dict) else 0
    cache_write = _int(input_details.get("cache_write_tokens")) if isinstance(input_details, dict) else 0
    total_input = _int(usage.get("input_tokens"))
    result: dict[str, Any] = {
        "input_tokens": max(total_input - cache_read - cache_write, 0),
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
        "output_tokens": _int(usage.get("output_tokens")),
    }
    if isinstance(output_details, dict) and output_details.get("reasoning_tokens"):
        result["output_tokens_details"] = {"reasoning_tokens": _int(output_details["reasoning_tokens"])}
    return result


def incomplete_reason(stop_reason: str | None) -> str | None:
    """Return the Responses `incomplete_details.reason` for an Anthropic stop_reason, or None."""
    if stop_reason in ("max_tokens", "model_context_window_exceeded"):
        return "max_output_tokens"
    if stop_reason == "refusal":
        return "content_filter"
    return None


def error_code(error_type: str | None, message: str = "", status: int | None = None) -> str:
    """Map an Anthropic error type, or an HTTP status, and the error message to a Responses `error.code`.

    Codex acts on context_length_exceeded and rate_limit_exceeded. The message is checked too
    because a relay may pass only a generic status (502) with the upstream's message.
    """
    lowered = message.lower()
    if "prompt is too long" in lowered or ("context" in lowered and ("length" in lowered or "window" in lowered)):
        return "context_length_exceeded"
    if error_type in ERROR_CODES:
        return ERROR_CODES[error_type]
    if status == 429 or "rate limit" in lowered:
        return "rate_limit_exceeded"
    if status == 402:
        return "insufficient_quota"
    if status is not None and 400 <= status < 500:
        return "invalid_prompt"
    return "server_error"


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return int(value)
