"""Translate a client's `POST /v1/responses` body into the canonical (Anthropic Messages) request."""

from __future__ import annotations

import logging
from typing import Any

from engine.protocol.errors import ProtocolError
from engine.protocol.responses._common import DEFAULT_MAX_TOKENS
from engine.protocol.responses.input_items import translate_input
from engine.protocol.responses.tools import check_tool_choice_shape, translate_tool_choice, translate_tools

logger = logging.getLogger(__name__)

# Top-level fields the translation reads. Anything else is dropped and listed in
# side["dropped_fields"], so the caller can log it.
_KNOWN_FIELDS = frozenset(
    {
        "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls",
        "max_output_tokens", "temperature", "top_p", "stream", "store", "metadata", "user",
        "safety_identifier", "prompt_cache_key", "previous_response_id", "conversation",
        "reasoning", "include", "text", "truncation", "service_tier", "stream_options",
        "top_logprobs", "background", "prompt_cache_retention",
    }
)

# Reasoning effort -> Anthropic extended-thinking budget. Anthropic needs at least 1024.
_THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}


def responses_request_to_canonical(body: object) -> tuple[dict[str, Any], dict[str, Any]]:
    """Translate a Responses request body into (canonical body, side fields).

    The side dict contains what only the Responses object needs: `model`, `stream`, `store`,
    `metadata`, `prompt_cache_key`, `parallel_tool_calls`, `custom_tools` (names of freeform tools,
    whose calls go back as `custom_tool_call`), `tools` and `tool_choice` as sent, `instructions`,
    `max_output_tokens`, `reasoning`, `text`, `user`, `include`, `dropped_tools`, `dropped_fields`.

    Raises ProtocolError (400) naming the key path of the first invalid value.
    """
    if not isinstance(body, dict):
        raise ProtocolError("the request body must be a JSON object")

    _reject_server_state(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ProtocolError("missing or empty: a model name (string) is required", param="model")

    side = _side_fields(body, model)
    system, messages = translate_input(body.get("input"), body.get("instructions"))
    tools, custom_tools, dropped_tools = translate_tools(body.get("tools"))
    side["custom_tools"] = custom_tools
    side["dropped_tools"] = dropped_tools
    if side["dropped_fields"] or dropped_tools:
        logger.debug("dropped Responses fields %s and hosted tools %s", side["dropped_fields"], dropped_tools)

    canonical: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(body)}
    if system:
        canonical["system"] = system
    canonical["messages"] = messages
    if tools:
        canonical["tools"] = tools
        tool_choice = translate_tool_choice(body.get("tool_choice"), tools, body.get("parallel_tool_calls"))
        if tool_choice is not None:
            canonical["tool_choice"] = tool_choice
    else:
        check_tool_choice_shape(body.get("tool_choice"))

    _copy_sampling(body, canonical)
    thinking = _thinking(body.get("reasoning"), canonical["max_tokens"])
    # Anthropic rejects extended thinking together with a forced tool choice.
    forced_tool = canonical.get("tool_choice", {}).get("type") in ("any", "tool")
    if thinking is not None and not forced_tool:
        canonical["thinking"] = thinking
        # Anthropic rejects temperature and top_p changes while thinking is enabled.
        canonical.pop("temperature", None)
        canonical.pop("top_p", None)

    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str) and user:
        canonical["metadata"] = {"user_id": user}
    canonical["stream"] = side["stream"]
    return canonical, side


def _reject_server_state(body: dict[str, Any]) -> None:
    if body.get("previous_response_id") is not None:
        raise ProtocolError(
            "is not supported: this gateway is stateless and stores no responses. "
            "Send the whole conversation in `input` with `store: false` (Codex does this by default).",
            param="previous_response_id",
        )
    if body.get("conversation") is not None:
        raise ProtocolError(
            "is not supported: this gateway is stateless. Send the whole conversation in `input`.",
            param="conversation",
        )


def _side_fields(body: dict[str, Any], model: str) -> dict[str, Any]:
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise ProtocolError("must be a boolean", param="stream")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ProtocolError("must be an object of string values", param="metadata")
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise ProtocolError("must be a boolean", param="parallel_tool_calls")
    return {
        "model": model,
        "stream": stream,
        "store": body.get("store"),
        "metadata": metadata or {},
        "prompt_cache_key": body.get("prompt_cache_key"),
        "parallel_tool_calls": True if parallel is None else parallel,
        "tools": body.get("tools") or [],
        "tool_choice": body.get("tool_choice", "auto"),
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "reasoning": body.get("reasoning"),
        "text": body.get("text"),
        "user": body.get("user"),
        "include": body.get("include"),
        "dropped_fields": sorted(key for key in body if key not in _KNOWN_FIELDS),
    }


def _max_tokens(body: dict[str, Any]) -> int:
    value = body.get("max_output_tokens")
    if value is None:
        return DEFAULT_MAX_TOKENS
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProtocolError(f"must be a positive integer, got {value!r}", param="max_output_tokens")
    return value


def _copy_sampling(body: dict[str, Any], canonical: dict[str, Any]) -> None:
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ProtocolError(f"must be a non-negative number, got {value!r}", param=name)
        # OpenAI allows temperature up to 2, Anthropic up to 1. The original stays in the side dict.
        canonical[name] = min(float(value), 1.0)


def _thinking(reasoning: Any, max_tokens: int) -> dict[str, Any] | None:
    if reasoning is None:
        return None
    if not isinstance(reasoning, dict):
        raise ProtocolError("must be an object such as {\"effort\": \"medium\"}", param="reasoning")
    effort = reasoning.get("effort")
    if effort is None or effort == "none":
        return None
    if effort not in _THINKING_BUDGETS:
        raise ProtocolError(
            f"unknown reasoning effort {effort!r}; use one of none, {', '.join(_THINKING_BUDGETS)}",
            param="reasoning.effort",
        )
    # The budget must stay below max_tokens; with too small a max_tokens there is no room to think.
    budget = min(_THINKING_BUDGETS[effort], max_tokens - 1)
    if budget < 1024:
        return None
    return {"type": "enabled", "budget_tokens": budget}
