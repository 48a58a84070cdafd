"""Translate a provider's Responses SSE stream into canonical (Anthropic) stream events."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from engine.protocol.responses._common import (
    CUSTOM_TOOL_INPUT_KEY,
    canonical_usage,
    error_code,
    openai_reasoning_signature,
)
from engine.protocol.responses.upstream import stop_reason

logger = logging.getLogger(__name__)

_ERROR_TYPES = {
    "rate_limit_exceeded": "rate_limit_error",
    "insufficient_quota": "billing_error",
    "context_length_exceeded": "invalid_request_error",
    "invalid_prompt": "invalid_request_error",
}


class _Block:
    """The canonical content block that is open: its index, kind and what was streamed into it."""

    def __init__(self, index: int, kind: str, key: tuple[Any, ...]) -> None:
        self.index = index
        self.kind = kind  # text, tool_use, custom_tool_call, thinking
        self.key = key
        self.sent = ""  # for tool blocks: the argument text sent so far


class ResponsesStreamReader:
    """Read Responses stream events one at a time and return the canonical events they make.

    Some providers send tool arguments only in the `.done` events, or send them in deltas and
    again, whole, at the end. The reader sends what the deltas missed and never sends a part
    twice. Canonical blocks never interleave, so an event for another output item closes the
    open block first.
    """

    def __init__(self, model: str) -> None:
        self._model = model
        self._started = False
        self._finished = False
        self._block: _Block | None = None
        self._next_index = 0
        self._has_tool_use = False
        self._items: dict[int, dict[str, Any]] = {}

    @property
    def finished(self) -> bool:
        return self._finished

    def feed(self, event_name: str | None, data: dict[str, Any]) -> list[dict[str, Any]]:
        """Translate one upstream event (its `event:` name and decoded `data:` JSON)."""
        if self._finished or not isinstance(data, dict):
            return []
        kind = data.get("type") or event_name or ""
        if kind in ("response.created", "response.in_progress", "response.queued"):
            return self._start(data.get("response"))
        if kind in ("response.completed", "response.incomplete"):
            return self._finish(data.get("response") or {})
        if kind == "response.failed":
            response = data.get("response") or {}
            return self._fail(response.get("error") or {})
        if kind == "error":
            return self._fail(data.get("error") if isinstance(data.get("error"), dict) else data)

        out = self._start(None)
        output_index = data.get("output_index")
        if kind == "response.output_item.added":
            item = data.get("item") or {}
            self._items[output_index] = item
            if item.get("type") in ("function_call", "custom_tool_call"):
                out += self._open_tool(output_index, item)
        elif kind == "response.output_text.delta":
            out += self._text(output_index, data.get("content_index", 0), data.get("delta") or "")
        elif kind == "response.refusal.delta":
            out += self._text(output_index, data.get("content_index", 0), data.get("delta") or "")
        elif kind == "response.output_text.done":
            out += self._text_done(output_index, data.get("content_index", 0), data.get("text"))
        elif kind in ("response.function_call_arguments.delta", "response.custom_tool_call_input.delta"):
            out += self._tool_delta(output_index, data.get("delta") or "")
        elif kind == "response.function_call_arguments.done":
            out += self._tool_reconcile(output_index, data.get("arguments"))
        elif kind == "response.custom_tool_call_input.done":
            out += self._tool_reconcile(output_index, data.get("input"))
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            out += self._thinking(output_index, data.get("delta") or "")
        elif kind == "response.output_item.done":
            out += self._item_done(output_index, data.get("item") or {})
        return out

    def finish(self) -> list[dict[str, Any]]:
        """Close the stream when the upstream bytes end: an error event if no final event came."""
        if self._finished:
            return []
        return self._fail({"code": "server_error", "message": "the upstream stream ended before response.completed"})

    # --- lifecycle ---------------------------------------------------------------------------

    def _start(self, response: Any) -> list[dict[str, Any]]:
        if self._started:
            return []
        self._started = True
        response = response if isinstance(response, dict) else {}
        message = {
            "id": response.get("id") or "msg_upstream",
            "type": "message",
            "role": "assistant",
            "model": response.get("model") or self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0},
        }
        return [{"type": "message_start", "message": message}]

    def _finish(self, response: dict[str, Any]) -> list[dict[str, Any]]:
        out = self._start(response)
        # Items that only appear in the final object (no item events) are still delivered.
        for index, item in enumerate(response.get("output") or []):
            if isinstance(item, dict) and index not in self._items:
                out += self._item_done(index, item)
        out += self._close()
        reason = stop_reason(response.get("status"), response.get("incomplete_details"), self._has_tool_use)
        self._finished = True
        out.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": None},
                "usage": canonical_usage(response.get("usage")),
            }
        )
        out.append({"type": "message_stop"})
        return out

    def _fail(self, error: dict[str, Any]) -> list[dict[str, Any]]:
        code = str(error.get("code") or error.get("type") or "server_error")
        message = str(error.get("message") or "the upstream model failed")
        self._finished = True
        error_type = _ERROR_TYPES.get(code, "api_error")
        if error_code(None, message) == "context_length_exceeded":
            error_type = "invalid_request_error"
        return [{"type": "error", "error": {"type": error_type, "message": f"upstream {code}: {message}"}}]

    # --- blocks ------------------------------------------------------------------------------

    def _open(self, kind: str, key: tuple[Any, ...], content_block: dict[str, Any]) -> list[dict[str, Any]]:
        out = self._close()
        self._block = _Block(self._next_index, kind, key)
        self._next_index += 1
        return out + [{"type": "content_block_start", "index": self._block.index, "content_block": content_block}]

    def _close(self) -> list[dict[str, Any]]:
        block, self._block = self._block, None
        if block is None:
            return []
        out: list[dict[str, Any]] = []
        if block.kind == "custom_tool_call":
            out.append(_json_delta(block.index, '"}' if block.sent else '{"' + CUSTOM_TOOL_INPUT_KEY + '":""}'))
        return out + [{"type": "content_block_stop", "index": block.index}]

    def _current(self, kind: str, key: tuple[Any, ...]) -> _Block | None:
        block = self._block
        return block if block is not None and block.kind == kind and block.key == key else None

    def _text(self, output_index: Any, content_index: Any, delta: str) -> list[dict[str, Any]]:
        if not delta:
            return []
        key = (output_index, content_index)
        out: list[dict[str, Any]] = []
        block = self._current("text", key)
        if block is None:
            out += self._open("text", key, {"type": "text", "text": ""})
            block = self._block
        block.sent += delta
        out.append({"type": "content_block_delta", "index": block.index, "delta": {"type": "text_delta", "text": delta}})
        return out

    def _text_done(self, output_index: Any, content_index: Any, text: Any) -> list[dict[str, Any]]:
        block = self._current("text", (output_index, content_index))
        sent = block.sent if block else ""
        if not isinstance(text, str) or not text.startswith(sent) or len(text) == len(sent):
            return []
        return self._text(output_index, content_index, text[len(sent) :])

    def _open_tool(self, output_index: Any, item: dict[str, Any]) -> list[dict[str, Any]]:
        kind = "tool_use" if item.get("type") == "function_call" else "custom_tool_call"
        self._has_tool_use = True
        content_block = {"type": "tool_use", "id": item.get("call_id", ""), "name": item.get("name", ""), "input": {}}
        return self._open(kind, (output_index,), content_block)

    def _tool_block(self, output_index: Any) -> _Block | None:
        return self._current("tool_use", (output_index,)) or self._current("custom_tool_call", (output_index,))

    def _tool_delta(self, output_index: Any, delta: str) -> list[dict[str, Any]]:
        block = self._tool_block(output_index)
        if block is None or not delta:
            return []
        return self._send_tool_text(block, delta)

    def _send_tool_text(self, block: _Block, text: str) -> list[dict[str, Any]]:
        if block.kind == "tool_use":
            block.sent += text
            return [_json_delta(block.index, text)]
        # A custom tool's raw text goes out as the `input` string of a JSON object.
        prefix = "" if block.sent else '{"' + CUSTOM_TOOL_INPUT_KEY + '":"'
        block.sent += text
        return [_json_delta(block.index, prefix + orjson.dumps(text).decode()[1:-1])]

    def _tool_reconcile(self, output_index: Any, full: Any) -> list[dict[str, Any]]:
        block = self._tool_block(output_index)
        if block is None or not isinstance(full, str) or full == block.sent:
            return []
        if full.startswith(block.sent):
            return self._send_tool_text(block, full[len(block.sent) :])
        # The deltas disagree with the final text. Sent fragments cannot be taken back.
        logger.warning("upstream tool arguments differ from their deltas at output %s; keeping the deltas", output_index)
        return []

    def _thinking(self, output_index: Any, delta: str) -> list[dict[str, Any]]:
        if not delta:
            return []
        out: list[dict[str, Any]] = []
        block = self._current("thinking", (output_index,))
        if block is None:
            out += self._open("thinking", (output_index,), {"type": "thinking", "thinking": "", "signature": ""})
            block = self._block
        block.sent += delta
        out.append({"type": "content_block_delta", "index": block.index, "delta": {"type": "thinking_delta", "thinking": delta}})
        return out

    def _item_done(self, output_index: Any, item: dict[str, Any]) -> list[dict[str, Any]]:
        kind = item.get("type")
        out: list[dict[str, Any]] = []
        self._items.setdefault(output_index, item)
        if kind == "message":
            for content_index, part in enumerate(item.get("content") or []):
                text = part.get("text") if part.get("type") == "output_text" else part.get("refusal")
                out += self._text_done(output_index, content_index, text)
        elif kind in ("function_call", "custom_tool_call"):
            if self._tool_block(output_index) is None:
                out += self._open_tool(output_index, item)
            field = "arguments" if kind == "function_call" else "input"
            out += self._tool_reconcile(output_index, item.get(field))
        elif kind == "reasoning":
            text = "".join(part.get("text", "") for part in item.get("summary") or [] if isinstance(part, dict))
            block = self._current("thinking", (output_index,))
            sent = block.sent if block else ""
            if text.startswith(sent) and len(text) > len(sent):
                out += self._thinking(output_index, text[len(sent) :])
            encrypted = item.get("encrypted_content")
            if isinstance(encrypted, str) and encrypted:
                if self._current("thinking", (output_index,)) is None:
                    out += self._open("thinking", (output_index,), {"type": "thinking", "thinking": "", "signature": ""})
                signature = openai_reasoning_signature(str(item.get("id") or ""), encrypted)
                delta = {"type": "signature_delta", "signature": signature}
                out.append({"type": "content_block_delta", "index": self._block.index, "delta": delta})
            # NOTE: a reasoning item streamed without encrypted content leaves a thinking block with
            # an empty signature, which no provider accepts back. canonical_to_responses_request
            # sets `include` so that OpenAI sends the encrypted content.
        return out + self._close()


def _json_delta(index: int, partial_json: str) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": partial_json}}
