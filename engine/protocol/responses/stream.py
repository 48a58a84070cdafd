"""Translate a canonical (Anthropic) event stream into Responses API server-sent events."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from engine.protocol.responses._common import (
    custom_tool_input_text,
    error_code,
    incomplete_reason,
    item_id,
    responses_usage,
)
from engine.protocol.responses.answer import (
    message_item,
    output_text_part,
    reasoning_item,
    response_object,
    tool_call_item,
)
from engine.protocol.sse import encode_event

logger = logging.getLogger(__name__)

# An SSE comment: clients skip it, and it keeps idle-timeout proxies and clients from giving up
# while the model thinks. Responses streams have no ping event of their own.
KEEPALIVE = b": ping\n\n"


@dataclass(slots=True)
class _OpenItem:
    """One output item being streamed, made from one canonical content block."""

    kind: str  # text, function_call, custom_tool_call, reasoning, redacted_thinking
    output_index: int
    item_id: str
    block: dict[str, Any]
    chunks: list[str] = field(default_factory=list)
    signature: str = ""
    summary_open: bool = False


class ResponsesStreamWriter:
    """Turn canonical stream events into Responses SSE bytes, one call per upstream event.

    Every stream starts with `response.created` and `response.in_progress` and ends with exactly
    one of `response.completed`, `response.incomplete` or `response.failed`. `close()` after an
    upstream cut emits `response.failed`, so no stream ends without a final event.
    """

    def __init__(self, side: dict[str, Any], response_id: str, created_at: int) -> None:
        self._side = side
        self._response_id = response_id
        self._created_at = created_at
        self._custom_tools = set(side.get("custom_tools") or ())
        self._sequence = 0
        self._started = False
        self._finished = False
        self._model = side.get("model", "")
        self._usage: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self._open: dict[int, _OpenItem] = {}
        self._output: list[dict[str, Any] | None] = []

    @property
    def finished(self) -> bool:
        return self._finished

    def feed(self, event: dict[str, Any]) -> list[bytes]:
        """Translate one canonical event into the SSE messages to send, possibly none."""
        if self._finished or not isinstance(event, dict):
            return []
        out = self._start()
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self._model = message.get("model") or self._model
            self._merge_usage(message.get("usage"))
        elif kind == "content_block_start":
            out += self._block_start(event.get("index"), event.get("content_block") or {})
        elif kind == "content_block_delta":
            out += self._block_delta(event.get("index"), event.get("delta") or {})
        elif kind == "content_block_stop":
            out += self._block_stop(event.get("index"))
        elif kind == "message_delta":
            delta = event.get("delta") or {}
            self._stop_reason = delta.get("stop_reason") or self._stop_reason
            self._merge_usage(event.get("usage"))
        elif kind == "message_stop":
            out += self._complete()
        elif kind == "ping":
            out.append(KEEPALIVE)
        elif kind == "error":
            error = event.get("error") or {}
            message = str(error.get("message") or "upstream error")
            out += self.error(error_code(error.get("type"), message), message)
        return out

    def error(self, code: str | int, message: str) -> list[bytes]:
        """End the stream with `response.failed` carrying `code`, e.g. `rate_limit_exceeded`.

        An int `code` is taken as the HTTP status of the failure and mapped to a Responses code.
        """
        if self._finished:
            return []
        if isinstance(code, int):
            code = error_code(None, message, status=code)
        out = self._start()
        self._finished = True
        response = self._response(status="failed", error={"code": code, "message": message})
        out.append(self._event("response.failed", response=response))
        return out

    def close(self) -> list[bytes]:
        """Finish the stream. Without a final event so far the upstream was cut, so send `response.failed`."""
        if self._finished:
            return []
        return self.error("server_error", "the upstream stream ended before the answer was complete")

    # --- events ------------------------------------------------------------------------------

    def _event(self, event_type: str, **fields: Any) -> bytes:
        event = {"type": event_type, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return encode_event(event)

    def _response(self, *, status: str, error: dict[str, Any] | None = None, reason: str | None = None) -> dict[str, Any]:
        done_items = [item for item in self._output if item is not None]
        usage = responses_usage(self._usage) if self._usage else None
        return response_object(
            self._side,
            self._response_id,
            self._created_at,
            status=status,
            output=done_items,
            usage=usage,
            model=self._model,
            incomplete_reason=reason,
            error=error,
        )

    def _start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        response = self._response(status="in_progress")
        response["usage"] = None
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    def _complete(self) -> list[bytes]:
        out: list[bytes] = []
        for index in sorted(self._open):
            out += self._block_stop(index)
        reason = incomplete_reason(self._stop_reason)
        status = "incomplete" if reason else "completed"
        self._finished = True
        out.append(self._event(f"response.{status}", response=self._response(status=status, reason=reason)))
        return out

    def _merge_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._usage.update({key: value for key, value in usage.items() if value is not None})

    # --- content blocks ----------------------------------------------------------------------

    def _block_start(self, index: Any, block: dict[str, Any]) -> list[bytes]:
        if not isinstance(index, int) or index in self._open:
            logger.warning("ignoring content_block_start with an invalid or repeated index %r", index)
            return []
        kind = block.get("type")
        output_index = len(self._output)
        if kind == "text":
            item = _OpenItem("text", output_index, item_id("msg", self._response_id, output_index), block)
            added = message_item(item.item_id, [], "in_progress")
        elif kind == "tool_use":
            added = tool_call_item({**block, "input": None}, self._custom_tools, self._response_id, output_index, "in_progress")
            if added["type"] == "custom_tool_call":
                added["input"] = ""
            else:
                added["arguments"] = ""
            item = _OpenItem(added["type"], output_index, added["id"], block)
        elif kind in ("thinking", "redacted_thinking"):
            item = _OpenItem(kind, output_index, item_id("rs", self._response_id, output_index), block)
            added = {"id": item.item_id, "type": "reasoning", "summary": []}
            item.signature = block.get("signature") or ""
        else:
            # Server tool blocks have no Responses item; their deltas and stop are skipped.
            return []

        self._open[index] = item
        self._output.append(None)
        out = [self._event("response.output_item.added", output_index=output_index, item=added)]
        if item.kind == "text":
            out.append(
                self._event(
                    "response.content_part.added",
                    item_id=item.item_id,
                    output_index=output_index,
                    content_index=0,
                    part=output_text_part(""),
                )
            )
            if block.get("text"):
                out += self._text_delta(item, block["text"])
        elif item.kind == "thinking" and block.get("thinking"):
            out += self._thinking_delta(item, block["thinking"])
        return out

    def _block_delta(self, index: Any, delta: dict[str, Any]) -> list[bytes]:
        item = self._open.get(index) if isinstance(index, int) else None
        if item is None:
            return []
        kind = delta.get("type")
        if kind == "text_delta" and item.kind == "text":
            return self._text_delta(item, delta.get("text") or "")
        if kind == "input_json_delta" and item.kind == "function_call":
            fragment = delta.get("partial_json") or ""
            if not fragment:
                return []
            item.chunks.append(fragment)
            return [self._event("response.function_call_arguments.delta", item_id=item.item_id, output_index=item.output_index, delta=fragment)]
        if kind == "input_json_delta" and item.kind == "custom_tool_call":
            # NOTE: the freeform input is a JSON string inside the arguments; it is sent whole at
            # the block's end instead of decoding partial JSON.
            item.chunks.append(delta.get("partial_json") or "")
            return []
        if kind == "thinking_delta" and item.kind == "thinking":
            return self._thinking_delta(item, delta.get("thinking") or "")
        if kind == "signature_delta" and item.kind == "thinking":
            item.signature += delta.get("signature") or ""
        return []

    def _text_delta(self, item: _OpenItem, text: str) -> list[bytes]:
        if not text:
            return []
        item.chunks.append(text)
        return [
            self._event(
                "response.output_text.delta",
                item_id=item.item_id,
                output_index=item.output_index,
                content_index=0,
                delta=text,
                logprobs=[],
            )
        ]

    def _thinking_delta(self, item: _OpenItem, text: str) -> list[bytes]:
        if not text:
            return []
        out: list[bytes] = []
        if not item.summary_open:
            item.summary_open = True
            out.append(
                self._event(
                    "response.reasoning_summary_part.added",
                    item_id=item.item_id,
                    output_index=item.output_index,
                    summary_index=0,
                    part={"type": "summary_text", "text": ""},
                )
            )
        item.chunks.append(text)
        out.append(
            self._event(
                "response.reasoning_summary_text.delta",
                item_id=item.item_id,
                output_index=item.output_index,
                summary_index=0,
                delta=text,
            )
        )
        return out

    def _block_stop(self, index: Any) -> list[bytes]:
        item = self._open.pop(index, None) if isinstance(index, int) else None
        if item is None:
            return []
        common = {"item_id": item.item_id, "output_index": item.output_index}
        out: list[bytes] = []
        if item.kind == "text":
            text = "".join(item.chunks)
            part = output_text_part(text)
            out.append(self._event("response.output_text.done", **common, content_index=0, text=text, logprobs=[]))
            out.append(self._event("response.content_part.done", **common, content_index=0, part=part))
            done = message_item(item.item_id, [part], "completed")
        elif item.kind in ("function_call", "custom_tool_call"):
            done, out = self._tool_done(item, common)
        else:
            text = "".join(item.chunks)
            if item.summary_open:
                out.append(self._event("response.reasoning_summary_text.done", **common, summary_index=0, text=text))
                part = {"type": "summary_text", "text": text}
                out.append(self._event("response.reasoning_summary_part.done", **common, summary_index=0, part=part))
            block = {**item.block, "thinking": text, "signature": item.signature}
            done = reasoning_item(block, item.item_id)

        self._output[item.output_index] = done
        out.append(self._event("response.output_item.done", output_index=item.output_index, item=done))
        return out

    def _tool_done(self, item: _OpenItem, common: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
        arguments = "".join(item.chunks)
        if not arguments:
            # A replayed or cached block may carry its whole input in content_block_start.
            start_input = item.block.get("input")
            arguments = orjson.dumps(start_input).decode() if start_input else "{}"
        if item.kind == "function_call":
            done = tool_call_item({**item.block, "input": None}, self._custom_tools, self._response_id, item.output_index)
            done["arguments"] = arguments
            return done, [self._event("response.function_call_arguments.done", **common, arguments=arguments)]

        try:
            tool_input: Any = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            tool_input = arguments
        text = custom_tool_input_text(tool_input)
        done = tool_call_item({**item.block, "input": tool_input}, self._custom_tools, self._response_id, item.output_index)
        out = []
        if text:
            out.append(self._event("response.custom_tool_call_input.delta", **common, delta=text))
        out.append(self._event("response.custom_tool_call_input.done", **common, input=text))
        return done, out
