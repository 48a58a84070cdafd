"""Cache keys and eligibility of a canonical request (Anthropic Messages shape).

The exact key is a sha256 of a canonical serialisation of every field that changes the response.
The scope key is a sha256 of what a semantic hit must share with the stored entry: the team always,
then the model, system prompt, tools and extra headers as the policy's `scope` says, and the
context the client attached to the last user message (system reminders, images, documents).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from engine.pipeline.context import RequestContext
from engine.stages.cache.policy import CacheEligibility, CacheScope

# Fields of the request body that change the response. `max_tokens` is left out because only
# complete responses are stored (see `storable_reason`), and `stream` and `metadata` change nothing.
_RESPONSE_FIELDS = (
    "model", "system", "messages", "tools", "tool_choice", "temperature", "top_p", "top_k",
    "stop_sequences", "thinking", "output_format", "response_format",
)
_SYSTEM_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.DOTALL)
_STORABLE_STOP_REASONS = frozenset({"end_turn", "stop_sequence"})


def _canonical(value: Any) -> Any:
    """Drop `cache_control` markers and turn plain-string content into one text block.

    Prompt caching breakpoints do not change the response, and `"content": "hi"` means the same as
    `"content": [{"type": "text", "text": "hi"}]`.
    """
    if isinstance(value, dict):
        result = {key: _canonical(item) for key, item in value.items() if key != "cache_control"}
        if isinstance(result.get("content"), str) and "role" in result:
            result["content"] = [{"type": "text", "text": result["content"]}]
        return result
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    if isinstance(value, str):
        return value.strip()
    return value


def _digest(value: Any) -> str:
    data = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    # surrogatepass: JSON bodies may carry lone surrogates (`"\ud800"`), which strict UTF-8 rejects.
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()


def _system_blocks(body: dict[str, Any]) -> Any:
    system = body.get("system")
    if isinstance(system, str):
        return [{"type": "text", "text": system}]
    return system


def _header_values(ctx: RequestContext, scope: CacheScope) -> dict[str, str]:
    return {name: ctx.headers.get(name, "") for name in scope.headers}


def exact_key(ctx: RequestContext, scope: CacheScope) -> str:
    """Return the sha256 of the team, the extra scope headers and the body fields that change the response."""
    fields = {name: ctx.body[name] for name in _RESPONSE_FIELDS if name in ctx.body}
    if "system" in fields:
        fields["system"] = _system_blocks(ctx.body)
    return _digest({"team": ctx.team, "headers": _header_values(ctx, scope), "body": _canonical(fields)})


def scope_key(ctx: RequestContext, scope: CacheScope) -> str:
    """Return the sha256 of everything a semantic hit must share with the stored entry."""
    parts: dict[str, Any] = {
        "team": ctx.team,
        "context": _canonical(last_user_context(ctx.body)),
        "headers": _header_values(ctx, scope),
        # Sampling settings are part of the scope: a response at temperature 0 is not one at 1.
        "sampling": _canonical({name: ctx.body.get(name) for name in ("temperature", "top_p", "top_k", "thinking")}),
    }
    if scope.model:
        # The requested model, because tier routing picks the target model after the lookup. Within
        # one policy the same requested model and a similar prompt reach the same tier in most cases.
        parts["model"] = requested_model(ctx)
    if scope.system:
        parts["system"] = _canonical(_system_blocks(ctx.body))
    if scope.tools:
        parts["tools"] = _canonical([ctx.body.get("tools"), ctx.body.get("tool_choice")])
    return _digest(parts)


def requested_model(ctx: RequestContext) -> str:
    return ctx.requested_model or str(ctx.body.get("model", ""))


def last_user_message(body: dict[str, Any]) -> dict[str, Any] | None:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message
    return None


def last_user_context(body: dict[str, Any]) -> list[Any]:
    """Return what the last user message carries besides its instruction text.

    That is system reminders (file contents, editor state) and non-text blocks. Two requests with the
    same question but different attached context must not share a semantic entry.
    """
    message = last_user_message(body)
    if message is None:
        return []
    content = message.get("content")
    if isinstance(content, str):
        return _SYSTEM_REMINDER.findall(content)
    context: list[Any] = []
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
            context.extend(_SYSTEM_REMINDER.findall(block["text"]))
        else:
            context.append(block)
    return context


def _has_block(body: dict[str, Any], block_type: str) -> bool:
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == block_type for b in content):
            return True
    return False


def ineligible_reason(ctx: RequestContext, eligibility: CacheEligibility) -> str | None:
    """Return why the request may not use the cache, or None when it may."""
    messages = ctx.body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "no messages"
    if len(messages) > eligibility.max_messages:
        return f"{len(messages)} messages, more than max_messages {eligibility.max_messages}"
    if not eligibility.tool_results and _has_block(ctx.body, "tool_result"):
        return "the request contains tool results"
    temperature = ctx.body.get("temperature", 1.0)
    if isinstance(temperature, (int, float)) and temperature > eligibility.max_temperature:
        return f"temperature {temperature} is above max_temperature {eligibility.max_temperature}"
    request_class = ctx.scratch.get("class")
    if eligibility.classes is not None and request_class not in eligibility.classes:
        return f"request class {request_class!r} is not in eligibility.classes"
    return None


def storable_reason(message: dict[str, Any], eligibility: CacheEligibility) -> str | None:
    """Return why an response may not be stored, or None when it may."""
    if not isinstance(message, dict) or message.get("role", "assistant") != "assistant":
        return "not an assistant message"
    content = message.get("content")
    if not isinstance(content, list) or not content:
        return "empty content"
    if message.get("stop_reason") not in _STORABLE_STOP_REASONS:
        return f"stop_reason {message.get('stop_reason')!r} marks an incomplete response"
    if not eligibility.store_tool_calls and any(
        isinstance(block, dict) and block.get("type") in ("tool_use", "server_tool_use") for block in content
    ):
        return "the response calls tools"
    return None
