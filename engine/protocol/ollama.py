"""Translation between the canonical request (Anthropic Messages) and Ollama's native `/api/chat`.

Only the upstream side exists: leangate sends Ollama requests and reads its responses. Ollama streams
NDJSON objects, sends tool calls whole, without ids and with object arguments, and names the
tool of a result instead of giving a call id.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import orjson

from engine.protocol.errors import ProtocolError
from engine.protocol.openai_chat.upstream import function_tools
from engine.protocol.stream_blocks import OpenBlockEvents

logger = logging.getLogger(__name__)


def _new_tool_use_id() -> str:
    return "toolu_" + secrets.token_hex(12)


def _new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _usage(resp: dict[str, Any]) -> dict[str, int]:
    # NOTE: Ollama reports no prompt-cache counts, so the cache fields are always 0.
    return {
        "input_tokens": _int(resp.get("prompt_eval_count")),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": _int(resp.get("eval_count")),
    }


def _stop_reason(done_reason: Any, has_tool_calls: bool) -> str:
    """Map Ollama's `done_reason`. Ollama reports `stop` even after a tool call, so tool calls win."""
    if done_reason == "length":
        return "max_tokens"
    if has_tool_calls:
        return "tool_use"
    return "end_turn"


# ---------------------------------------------------------------------------------------------
# Canonical request -> Ollama request
# ---------------------------------------------------------------------------------------------


def _text_of(content: Any, separator: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [
        block["text"]
        for block in content
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str) and block["text"]
    ]
    return separator.join(texts)


def _base64_image(block: dict[str, Any]) -> str | None:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64" and isinstance(source.get("data"), str):
        return source["data"]
    # Ollama takes raw base64 only; it cannot fetch an image by URL.
    logger.debug("dropped an image that is not inline base64: Ollama cannot fetch URLs")
    return None


def _user_messages(content: Any, tool_names: dict[str, str]) -> list[dict[str, Any]]:
    """Translate a user turn: one `tool` message per tool_result first, then the user's own message."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}] if content else []
    if not isinstance(content, list):
        return []

    messages: list[dict[str, Any]] = []
    texts: list[str] = []
    images: list[str] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "tool_result":
            messages.append(_tool_message(block, tool_names, images))
        elif kind == "text" and block.get("text"):
            texts.append(block["text"])
        elif kind == "image":
            image = _base64_image(block)
            if image is not None:
                images.append(image)
        elif kind == "document" and isinstance(block.get("source"), dict) and block["source"].get("type") == "text":
            texts.append(str(block["source"].get("data", "")))
        else:
            logger.debug("dropped a %r block from a user turn: Ollama has no equivalent", kind)

    if texts or images:
        user: dict[str, Any] = {"role": "user", "content": "\n\n".join(texts)}
        if images:
            user["images"] = images
        messages.append(user)
    return messages


def _tool_message(block: dict[str, Any], tool_names: dict[str, str], images: list[str]) -> dict[str, Any]:
    """Translate a tool_result; its images go to the user message that follows the tool messages."""
    content = block.get("content")
    if isinstance(content, list):
        for item in content:
            if isinstance(item, dict) and item.get("type") == "image":
                image = _base64_image(item)
                if image is not None:
                    images.append(image)
    text = _text_of(content, "\n")
    if block.get("is_error"):
        text = f"Error: {text}" if text else "Error"

    message: dict[str, Any] = {"role": "tool", "content": text}
    name = tool_names.get(str(block.get("tool_use_id")))
    if name:
        message["tool_name"] = name
    return message


def _assistant_message(content: Any) -> dict[str, Any] | None:
    if isinstance(content, str):
        return {"role": "assistant", "content": content} if content else None
    if not isinstance(content, list):
        return None

    texts: list[str] = []
    thinking: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            texts.append(block["text"])
        elif kind == "thinking" and block.get("thinking"):
            thinking.append(block["thinking"])
        elif kind == "tool_use":
            tool_input = block.get("input") if isinstance(block.get("input"), dict) else {}
            tool_calls.append({"function": {"name": block.get("name", ""), "arguments": tool_input}})

    if not texts and not tool_calls:
        return None
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if thinking:
        message["thinking"] = "\n".join(thinking)
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def _think(thinking: Any) -> bool | None:
    if not isinstance(thinking, dict):
        return None
    if thinking.get("type") in ("enabled", "adaptive"):
        return True
    if thinking.get("type") == "disabled":
        return False
    return None


def canonical_to_ollama_request(
    body: dict[str, Any], model: str, *, num_ctx: int | None, stream: bool, send_think: bool = True
) -> dict[str, Any]:
    """Translate a canonical request into an Ollama `/api/chat` request.

    `num_ctx` sets the context window; without it Ollama uses its default (4096 tokens unless the
    server is configured otherwise) and silently cuts longer prompts. `stream` is always sent,
    because Ollama streams when it is absent. A `tool_choice` of `none` sends no tools. Ollama has
    no way to force a tool, so `any` and `tool` choices are dropped. `think` follows the request's
    `thinking` config unless `send_think` is false. Set it false for models that reject `think`,
    because Claude Code requests thinking on most turns.
    """
    tool_names: dict[str, str] = {}
    for turn in body.get("messages") or []:
        if isinstance(turn, dict) and turn.get("role") == "assistant" and isinstance(turn.get("content"), list):
            for block in turn["content"]:
                if isinstance(block, dict) and block.get("type") == "tool_use":
                    tool_names[str(block.get("id"))] = str(block.get("name", ""))

    messages: list[dict[str, Any]] = []
    system = _text_of(body.get("system"), "\n\n")
    if system:
        messages.append({"role": "system", "content": system})
    for turn in body.get("messages") or []:
        if not isinstance(turn, dict):
            continue
        if turn.get("role") == "assistant":
            assistant = _assistant_message(turn.get("content"))
            if assistant is not None:
                messages.append(assistant)
        else:
            messages.extend(_user_messages(turn.get("content"), tool_names))

    request: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
    tool_choice = body.get("tool_choice") if isinstance(body.get("tool_choice"), dict) else {}
    tools = function_tools(body.get("tools"), strict=False)
    if tools and tool_choice.get("type") != "none":
        request["tools"] = tools
        if tool_choice.get("type") in ("any", "tool"):
            logger.debug("dropped tool_choice %r: Ollama cannot force a tool call", tool_choice.get("type"))
    think = _think(body.get("thinking")) if send_think else None
    if think is not None:
        request["think"] = think

    options: dict[str, Any] = {}
    if num_ctx:
        options["num_ctx"] = num_ctx
    if isinstance(body.get("max_tokens"), int):
        options["num_predict"] = body["max_tokens"]
    for key in ("temperature", "top_p", "top_k"):
        if body.get(key) is not None:
            options[key] = body[key]
    if body.get("stop_sequences"):
        options["stop"] = list(body["stop_sequences"])
    if options:
        request["options"] = options
    return request


# ---------------------------------------------------------------------------------------------
# Ollama response -> canonical Message and events
# ---------------------------------------------------------------------------------------------


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error) if error else "upstream error"


def _tool_use_blocks(calls: Any) -> list[dict[str, Any]]:
    blocks = []
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            # Some Ollama versions and models send a JSON string instead of an object.
            try:
                arguments = orjson.loads(arguments) if arguments.strip() else {}
            except orjson.JSONDecodeError:
                arguments = {"_raw_arguments": arguments}
        if not isinstance(arguments, dict):
            arguments = {}
        call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else _new_tool_use_id()
        blocks.append({"type": "tool_use", "id": call_id, "name": str(function.get("name") or ""), "input": arguments})
    return blocks


def ollama_response_to_message(resp: dict[str, Any], model: str) -> dict[str, Any]:
    """Translate a non-streaming `/api/chat` response into an Anthropic Message dict.

    Raises ProtocolError(502) when the response is an `{"error": ...}` object.
    """
    if not isinstance(resp, dict):
        raise ProtocolError("upstream response is not a JSON object", status=502)
    if resp.get("error"):
        raise ProtocolError(f"upstream error: {_error_text(resp['error'])}", status=502)
    message = resp.get("message") if isinstance(resp.get("message"), dict) else {}

    content: list[dict[str, Any]] = []
    thinking = message.get("thinking")
    if isinstance(thinking, str) and thinking:
        content.append({"type": "thinking", "thinking": thinking, "signature": ""})
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    calls = _tool_use_blocks(message.get("tool_calls"))
    content.extend(calls)

    return {
        "id": _new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _stop_reason(resp.get("done_reason"), bool(calls)),
        "stop_sequence": None,
        "usage": _usage(resp),
    }


class OllamaStreamReader(OpenBlockEvents):
    """Turns Ollama NDJSON stream objects into canonical Anthropic stream events.

    Call `feed` for each decoded line and `finish` once at the end of the stream. The final object
    (`done: true`) ends the message with usage. A stream that ends without it, or an
    `{"error": ...}` line, ends with an `error` event.
    """

    def __init__(self, model: str):
        self.model = model
        self._started = False
        self._done = False
        self._next_index = 0
        self._open: str | None = None  # "text" or "thinking"
        self._has_tool_calls = False

    def feed(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        if self._done or not isinstance(obj, dict):
            return []
        events: list[dict[str, Any]] = []
        if obj.get("error"):
            self._close_all(events)
            events.append({"type": "error", "error": {"type": "api_error", "message": _error_text(obj["error"])}})
            self._done = True
            return events

        if not self._started:
            events.append(self._message_start())
            self._started = True

        message = obj.get("message") if isinstance(obj.get("message"), dict) else {}
        thinking = message.get("thinking")
        if isinstance(thinking, str) and thinking:
            self._ensure_open("thinking", events)
            events.append(self._delta({"type": "thinking_delta", "thinking": thinking}))
        text = message.get("content")
        if isinstance(text, str) and text:
            self._ensure_open("text", events)
            events.append(self._delta({"type": "text_delta", "text": text}))
        for block in _tool_use_blocks(message.get("tool_calls")):
            self._emit_tool_use(block, events)

        if obj.get("done") is True:
            self._close_all(events)
            stop_reason = _stop_reason(obj.get("done_reason"), self._has_tool_calls)
            events.append(
                {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": _usage(obj)}
            )
            events.append({"type": "message_stop"})
            self._done = True
        return events

    def finish(self) -> list[dict[str, Any]]:
        """End the stream; if Ollama never sent its `done` object, report the cut with an `error` event."""
        if self._done:
            return []
        self._done = True
        events: list[dict[str, Any]] = []
        self._close_all(events)
        message = "upstream stream ended before the final done object" if self._started else "upstream stream ended before any data"
        events.append({"type": "error", "error": {"type": "api_error", "message": message}})
        return events

    def _message_start(self) -> dict[str, Any]:
        return {
            "type": "message_start",
            "message": {
                "id": _new_message_id(),
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0},
            },
        }

    def _close_all(self, events: list[dict[str, Any]]) -> None:
        if self._open is not None:
            events.append({"type": "content_block_stop", "index": self._next_index - 1})
            self._open = None

    def _emit_tool_use(self, block: dict[str, Any], events: list[dict[str, Any]]) -> None:
        self._close_all(events)
        index = self._next_index
        self._next_index += 1
        self._has_tool_calls = True
        start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        events.append({"type": "content_block_start", "index": index, "content_block": start})
        partial = orjson.dumps(block["input"]).decode()
        events.append({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": partial}})
        events.append({"type": "content_block_stop", "index": index})
