"""Translation between the canonical request (Anthropic Messages) and OpenAI Chat Completions.

Upstream side: `canonical_to_chat_request`, `chat_response_to_message` and `ChatStreamReader` let
leangate talk Chat Completions to OpenAI, Azure OpenAI, Moonshot, vLLM and similar providers.
Client side: `chat_request_to_canonical`, `message_to_chat_response` and `ChatStreamWriter` serve
agents that talk Chat Completions to leangate (Aider, Cline, Cursor).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import orjson

from engine.protocol.errors import ProtocolError

logger = logging.getLogger(__name__)

# Chat Completions accepts at most four stop strings.
MAX_STOP_SEQUENCES = 4

# Sent as `reasoning_content` when a provider requires it on an assistant message that has none.
# Moonshot's Kimi K2.6 rejects an empty string as missing, so the placeholder is not empty.
REASONING_PLACEHOLDER = "(no reasoning recorded)"

_FINISH_TO_STOP_REASON = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

_STOP_REASON_TO_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def new_tool_use_id() -> str:
    """Make an Anthropic-style tool-use id for a tool call that arrived without one."""
    return "toolu_" + secrets.token_hex(12)


def stop_reason_from_finish(finish_reason: str | None, has_tool_calls: bool) -> str:
    """Map an OpenAI finish_reason to an Anthropic stop_reason.

    Several providers report `stop` after emitting tool calls, so the presence of tool calls wins
    over the reported reason, except `length`, which means the call may be truncated.
    """
    if finish_reason == "length":
        return "max_tokens"
    if has_tool_calls:
        return "tool_use"
    return _FINISH_TO_STOP_REASON.get(finish_reason or "stop", "end_turn")


def finish_reason_from_stop(stop_reason: str | None) -> str:
    """Map an Anthropic stop_reason to an OpenAI finish_reason (unknown values map to `stop`)."""
    return _STOP_REASON_TO_FINISH.get(stop_reason or "end_turn", "stop")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def openai_usage_to_anthropic(usage: Any) -> dict[str, int]:
    """Convert OpenAI usage (prompt tokens include cached ones) to Anthropic usage (they do not).

    The cached count is read from `prompt_tokens_details.cached_tokens`, or from DeepSeek's
    `prompt_cache_hit_tokens` or Moonshot's top-level `cached_tokens` when that is absent.
    """
    if not isinstance(usage, dict):
        usage = {}
    details = usage.get("prompt_tokens_details")
    if not isinstance(details, dict):
        details = {}

    prompt = _int(usage.get("prompt_tokens"))
    cached = _int(details.get("cached_tokens")) or _int(usage.get("prompt_cache_hit_tokens"))
    cached = cached or _int(usage.get("cached_tokens"))
    cache_write = _int(details.get("cache_write_tokens"))
    cached = min(cached, prompt)
    cache_write = min(cache_write, prompt - cached)
    return {
        "input_tokens": prompt - cached - cache_write,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cached,
        "output_tokens": _int(usage.get("completion_tokens")),
    }


def anthropic_usage_to_openai(usage: Any) -> dict[str, Any]:
    """Convert Anthropic usage to OpenAI usage, where prompt_tokens includes cached tokens."""
    if not isinstance(usage, dict):
        usage = {}
    cache_read = _int(usage.get("cache_read_input_tokens"))
    prompt = _int(usage.get("input_tokens")) + cache_read + _int(usage.get("cache_creation_input_tokens"))
    completion = _int(usage.get("output_tokens"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }


def _parse_arguments(arguments: Any) -> dict[str, Any]:
    """Parse a tool call's `arguments` from an upstream model without ever raising.

    Models sometimes emit invalid JSON. The raw text is kept under `_invalid_json_arguments`, so the
    agent's tool reports a visible input error instead of running with silently empty input.
    """
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        logger.warning("upstream tool call arguments are not valid JSON (%d characters)", len(arguments))
        return {"_invalid_json_arguments": arguments}
    if not isinstance(parsed, dict):
        return {"_invalid_json_arguments": arguments}
    return parsed


# ---------------------------------------------------------------------------------------------
# Upstream side: canonical request -> Chat Completions request
# ---------------------------------------------------------------------------------------------


def _text_of_blocks(content: Any, separator: str = "\n") -> str:
    """Join the text of a string or a list of text blocks; other block types are skipped."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [
        block["text"]
        for block in content
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
    ]
    return separator.join(text for text in texts if text)


def _image_part(block: dict[str, Any]) -> dict[str, Any] | None:
    source = block.get("source")
    if not isinstance(source, dict):
        return None
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif source.get("type") == "url":
        url = source.get("url", "")
    else:
        return None
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(block: dict[str, Any]) -> dict[str, Any] | None:
    source = block.get("source")
    if not isinstance(source, dict):
        return None
    if source.get("type") == "text":
        return {"type": "text", "text": source.get("data", "")}
    if source.get("type") == "base64":
        file = {"file_data": f"data:{source.get('media_type', 'application/pdf')};base64,{source.get('data', '')}"}
        if isinstance(block.get("title"), str):
            file["filename"] = block["title"]
        return {"type": "file", "file": file}
    logger.debug("dropped a document block with source type %r: Chat Completions has no equivalent", source.get("type"))
    return None


def _user_parts(blocks: list[Any]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        part = None
        if kind == "text":
            if block.get("text"):
                part = {"type": "text", "text": block["text"]}
        elif kind == "image":
            part = _image_part(block)
        elif kind == "document":
            part = _document_part(block)
        else:
            logger.debug("dropped a %r block from a user turn: Chat Completions has no equivalent", kind)
        if part is not None:
            parts.append(part)
    return parts


def _user_message(parts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Build one user message; text-only content becomes a plain string, which every backend accepts."""
    if not parts:
        return None
    if all(part["type"] == "text" for part in parts):
        return {"role": "user", "content": "\n\n".join(part["text"] for part in parts)}
    return {"role": "user", "content": parts}


def _tool_result_messages(block: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Translate a tool_result block into a `tool` message plus image parts for a later user message.

    Chat Completions tool messages carry text only, so images in a result move to the user message
    that follows the tool messages. Chat has no error flag, so `is_error` becomes an `Error:` prefix.
    """
    content = block.get("content")
    images: list[dict[str, Any]] = []
    if isinstance(content, list):
        texts = []
        for item in content:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "text" and item.get("text"):
                texts.append(item["text"])
            elif item.get("type") in ("image", "document"):
                part = _image_part(item) if item.get("type") == "image" else _document_part(item)
                if part is not None:
                    images.append(part)
        text = "\n".join(texts)
    elif isinstance(content, str):
        text = content
    else:
        text = ""

    if block.get("is_error"):
        text = f"Error: {text}" if text else "Error"
    message = {"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": text}
    return message, images


def _translate_user_turn(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}] if content else []
    if not isinstance(content, list):
        return []

    messages: list[dict[str, Any]] = []
    moved_images: list[dict[str, Any]] = []
    others: list[Any] = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            tool_message, images = _tool_result_messages(block)
            messages.append(tool_message)
            moved_images.extend(images)
        else:
            others.append(block)

    # Tool messages must directly follow the assistant's tool calls, so the rest of the turn
    # (images moved out of results first, then the user's own blocks) comes after all of them.
    user = _user_message(moved_images + _user_parts(others))
    if user is not None:
        messages.append(user)
    return messages


def _translate_assistant_turn(content: Any, reasoning_content: bool) -> dict[str, Any] | None:
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
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            function = {"name": block.get("name", ""), "arguments": arguments}
            tool_calls.append({"id": block.get("id", ""), "type": "function", "function": function})
        elif kind == "thinking" and block.get("thinking"):
            thinking.append(block["thinking"])
        elif kind not in ("thinking", "redacted_thinking"):
            logger.debug("dropped a %r block from an assistant turn: Chat Completions has no equivalent", kind)

    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning_content and (thinking or tool_calls):
        message["reasoning_content"] = "\n".join(thinking) or REASONING_PLACEHOLDER
    if message["content"] is None and not tool_calls:
        return None
    return message


def _translate_tools(tools: Any) -> list[dict[str, Any]]:
    translated = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        if "input_schema" not in tool and tool.get("type") not in (None, "custom"):
            logger.debug("dropped server tool %r (type %r): it has no function form", tool.get("name"), tool.get("type"))
            continue
        function: dict[str, Any] = {"name": tool.get("name", "")}
        if tool.get("description"):
            function["description"] = tool["description"]
        function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        translated.append({"type": "function", "function": function})
    return translated


def _translate_tool_choice(choice: Any, tool_names: set[str]) -> str | dict[str, Any] | None:
    if not isinstance(choice, dict):
        return None
    kind = choice.get("type")
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool":
        name = choice.get("name")
        if name in tool_names:
            return {"type": "function", "function": {"name": name}}
        logger.debug("dropped tool_choice for %r: that tool is not sent upstream", name)
    return None


def canonical_to_chat_request(
    body: dict[str, Any],
    model: str,
    *,
    max_output_tokens: int | None,
    reasoning_content: bool = False,
    use_max_completion_tokens: bool = False,
) -> dict[str, Any]:
    """Translate a canonical (Anthropic Messages) request into a Chat Completions request.

    The output is deterministic: the same body gives the same keys in the same order, so that a
    provider's automatic prefix caching keeps hitting. `max_tokens` is clamped to
    `max_output_tokens` when that is set. DeepSeek and Moonshot require `reasoning_content` on
    assistant messages, so with `reasoning_content=True` the thinking text is echoed there, and
    tool-call messages without thinking get a placeholder. Otherwise thinking blocks are dropped.
    `cache_control` markers, server tools and unknown top-level fields are always dropped.
    """
    messages: list[dict[str, Any]] = []
    system = _text_of_blocks(body.get("system"), separator="\n\n")
    if system:
        messages.append({"role": "system", "content": system})

    for turn in body.get("messages") or []:
        if not isinstance(turn, dict):
            continue
        if turn.get("role") == "assistant":
            assistant = _translate_assistant_turn(turn.get("content"), reasoning_content)
            if assistant is not None:
                messages.append(assistant)
        else:
            messages.extend(_translate_user_turn(turn.get("content")))

    request: dict[str, Any] = {"model": model, "messages": messages}

    tools = _translate_tools(body.get("tools"))
    if tools:
        request["tools"] = tools
        choice = body.get("tool_choice")
        tool_choice = _translate_tool_choice(choice, {tool["function"]["name"] for tool in tools})
        if tool_choice is not None:
            request["tool_choice"] = tool_choice
        if isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True:
            request["parallel_tool_calls"] = False

    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int):
        if max_output_tokens is not None and max_tokens > max_output_tokens:
            max_tokens = max_output_tokens
        request["max_completion_tokens" if use_max_completion_tokens else "max_tokens"] = max_tokens

    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            request[key] = body[key]

    stop = body.get("stop_sequences")
    if isinstance(stop, list) and stop:
        if len(stop) > MAX_STOP_SEQUENCES:
            # NOTE: the extra stop strings are lost; Chat Completions rejects more than four.
            logger.debug("sending the first %d of %d stop sequences upstream", MAX_STOP_SEQUENCES, len(stop))
        request["stop"] = stop[:MAX_STOP_SEQUENCES]

    if body.get("stream"):
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    return request


# ---------------------------------------------------------------------------------------------
# Upstream side: Chat Completions response -> canonical Message
# ---------------------------------------------------------------------------------------------


def _message_id(upstream_id: Any) -> str:
    if isinstance(upstream_id, str) and upstream_id:
        return upstream_id if upstream_id.startswith("msg_") else "msg_" + upstream_id
    return "msg_" + secrets.token_hex(12)


def _reasoning_text(message: dict[str, Any]) -> str:
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def chat_response_to_message(resp: dict[str, Any], model: str) -> dict[str, Any]:
    """Translate a non-streaming Chat Completions response into an Anthropic Message dict.

    Only the first choice is read. A response without choices gives an empty `end_turn` message.
    A finish_reason of `stop` that comes with tool calls becomes `tool_use`.
    """
    choices = resp.get("choices") if isinstance(resp, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}

    content: list[dict[str, Any]] = []
    reasoning = _reasoning_text(message)
    if reasoning:
        # NOTE: Chat providers send no signature, so this block cannot be replayed to Anthropic.
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})

    text = message.get("content")
    refusal = message.get("refusal")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    elif isinstance(refusal, str) and refusal:
        content.append({"type": "text", "text": refusal})

    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        calls = []
    legacy_call = message.get("function_call")
    if isinstance(legacy_call, dict):
        calls = [*calls, {"function": legacy_call}]
    for call in calls:
        if not isinstance(call, dict):
            continue
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or new_tool_use_id(),
                "name": function.get("name") or "",
                "input": _parse_arguments(function.get("arguments")),
            }
        )

    has_tool_calls = any(block["type"] == "tool_use" for block in content)
    stop_reason = stop_reason_from_finish(choice.get("finish_reason"), has_tool_calls)
    if refusal and not text and not has_tool_calls:
        stop_reason = "refusal"
    return {
        "id": _message_id(resp.get("id") if isinstance(resp, dict) else None),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": openai_usage_to_anthropic(resp.get("usage") if isinstance(resp, dict) else None),
    }


# ---------------------------------------------------------------------------------------------
# Upstream side: Chat Completions stream chunks -> canonical events
# ---------------------------------------------------------------------------------------------


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

    __slots__ = ("upstream_index", "id", "name", "arguments", "block_index", "emitted", "closed")

    def __init__(self, upstream_index: int | None, call_id: str | None):
        self.upstream_index = upstream_index
        self.id = call_id
        self.name = ""
        self.arguments: list[str] = []
        self.block_index: int | None = None
        self.emitted = 0  # how many argument fragments were already sent as input_json_delta
        self.closed = False


class ChatStreamReader:
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
        self._message_id = ""

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
        self._message_id = _message_id(upstream_id)
        return {
            "type": "message_start",
            "message": {
                "id": self._message_id,
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
        reasoning = _reasoning_text(delta)
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

    def _delta(self, delta: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": self._next_index - 1, "delta": delta}

    def _ensure_open(self, kind: str, events: list[dict[str, Any]]) -> None:
        if self._open == kind:
            return
        self._close_all(events)
        block: dict[str, Any] = {"type": "text", "text": ""}
        if kind == "thinking":
            block = {"type": "thinking", "thinking": "", "signature": ""}
        events.append({"type": "content_block_start", "index": self._next_index, "content_block": block})
        self._next_index += 1
        self._open = kind

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
                if call.id == call_id:
                    return call
            # An id seen for the first time: either the late id of a call already started at this
            # index, or a new call (some servers give every parallel call index 0).
            for call in reversed(self._calls):
                if index is not None and call.upstream_index == index and call.id is None and not call.closed:
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
        if isinstance(arguments, str) and arguments:
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
