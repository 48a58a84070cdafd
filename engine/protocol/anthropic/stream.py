"""Canonical stream events and Message dicts: assembly, replay and usage helpers."""

from __future__ import annotations

import copy
import logging
from typing import Any

import orjson

logger = logging.getLogger(__name__)

# The key under which a tool_use input keeps text that is not a JSON object; the OpenAI translators
# use the same key.
RAW_ARGUMENTS_KEY = "_raw_arguments"

USAGE_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")


def empty_usage() -> dict[str, int]:
    return dict.fromkeys(USAGE_FIELDS, 0)


def total_input_tokens(usage: dict[str, Any]) -> int:
    """Count every input token: Anthropic's `input_tokens` excludes cache reads and writes."""
    return sum(
        usage.get(key) or 0 for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )


class MessageAssembler:
    """Builds the final Message dict from canonical stream events.

    Feed every event in order, then read `message()`. `complete` turns true at `message_stop`, and
    `error` is the error object of an `error` event. Unknown events are ignored.
    """

    def __init__(self) -> None:
        self._message: dict[str, Any] = {
            "id": "",
            "type": "message",
            "role": "assistant",
            "model": "",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": empty_usage(),
        }
        self._partial_json: dict[int, list[str]] = {}
        self._blocks: dict[int, dict[str, Any]] = {}
        self.complete = False
        self.error: dict[str, Any] | None = None

    def feed(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "message_start":
            started = copy.deepcopy(event.get("message") or {})
            started["content"] = []
            self._message.update(started)
            self._message["usage"] = {**empty_usage(), **(started.get("usage") or {})}
        elif kind == "content_block_start":
            block = copy.deepcopy(event.get("content_block") or {})
            self._blocks[event["index"]] = block
            if block.get("type") == "tool_use":
                self._partial_json[event["index"]] = []
        elif kind == "content_block_delta":
            self._apply_delta(event.get("index"), event.get("delta") or {})
        elif kind == "content_block_stop":
            self._stop_block(event.get("index"))
        elif kind == "message_delta":
            delta = event.get("delta") or {}
            for key in ("stop_reason", "stop_sequence"):
                if key in delta:
                    self._message[key] = delta[key]
            # Usage on message_delta is cumulative, so its values replace the earlier ones.
            usage = event.get("usage") or {}
            self._message["usage"].update({key: value for key, value in usage.items() if value is not None})
        elif kind == "message_stop":
            self.complete = True
        elif kind == "error":
            self.error = event.get("error") or {"type": "api_error", "message": "unknown error"}

    def _apply_delta(self, index: Any, delta: dict[str, Any]) -> None:
        block = self._blocks.get(index)
        if block is None:
            logger.debug("ignored a delta for block %r, which is not open", index)
            return
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = block.get("text", "") + delta.get("text", "")
        elif kind == "input_json_delta":
            self._partial_json.setdefault(index, []).append(delta.get("partial_json", ""))
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
        elif kind == "signature_delta":
            block["signature"] = block.get("signature", "") + delta.get("signature", "")
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(delta.get("citation"))

    def _stop_block(self, index: Any) -> None:
        block = self._blocks.pop(index, None)
        if block is None:
            return
        fragments = self._partial_json.pop(index, None)
        if fragments is not None:
            text = "".join(fragments)
            if text.strip():
                try:
                    block["input"] = orjson.loads(text)
                except orjson.JSONDecodeError:
                    block["input"] = {RAW_ARGUMENTS_KEY: text}
        if block.get("type") == "text" and not block.get("text"):
            return  # the API rejects empty text blocks when this message is sent back
        self._message["content"].append(block)

    def message(self) -> dict[str, Any]:
        """Return the Message assembled so far; blocks still open are closed as they are."""
        for index in sorted(self._blocks):
            self._stop_block(index)
        return self._message


def _split_text(text: str, pieces: int) -> list[str]:
    """Split text into at most `pieces` parts of similar length, cutting after a space when possible."""
    if len(text) < 32 or pieces <= 1:
        return [text]
    size = -(-len(text) // pieces)
    parts = []
    start = 0
    while len(parts) < pieces - 1 and len(text) - start > size:
        end = start + size
        space = text.rfind(" ", start + 1, end)
        if space > start:
            end = space + 1
        parts.append(text[start:end])
        start = end
    parts.append(text[start:])
    return parts


def message_to_events(message: dict[str, Any], text_pieces: int = 4) -> list[dict[str, Any]]:
    """Build a well-formed canonical event sequence that streams a complete Message.

    Text and thinking are split into a few deltas and tool inputs are sent as `input_json_delta`.
    Empty text blocks are skipped. Usage goes on `message_delta` in full, input and cache fields
    included, because Claude Code reads its context meter there.
    """
    usage = {**empty_usage(), **(message.get("usage") or {})}
    start_usage = {**usage, "output_tokens": 0}
    started = {key: value for key, value in message.items() if key not in ("content", "stop_reason", "stop_sequence", "usage")}
    started.update(content=[], stop_reason=None, stop_sequence=None, usage=start_usage)
    events: list[dict[str, Any]] = [{"type": "message_start", "message": started}]

    index = 0
    for block in message.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            if not block.get("text"):
                continue
            events.append({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})
            for part in _split_text(block["text"], text_pieces):
                events.append({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": part}})
        elif kind == "tool_use":
            start = {"type": "tool_use", "id": block.get("id"), "name": block.get("name"), "input": {}}
            events.append({"type": "content_block_start", "index": index, "content_block": start})
            tool_input = block.get("input")
            if isinstance(tool_input, dict) and set(tool_input) == {RAW_ARGUMENTS_KEY}:
                encoded = str(tool_input[RAW_ARGUMENTS_KEY])
            else:
                encoded = orjson.dumps(tool_input if tool_input is not None else {}).decode()
            for part in _split_text(encoded, 2):
                events.append(
                    {"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": part}}
                )
        elif kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            events.append({"type": "content_block_start", "index": index, "content_block": start})
            if block.get("thinking"):
                for part in _split_text(block["thinking"], text_pieces):
                    events.append(
                        {"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": part}}
                    )
            if block.get("signature"):
                events.append(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "signature_delta", "signature": block["signature"]},
                    }
                )
        else:
            # redacted_thinking, server tool blocks and unknown types arrive whole in their start event.
            events.append({"type": "content_block_start", "index": index, "content_block": copy.deepcopy(block)})
        events.append({"type": "content_block_stop", "index": index})
        index += 1

    delta = {"stop_reason": message.get("stop_reason") or "end_turn", "stop_sequence": message.get("stop_sequence")}
    events.append({"type": "message_delta", "delta": delta, "usage": usage})
    events.append({"type": "message_stop"})
    return events
