"""Validation of Messages and count_tokens requests, and clean-up before Anthropic upstreams."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from engine.protocol.anthropic.models import UNION_TAG_PREFIX, CountTokensRequest, MessagesRequest
from engine.protocol.errors import ProtocolError

logger = logging.getLogger(__name__)


def _preview(value: Any) -> str:
    """Show a rejected value in an error message, cut short so a huge value cannot flood the message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _key_path(location: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in location if not (isinstance(part, str) and part.startswith(UNION_TAG_PREFIX)))


def _first_error(error: ValidationError) -> ProtocolError:
    """Turn the first pydantic error into a ProtocolError with a key path."""
    detail = error.errors(include_url=False, include_context=False, include_input=False)[0]
    message = detail["msg"]
    if detail["type"] == "missing":
        message = "is required"
    elif message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    path = _key_path(detail["loc"])
    return ProtocolError(message[0].lower() + message[1:] if message else "is invalid", param=path or None)


def _blocks_of(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return content


def _check_structure(body: dict[str, Any]) -> None:
    """Check the rules the Messages API enforces beyond field types.

    Every message has content (the final assistant message may be empty) and text blocks are not
    empty. Each tool_use needs a tool_result at the start of the next user message, and each
    tool_result must match a tool_use of the previous assistant message. Consecutive messages of one role count as one turn, as the API merges them.
    """
    messages = body["messages"]
    last = len(messages) - 1
    for position, message in enumerate(messages):
        content = message["content"]
        final_assistant = position == last and message["role"] == "assistant"
        if not content and not final_assistant:
            raise ProtocolError(
                "must not be empty (only the final assistant message may be empty)", param=f"messages.{position}.content"
            )
        if isinstance(content, list):
            for number, block in enumerate(content):
                if block.get("type") == "text" and not block.get("text"):
                    raise ProtocolError("text content blocks must be non-empty", param=f"messages.{position}.content.{number}.text")

    system = body.get("system")
    if isinstance(system, list):
        for number, block in enumerate(system):
            if not block.get("text"):
                raise ProtocolError("text content blocks must be non-empty", param=f"system.{number}.text")

    _check_tool_results(messages)

    tool_choice = body.get("tool_choice")
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "tool":
        names = {tool.get("name") for tool in body.get("tools") or []}
        if tool_choice.get("name") not in names:
            raise ProtocolError(f"names tool {_preview(tool_choice.get('name'))}, which is not in tools", param="tool_choice.name")


def _check_tool_results(messages: list[dict[str, Any]]) -> None:
    # Group consecutive messages of one role into turns: (role, [(message index, block index, block)]).
    turns: list[tuple[str, list[tuple[int, int, dict[str, Any]]]]] = []
    for position, message in enumerate(messages):
        blocks = [(position, number, block) for number, block in enumerate(_blocks_of(message["content"]))]
        if turns and turns[-1][0] == message["role"]:
            turns[-1][1].extend(blocks)
        else:
            turns.append((message["role"], blocks))

    pending: dict[str, tuple[int, int]] = {}  # tool_use id -> (message index, block index)
    for role, blocks in turns:
        if role == "assistant":
            pending = {block["id"]: (position, number) for position, number, block in blocks if block.get("type") == "tool_use"}
            continue

        leading = True
        for position, number, block in blocks:
            is_result = block.get("type") == "tool_result"
            if is_result:
                tool_use_id = block["tool_use_id"]
                if tool_use_id not in pending:
                    raise ProtocolError(
                        f"tool_result for {_preview(tool_use_id)} has no matching tool_use in the previous assistant message",
                        param=f"messages.{position}.content.{number}.tool_use_id",
                    )
                if not leading:
                    raise ProtocolError(
                        "tool_result blocks must come before any other content in the user message",
                        param=f"messages.{position}.content.{number}",
                    )
                del pending[tool_use_id]
            else:
                leading = False
        if pending:
            tool_use_id, (position, number) = next(iter(pending.items()))
            raise ProtocolError(
                f"tool_use {_preview(tool_use_id)} has no tool_result at the start of the next user message",
                param=f"messages.{position}.content.{number}.id",
            )
    # Calls left in `pending` belong to the final assistant message, which the model continues.


def _validate(body: object, model: type[CountTokensRequest]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ProtocolError(f"request body must be a JSON object, got {type(body).__name__}")
    try:
        model.model_validate(body)
    except ValidationError as error:
        raise _first_error(error) from None
    _check_structure(body)
    return body


def validate_messages_request(body: object) -> dict[str, Any]:
    """Validate a Messages request and return the same dict, untouched.

    Raises ProtocolError(400) naming the key path of the first problem, for example
    `messages.3.content.0.tool_use_id`.
    """
    return _validate(body, MessagesRequest)


def validate_count_tokens_request(body: object) -> dict[str, Any]:
    """Validate a count_tokens request (no `max_tokens`) and return the same dict, untouched."""
    return _validate(body, CountTokensRequest)


# The Responses translator packs an OpenAI reasoning item into a thinking block's signature behind
# this prefix; Anthropic cannot verify such a signature, so it counts as unsigned here.
OPENAI_REASONING_PREFIX = "openai-reasoning:"


def _is_unsigned_thinking(block: Any) -> bool:
    if not isinstance(block, dict) or block.get("type") != "thinking":
        return False
    signature = block.get("signature")
    return not signature or (isinstance(signature, str) and signature.startswith(OPENAI_REASONING_PREFIX))


def drop_unsigned_thinking(body: dict[str, Any]) -> dict[str, Any]:
    """Remove thinking blocks without an Anthropic signature before a request goes to Anthropic.

    Such blocks come from OpenAI-style providers (`reasoning_content`, Responses reasoning items) or
    Chat clients, and the Anthropic API rejects them. Returns `body` itself when there is none, so the common case costs
    no copy. Otherwise returns a shallow copy where only the changed messages are new. An assistant
    message left empty is removed. Anthropic requires the last assistant message to start with a
    thinking block when thinking is on and that message calls tools, so if that block was removed,
    `thinking` is removed from the request too.
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not any(
        isinstance(message, dict)
        and message.get("role") == "assistant"
        and isinstance(message.get("content"), list)
        and any(_is_unsigned_thinking(block) for block in message["content"])
        for message in messages
    ):
        return body

    last_assistant = max(
        (position for position, message in enumerate(messages) if isinstance(message, dict) and message.get("role") == "assistant"),
        default=-1,
    )
    kept: list[Any] = []
    disable_thinking = False
    for position, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list) or message.get("role") != "assistant":
            kept.append(message)
            continue
        blocks = [block for block in content if not _is_unsigned_thinking(block)]
        if len(blocks) == len(content):
            kept.append(message)
            continue
        if position == last_assistant and any(isinstance(b, dict) and b.get("type") == "tool_use" for b in blocks):
            disable_thinking = True
        if blocks or position == len(messages) - 1:
            kept.append({**message, "content": blocks})

    result = {**body, "messages": kept}
    if disable_thinking and isinstance(body.get("thinking"), dict) and body["thinking"].get("type") != "disabled":
        logger.debug("removed thinking from the request: the last tool-calling assistant message has no signed thinking block")
        del result["thinking"]
    return result
