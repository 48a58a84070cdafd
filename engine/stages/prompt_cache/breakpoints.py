"""Find, add and remove `cache_control` breakpoints in a canonical (Anthropic Messages) request.

The prompt prefix runs tools, then system, then messages. Every function here that changes a body
replaces the lists and dicts on the path to the changed block with copies, so objects that other
stages or session memories may still hold are never mutated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine import tokens

# Anthropic rejects a request with more than 4 blocks that carry cache_control.
MAX_BREAKPOINTS = 4
# Block types that must never carry cache_control: the API rejects it on thinking blocks.
UNMARKABLE_TYPES = frozenset({"thinking", "redacted_thinking"})
TOP_LEVEL = "cache_control"


@dataclass(frozen=True, slots=True)
class PrefixBlock:
    """One block of the prompt prefix, with the estimated tokens from the start through it."""

    location: str  # `tools[3]`, `system[0]`, `system`, `messages[2].content[1]` or `messages[2].content`
    section: str  # "tools", "system" or "messages"
    message_index: int | None
    block_index: int | None  # None when the system prompt or the message content is a plain string
    block: Any
    tokens_end: int


def walk_prefix(body: dict[str, Any]) -> list[PrefixBlock]:
    """List the blocks of a request in prefix order, with token counts as `engine.tokens.count_request` makes them."""
    blocks: list[PrefixBlock] = []
    total = 0

    tools = body.get("tools")
    if isinstance(tools, list):
        for index, tool in enumerate(tools):
            total += tokens.count_json(tool)
            blocks.append(PrefixBlock(f"tools[{index}]", "tools", None, index, tool, total))

    system = body.get("system")
    if isinstance(system, str) and system:
        total += tokens.count_text(system)
        blocks.append(PrefixBlock("system", "system", None, None, system, total))
    elif isinstance(system, list):
        for index, block in enumerate(system):
            total += tokens.count_block(block)
            blocks.append(PrefixBlock(f"system[{index}]", "system", None, index, block, total))

    messages = body.get("messages")
    for message_index, message in enumerate(messages if isinstance(messages, list) else ()):
        if not isinstance(message, dict):
            continue
        total += tokens.MESSAGE_OVERHEAD
        content = message.get("content")
        if isinstance(content, str):
            total += tokens.count_text(content)
            blocks.append(PrefixBlock(f"messages[{message_index}].content", "messages", message_index, None, content, total))
        elif isinstance(content, list):
            for block_index, block in enumerate(content):
                total += tokens.count_block(block)
                location = f"messages[{message_index}].content[{block_index}]"
                blocks.append(PrefixBlock(location, "messages", message_index, block_index, block, total))
    return blocks


def has_breakpoint(block: Any) -> bool:
    return isinstance(block, dict) and block.get("cache_control") is not None


def is_markable(block: Any) -> bool:
    """Return whether a breakpoint may go on this block: not thinking, not empty text."""
    if isinstance(block, str):
        return bool(block)
    if not isinstance(block, dict):
        return False
    kind = block.get("type")
    if kind in UNMARKABLE_TYPES:
        return False
    if kind == "text" and not block.get("text"):
        return False
    return True


def control_ttl(control: Any) -> str:
    """Return the TTL of a cache_control value, which is 5 minutes when it names none (the API default)."""
    if isinstance(control, dict) and control.get("ttl") == "1h":
        return "1h"
    return "5m"


def cache_control(ttl: str) -> dict[str, str]:
    # The 5-minute TTL is the API default, so it is sent without `ttl` (accepted by every API version).
    return {"type": "ephemeral"} if ttl == "5m" else {"type": "ephemeral", "ttl": ttl}


def text_blocks(content: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if content else []


def normalise_message_strings(body: dict[str, Any]) -> None:
    """Turn plain-string message content into one text block, so a message has the same bytes
    whether or not it carries a breakpoint this turn."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not any(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages):
        return
    body["messages"] = [
        {**message, "content": text_blocks(message["content"])}
        if isinstance(message, dict) and isinstance(message.get("content"), str)
        else message
        for message in messages
    ]


def _with_control(block: Any, control: dict[str, str] | None) -> dict[str, Any]:
    if isinstance(block, str):
        block = {"type": "text", "text": block}
    updated = {key: value for key, value in block.items() if key != "cache_control"}
    if control is not None:
        updated["cache_control"] = control
    return updated


def set_control(body: dict[str, Any], target: PrefixBlock, control: dict[str, str] | None) -> None:
    """Put `control` on the target block, or remove its cache_control when `control` is None.

    A plain-string system prompt or message content becomes a list of one text block first.
    """
    if target.section == "tools":
        tools = list(body["tools"])
        tools[target.block_index] = _with_control(tools[target.block_index], control)
        body["tools"] = tools
        return

    if target.section == "system":
        if target.block_index is None:
            body["system"] = [_with_control(body["system"], control)]
            return
        system = list(body["system"])
        system[target.block_index] = _with_control(system[target.block_index], control)
        body["system"] = system
        return

    messages = list(body["messages"])
    message = dict(messages[target.message_index])
    if target.block_index is None:
        message["content"] = [_with_control(message["content"], control)]
    else:
        content = list(message["content"])
        content[target.block_index] = _with_control(content[target.block_index], control)
        message["content"] = content
    messages[target.message_index] = message
    body["messages"] = messages


def last_markable(blocks: list[PrefixBlock], message_index: int) -> PrefixBlock | None:
    """Return the last block of a message that may carry a breakpoint, or None."""
    for block in reversed(blocks):
        if block.message_index == message_index and is_markable(block.block):
            return block
    return None
