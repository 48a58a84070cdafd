"""Upstream side: Chat Completions stream chunks -> canonical Anthropic events."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from engine.protocol.openai_chat._common import (
    message_id,
    new_tool_use_id,
    openai_usage_to_anthropic,
    reasoning_text,
    stop_reason_from_finish,
)
from engine.protocol.stream_blocks import OpenBlockEvents

logger = logging.getLogger(__name__)


def upstream_error_event(error: Any) -> dict[str, Any]:
    """Build an Anthropic `error` event from an OpenAI-style `error` value (object or string)."""
    if isinstance(error, dict):
        message = str(error.get("message") or "upstream error")
        hint = f"{error.get('type', '')} {error.get('code', '')}".lower()
    else:
        message = str(error) if error else "upstream error"
        hint = message.lower()

    if "rate_limit" in hint or "quota" in hint:
        error_type = "rate_limit_error"
    elif "overloaded" in hint:
        error_type = "overloaded_error"
    elif "timeout" in hint:
        error_type = "timeout_error"
    else:
        error_type = "api_error"
    return {"type": "error", "error": {"type": error_type, "message": message}}


class _ToolCall:
    """A tool call being assembled from stream fragments."""

    __slots__ = ("upstream_index", "upstream_id", "id", "name", "arguments", "block_index", "emitted", "closed")

    def __init__(self, upstream_index: int | None, upstream_id: str | None):
        self.upstream_index = upstream_index
        self.upstream_id = upstream_id
        self.id = upstream_id  # the id sent to the client; made up if the block starts before an id arrives
        self.name = ""
        self.arguments: list[str] = []
        self.block_index: int | None = None
        self.emitted = 0  # how many argument fragments were already sent as input_json_delta
        self.closed = False


class ChatStreamReader(OpenBlockEvents):
    """Turns Chat Completions stream chunks (decoded JSON) into canonical Anthropic stream events.

    Call `feed` for every `data:` chunk except `[DONE]`, then `finish` once when the stream ends.
    Text and reasoning stream live, and so does a tool call while it is the current block. Anthropic
    content blocks never interleave. So a call that starts while the previous call's arguments are
    still incomplete JSON is buffered and sent whole after that call. Usage is reported once, on
    `message_delta`, with the input and cache fields repeated there.
    """

    def __init__(self, model: str):
        self.model = model
        self._started = False
        self._done = False
        self._next_index = 0
        self._open: str | None = None  # "text", "thinking" or "tool_use"
        self._calls: list[_ToolCall] = []
        self._finish_reason: str | None = None
        self._usage: dict[str, Any] | None = None

    # -- public API -----------------------------------------------------------------------

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        if self._done or not isinstance(chunk, dict):
            return []
        events: list[dict[str, Any]] = []

        if "error" in chunk and chunk["error"]:
            self._close_all(events)
            events.append(upstream_error_event(chunk["error"]))
            self._done = True
            return events

        if not self._started:
            events.append(self._message_start(chunk.get("id")))
            self._started = True

        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]

        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return events
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._on_delta(delta, events)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
                self._close_all(events)
        return events

    def finish(self) -> list[dict[str, Any]]:
        """Close the message; when the upstream never sent a finish_reason, end with an `error` event."""
        if self._done:
            return []
        self._done = True
        events: list[dict[str, Any]] = []
        if not self._started:
            events.append(
                {"type": "error", "error": {"type": "api_error", "message": "upstream stream ended before any data"}}
            )
            return events

        self._close_all(events)
        if self._finish_reason is None:
            events.append(
                {
                    "type": "error",
                    "error": {"type": "api_error", "message": "upstream stream ended without a finish_reason"},
                }
            )
            return events

        has_tool_calls = any(call.block_index is not None for call in self._calls)
        usage = openai_usage_to_anthropic(self._usage)
        events.append(
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": stop_reason_from_finish(self._finish_reason, has_tool_calls),
                    "stop_sequence": None,
                },
                "usage": usage,
            }
        )
        events.append({"type": "message_stop"})
        return events

    # -- deltas ---------------------------------------------------------------------------

    def _message_start(self, upstream_id: Any) -> dict[str, Any]:
        return {
            "type": "message_start",
            "message": {
                "id": message_id(upstream_id),
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 0,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 0,
                },
            },
        }

    def _on_delta(self, delta: dict[str, Any], events: list[dict[str, Any]]) -> None:
        reasoning = reasoning_text(delta)
        if reasoning:
            self._ensure_open("thinking", events)
            events.append(self._delta({"type": "thinking_delta", "thinking": reasoning}))

        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                self._ensure_open("text", events)
                events.append(self._delta({"type": "text_delta", "text": text}))

        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for fragment in calls:
                if isinstance(fragment, dict):
                    self._on_tool_fragment(fragment, events)
        elif isinstance(delta.get("function_call"), dict):
            self._on_tool_fragment({"index": 0, "function": delta["function_call"]}, events)

    def _close_open_block(self, events: list[dict[str, Any]]) -> None:
        if self._open is None:
            return
        if self._open == "tool_use":
            current = self._current_call()
            if current is not None:
                self._close_call(current, events)
        else:
            events.append({"type": "content_block_stop", "index": self._next_index - 1})
        self._open = None

    def _close_all(self, events: list[dict[str, Any]]) -> None:
        """Close the open block, then send every buffered tool call as a whole block."""
        self._close_open_block(events)
        for call in self._calls:
            if not call.closed:
                self._open_call(call, events)
                self._close_call(call, events)
        self._open = None

    # -- tool calls -----------------------------------------------------------------------

    def _current_call(self) -> _ToolCall | None:
        for call in self._calls:
            if call.block_index is not None and not call.closed:
                return call
        return None

    def _find_call(self, index: Any, call_id: Any) -> _ToolCall:
        """Find the call a fragment belongs to, tolerating missing, repeated or shared indexes."""
        index = index if isinstance(index, int) and not isinstance(index, bool) else None
        call_id = call_id if isinstance(call_id, str) and call_id else None

        if call_id is not None:
            for call in self._calls:
                if call.upstream_id == call_id:
                    return call
            # An id seen for the first time: either the late id of a call already started at this
            # index, or a new call (some servers give every parallel call index 0).
            for call in reversed(self._calls):
                if index is not None and call.upstream_index == index and call.upstream_id is None and not call.closed:
                    call.upstream_id = call_id
                    if call.block_index is None:
                        call.id = call_id
                    return call
        elif index is not None:
            for call in reversed(self._calls):
                if call.upstream_index == index:
                    return call
        elif self._calls:
            return self._calls[-1]

        call = _ToolCall(index, call_id)
        self._calls.append(call)
        return call

    def _on_tool_fragment(self, fragment: dict[str, Any], events: list[dict[str, Any]]) -> None:
        function = fragment.get("function") if isinstance(fragment.get("function"), dict) else {}
        call = self._find_call(fragment.get("index"), fragment.get("id"))
        if not call.name and isinstance(function.get("name"), str):
            call.name = function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, dict):
            arguments = orjson.dumps(arguments).decode()

        if call.closed:
            if isinstance(arguments, str) and arguments.strip():
                logger.warning("dropped %d characters of arguments for a tool call that was already closed", len(arguments))
            return
        if isinstance(arguments, str) and arguments and not self._is_repeat(call, arguments):
            call.arguments.append(arguments)

        current = self._current_call()
        if current is None and self._open in ("text", "thinking"):
            self._close_open_block(events)
        if current is not None and current is not call and self._is_complete(current):
            self._close_call(current, events)
            self._open = None
            current = None
        if current is None and call.name:
            self._open_call(call, events)
            current = call
        if current is call:
            self._flush_arguments(call, events)

    def _is_repeat(self, call: _ToolCall, arguments: str) -> bool:
        """Detect a server that sends a call's whole arguments again after streaming them."""
        # Only a fragment that looks like a whole JSON object can be a repeat; checking just those
        # keeps long argument streams linear.
        stripped = arguments.strip()
        if not call.arguments or not (stripped.startswith("{") and stripped.endswith("}")):
            return False
        if not self._is_complete(call):
            return False
        try:
            repeated = orjson.loads(arguments) == orjson.loads("".join(call.arguments))
        except orjson.JSONDecodeError:
            return False
        if not repeated:
            logger.warning("dropped a second, different arguments value for tool call %s", call.id)
        return True

    @staticmethod
    def _is_complete(call: _ToolCall) -> bool:
        text = "".join(call.arguments)
        if not text.strip():
            return False
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError:
            return False
        return True

    def _open_call(self, call: _ToolCall, events: list[dict[str, Any]]) -> None:
        if call.block_index is not None:
            return
        if call.id is None:
            call.id = new_tool_use_id()
        call.block_index = self._next_index
        self._next_index += 1
        self._open = "tool_use"
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        events.append({"type": "content_block_start", "index": call.block_index, "content_block": block})

    def _flush_arguments(self, call: _ToolCall, events: list[dict[str, Any]]) -> None:
        for fragment in call.arguments[call.emitted :]:
            events.append(
                {
                    "type": "content_block_delta",
                    "index": call.block_index,
                    "delta": {"type": "input_json_delta", "partial_json": fragment},
                }
            )
        call.emitted = len(call.arguments)

    def _close_call(self, call: _ToolCall, events: list[dict[str, Any]]) -> None:
        if call.block_index is None:
            self._open_call(call, events)
        self._flush_arguments(call, events)
        if not "".join(call.arguments).strip():
            # A call without arguments: send `{}` so that clients parsing the joined fragments get an object.
            events.append(
                {
                    "type": "content_block_delta",
                    "index": call.block_index,
                    "delta": {"type": "input_json_delta", "partial_json": "{}"},
                }
            )
        events.append({"type": "content_block_stop", "index": call.block_index})
        call.closed = True
