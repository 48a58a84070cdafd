"""Client side: canonical Anthropic events -> Chat Completions stream chunks."""

from __future__ import annotations

from typing import Any

from engine.protocol.errors import openai_error_body, status_for_anthropic_error_type
from engine.protocol.openai_chat._common import anthropic_usage_to_openai, finish_reason_from_stop, format_arguments
from engine.protocol.sse import encode_data


class ChatStreamWriter:
    """Turns canonical stream events into Chat Completions `data:` chunks for a client.

    The first chunk carries `role: assistant`. A tool call's first fragment carries its index, id,
    type and name, and later fragments only the index and an `arguments` piece. After
    `message_stop` come the chunk with `finish_reason`, the usage chunk with `choices: []` (when
    the client asked for `include_usage`) and `data: [DONE]`. Events without a Chat equivalent
    (ping, signature deltas, server tool blocks) produce nothing.
    """

    def __init__(self, model: str, response_id: str, created: int, include_usage: bool):
        self.model = model
        self.response_id = response_id
        self.created = created
        self.include_usage = include_usage
        self._usage: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self._role_sent = False
        self._done = False
        self._tool_count = 0
        self._blocks: dict[int, dict[str, Any]] = {}  # open blocks by Anthropic index

    def feed(self, event: dict[str, Any]) -> list[bytes]:
        if self._done or not isinstance(event, dict):
            return []
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") if isinstance(event.get("message"), dict) else {}
            if isinstance(message.get("usage"), dict):
                self._usage.update(message["usage"])
            return self._ensure_role()
        if kind == "content_block_start":
            return self._on_block_start(event)
        if kind == "content_block_delta":
            return self._on_block_delta(event)
        if kind == "content_block_stop":
            return self._on_block_stop(event)
        if kind == "message_delta":
            delta = event.get("delta") if isinstance(event.get("delta"), dict) else {}
            self._stop_reason = delta.get("stop_reason") or self._stop_reason
            if isinstance(event.get("usage"), dict):
                self._usage.update(event["usage"])
            return []
        if kind == "message_stop":
            return self._on_message_stop()
        if kind == "error":
            error = event.get("error") if isinstance(event.get("error"), dict) else {}
            status = status_for_anthropic_error_type(error.get("type"))
            return self.error(status, str(error.get("message") or "upstream error"))
        return []

    def error(self, status: int, message: str) -> list[bytes]:
        """Encode a mid-stream error as `data: {"error": {...}}`; the stream ends after it."""
        self._done = True
        return [encode_data(openai_error_body(status, message))]

    def close(self) -> list[bytes]:
        """End a stream that stopped before `message_stop` with an error chunk."""
        if self._done:
            return []
        return self.error(502, "upstream stream ended before the message was complete")

    # -- helpers --------------------------------------------------------------------------

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.response_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.include_usage:
            chunk["usage"] = None
        return encode_data(chunk)

    def _ensure_role(self) -> list[bytes]:
        if self._role_sent:
            return []
        self._role_sent = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def _on_block_start(self, event: dict[str, Any]) -> list[bytes]:
        block = event.get("content_block") if isinstance(event.get("content_block"), dict) else {}
        out = self._ensure_role()
        state: dict[str, Any] = {"type": block.get("type")}
        self._blocks[event.get("index", -1)] = state
        if block.get("type") == "text" and block.get("text"):
            out.append(self._chunk({"content": block["text"]}))
        elif block.get("type") == "thinking" and block.get("thinking"):
            out.append(self._chunk({"reasoning_content": block["thinking"]}))
        elif block.get("type") == "tool_use":
            state["tool_index"] = self._tool_count
            state["arguments_sent"] = False
            state["initial_input"] = block.get("input")
            self._tool_count += 1
            call = {
                "index": state["tool_index"],
                "id": block.get("id", ""),
                "type": "function",
                "function": {"name": block.get("name", ""), "arguments": ""},
            }
            out.append(self._chunk({"tool_calls": [call]}))
        return out

    def _on_block_delta(self, event: dict[str, Any]) -> list[bytes]:
        delta = event.get("delta") if isinstance(event.get("delta"), dict) else {}
        state = self._blocks.get(event.get("index", -1), {})
        kind = delta.get("type")
        out = self._ensure_role()
        if kind == "text_delta" and delta.get("text"):
            out.append(self._chunk({"content": delta["text"]}))
        elif kind == "thinking_delta" and delta.get("thinking"):
            out.append(self._chunk({"reasoning_content": delta["thinking"]}))
        elif kind == "input_json_delta" and delta.get("partial_json") and "tool_index" in state:
            state["arguments_sent"] = True
            fragment = {"index": state["tool_index"], "function": {"arguments": delta["partial_json"]}}
            out.append(self._chunk({"tool_calls": [fragment]}))
        return out

    def _on_block_stop(self, event: dict[str, Any]) -> list[bytes]:
        state = self._blocks.pop(event.get("index", -1), {})
        if "tool_index" not in state or state["arguments_sent"]:
            return []
        # A tool_use block that carried its input whole in content_block_start.
        arguments = format_arguments(state["initial_input"] or {})
        fragment = {"index": state["tool_index"], "function": {"arguments": arguments}}
        return [self._chunk({"tool_calls": [fragment]})]

    def _on_message_stop(self) -> list[bytes]:
        out = self._ensure_role()
        finish_reason = finish_reason_from_stop(self._stop_reason)
        if self._tool_count and finish_reason == "stop":
            finish_reason = "tool_calls"
        out.append(self._chunk({}, finish_reason))
        if self.include_usage:
            usage_chunk = {
                "id": self.response_id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": anthropic_usage_to_openai(self._usage),
            }
            out.append(encode_data(usage_chunk))
        out.append(encode_data("[DONE]"))
        self._done = True
        return out
