"""Mappings shared by the Chat Completions translators: stop reasons, usage and tool arguments."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import orjson

logger = logging.getLogger(__name__)

# The key under which a tool_use input keeps tool-call arguments that are not a JSON object. The
# Responses translator uses the same key, so such input converts back to the same string everywhere.
RAW_ARGUMENTS_KEY = "_raw_arguments"

_FINISH_TO_STOP_REASON = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

_STOP_REASON_TO_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def new_tool_use_id() -> str:
    """Make an Anthropic-style tool-use id for a tool call that arrived without one."""
    return "toolu_" + secrets.token_hex(12)


def stop_reason_from_finish(finish_reason: str | None, has_tool_calls: bool) -> str:
    """Map an OpenAI finish_reason to an Anthropic stop_reason.

    Several providers report `stop` after emitting tool calls, so the presence of tool calls wins
    over the reported reason, except `length`, which means the call may be truncated.
    """
    if finish_reason == "length":
        return "max_tokens"
    if has_tool_calls:
        return "tool_use"
    return _FINISH_TO_STOP_REASON.get(finish_reason or "stop", "end_turn")


def finish_reason_from_stop(stop_reason: str | None) -> str:
    """Map an Anthropic stop_reason to an OpenAI finish_reason (unknown values map to `stop`)."""
    return _STOP_REASON_TO_FINISH.get(stop_reason or "end_turn", "stop")


def positive_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def openai_usage_to_anthropic(usage: Any) -> dict[str, int]:
    """Convert OpenAI usage (prompt tokens include cached ones) to Anthropic usage (they do not).

    The cached count is read from `prompt_tokens_details.cached_tokens`, or from DeepSeek's
    `prompt_cache_hit_tokens` or Moonshot's top-level `cached_tokens` when that is absent.
    """
    if not isinstance(usage, dict):
        usage = {}
    details = usage.get("prompt_tokens_details")
    if not isinstance(details, dict):
        details = {}

    prompt = positive_int(usage.get("prompt_tokens"))
    cached = positive_int(details.get("cached_tokens")) or positive_int(usage.get("prompt_cache_hit_tokens"))
    cached = cached or positive_int(usage.get("cached_tokens"))
    cache_write = positive_int(details.get("cache_write_tokens"))
    cached = min(cached, prompt)
    cache_write = min(cache_write, prompt - cached)
    return {
        "input_tokens": prompt - cached - cache_write,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cached,
        "output_tokens": positive_int(usage.get("completion_tokens")),
    }


def anthropic_usage_to_openai(usage: Any) -> dict[str, Any]:
    """Convert Anthropic usage to OpenAI usage, where prompt_tokens includes cached tokens."""
    if not isinstance(usage, dict):
        usage = {}
    cache_read = positive_int(usage.get("cache_read_input_tokens"))
    prompt = positive_int(usage.get("input_tokens")) + cache_read + positive_int(usage.get("cache_creation_input_tokens"))
    completion = positive_int(usage.get("output_tokens"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """Parse a tool call's `arguments` from an upstream model without ever raising.

    Models sometimes emit invalid JSON. The raw text is kept under RAW_ARGUMENTS_KEY, so the agent's
    tool reports a visible input error instead of running with silently empty input, and the text
    goes back upstream unchanged in the next request.
    """
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        logger.warning("upstream tool call arguments are not valid JSON (%d characters)", len(arguments))
        return {RAW_ARGUMENTS_KEY: arguments}
    if not isinstance(parsed, dict):
        return {RAW_ARGUMENTS_KEY: arguments}
    return parsed


def format_arguments(tool_input: Any) -> str:
    """Serialise a tool_use input as an `arguments` string; the inverse of parse_arguments."""
    if isinstance(tool_input, dict) and len(tool_input) == 1 and isinstance(tool_input.get(RAW_ARGUMENTS_KEY), str):
        return tool_input[RAW_ARGUMENTS_KEY]
    return orjson.dumps(tool_input if tool_input is not None else {}).decode()

def message_id(upstream_id: Any) -> str:
    if isinstance(upstream_id, str) and upstream_id:
        return upstream_id if upstream_id.startswith("msg_") else "msg_" + upstream_id
    return "msg_" + secrets.token_hex(12)


def reasoning_text(message: dict[str, Any]) -> str:
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""
