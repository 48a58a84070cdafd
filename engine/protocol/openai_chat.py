"""Translation between the canonical request (Anthropic Messages) and OpenAI Chat Completions.

Upstream side: `canonical_to_chat_request`, `chat_response_to_message` and `ChatStreamReader` let
leangate talk Chat Completions to OpenAI, Azure OpenAI, Moonshot, vLLM and similar providers.
Client side: `chat_request_to_canonical`, `message_to_chat_response` and `ChatStreamWriter` serve
agents that talk Chat Completions to leangate (Aider, Cline, Cursor).
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import orjson

from engine.protocol.errors import ProtocolError, openai_error_body
from engine.protocol.sse import encode_data

logger = logging.getLogger(__name__)

# Chat Completions accepts at most four stop strings.
MAX_STOP_SEQUENCES = 4

# The key under which a tool_use input keeps tool-call arguments that are not a JSON object. The
# Responses translator uses the same key, so such input converts back to the same string everywhere.
RAW_ARGUMENTS_KEY = "_raw_arguments"

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

    Models sometimes emit invalid JSON. The raw text is kept under RAW_ARGUMENTS_KEY, so the agent's
    tool reports a visible input error instead of running with silently empty input, and the text
    goes back upstream unchanged in the next request.
    """
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        logger.warning("upstream tool call arguments are not valid JSON (%d characters)", len(arguments))
        return {RAW_ARGUMENTS_KEY: arguments}
    if not isinstance(parsed, dict):
        return {RAW_ARGUMENTS_KEY: arguments}
    return parsed


def _format_arguments(tool_input: Any) -> str:
    """Serialise a tool_use input as an `arguments` string; the inverse of _parse_arguments."""
    if isinstance(tool_input, dict) and len(tool_input) == 1 and isinstance(tool_input.get(RAW_ARGUMENTS_KEY), str):
        return tool_input[RAW_ARGUMENTS_KEY]
    return orjson.dumps(tool_input if tool_input is not None else {}).decode()


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
            arguments = _format_arguments(block.get("input"))
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
        if not call.arguments or not self._is_complete(call):
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


# ---------------------------------------------------------------------------------------------
# Client side: Chat Completions request -> canonical request
# ---------------------------------------------------------------------------------------------

# Anthropic requires `max_tokens`; Chat Completions clients often leave it out.
DEFAULT_MAX_TOKENS = 4096

_IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")

# Top-level Chat fields that have a canonical equivalent or go to the side dict; others are dropped.
_HANDLED_FIELDS = frozenset(
    {
        "model", "messages", "tools", "tool_choice", "parallel_tool_calls", "max_tokens",
        "max_completion_tokens", "stop", "temperature", "top_p", "user", "metadata", "stream",
        "stream_options", "n", "response_format", "seed", "reasoning_effort",
    }
)  # fmt: skip


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _expect(value: Any, kind: type, param: str, description: str) -> Any:
    if not isinstance(value, kind):
        raise ProtocolError(f"must be {description}, got {_type_name(value)}", param=param)
    return value


def _optional_int(body: dict[str, Any], key: str, minimum: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ProtocolError(f"must be an integer >= {minimum}, got {value!r}", param=key)
    return value


def _optional_number(body: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise ProtocolError(f"must be a number between {low} and {high}, got {value!r}", param=key)
    return value


def _image_block(url: Any, param: str) -> dict[str, Any]:
    """Translate an `image_url` URL: a base64 data URL becomes a base64 source, http(s) a url source."""
    if not isinstance(url, str) or not url:
        raise ProtocolError("must be a non-empty string", param=param)
    if url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not comma or encoding != "base64" or not data:
            raise ProtocolError("invalid data URL: expected data:<media type>;base64,<data>", param=param)
        if media_type not in _IMAGE_MEDIA_TYPES:
            raise ProtocolError(
                f"unsupported image media type {media_type!r}; use one of {', '.join(_IMAGE_MEDIA_TYPES)}", param=param
            )
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise ProtocolError("invalid image URL: expected a data: URL or an http(s) URL", param=param)


def _file_block(file: Any, param: str) -> dict[str, Any]:
    _expect(file, dict, param, "an object")
    data_url = file.get("file_data")
    if not isinstance(data_url, str) or not data_url.startswith("data:"):
        raise ProtocolError("only inline files are supported: send file_data as a data: URL", param=f"{param}.file_data")
    header, comma, data = data_url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not comma or encoding != "base64" or media_type != "application/pdf":
        raise ProtocolError("invalid file data: expected data:application/pdf;base64,<data>", param=f"{param}.file_data")
    block: dict[str, Any] = {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if isinstance(file.get("filename"), str) and file["filename"]:
        block["title"] = file["filename"]
    return block


def _content_blocks(content: Any, param: str, allowed: tuple[str, ...]) -> list[dict[str, Any]]:
    """Translate a Chat `content` (string or list of parts) into content blocks, skipping empty text."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    _expect(content, list, param, "a string or a list of content parts")

    blocks: list[dict[str, Any]] = []
    for position, part in enumerate(content):
        part_param = f"{param}.{position}"
        _expect(part, dict, part_param, "an object")
        kind = part.get("type")
        if kind not in allowed:
            raise ProtocolError(f"unsupported content part type {kind!r}; expected one of {', '.join(allowed)}", param=f"{part_param}.type")
        if kind in ("text", "refusal"):
            text = _expect(part.get(kind), str, f"{part_param}.{kind}", "a string")
            if text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            blocks.append(_image_block(url, f"{part_param}.image_url.url"))
        elif kind == "file":
            blocks.append(_file_block(part.get("file"), f"{part_param}.file"))
    return blocks


def _tool_use_blocks(calls: Any, param: str) -> list[dict[str, Any]]:
    _expect(calls, list, param, "a list")
    blocks = []
    for position, call in enumerate(calls):
        call_param = f"{param}.{position}"
        _expect(call, dict, call_param, "an object")
        if call.get("type", "function") != "function":
            raise ProtocolError(f"unsupported tool call type {call.get('type')!r}; only function is supported", param=f"{call_param}.type")
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise ProtocolError("must be a non-empty string", param=f"{call_param}.id")
        function = _expect(call.get("function"), dict, f"{call_param}.function", "an object")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise ProtocolError("must be a non-empty string", param=f"{call_param}.function.name")
        arguments = function.get("arguments", "")
        arguments_param = f"{call_param}.function.arguments"
        _expect(arguments, str, arguments_param, "a JSON string")
        tool_input: Any = {}
        if arguments.strip():
            try:
                tool_input = orjson.loads(arguments)
            except orjson.JSONDecodeError as exc:
                raise ProtocolError(f"is not valid JSON: {exc}", param=arguments_param) from None
        if not isinstance(tool_input, dict):
            raise ProtocolError(f"must encode a JSON object, got {_type_name(tool_input)}", param=arguments_param)
        blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": tool_input})
    return blocks


def _tool_result_block(message: dict[str, Any], param: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise ProtocolError("must be a non-empty string", param=f"{param}.tool_call_id")
    blocks = _content_blocks(message.get("content"), f"{param}.content", ("text",))
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    # A tool message carries text only, so it becomes a plain string, the most compact form.
    text = "\n".join(item["text"] for item in blocks)
    if text:
        block["content"] = text
    return block


def _append_turn(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Append a turn, merging it into the previous one when the roles match (Anthropic alternates)."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


class _ToolCallTracker:
    """Checks that the tool messages after an assistant message reply to each of its tool calls."""

    def __init__(self) -> None:
        self.pending: dict[str, None] = {}  # unanswered call ids, in call order
        self.answered: set[str] = set()
        self.assistant_param = ""

    def on_assistant(self, blocks: list[dict[str, Any]], param: str) -> None:
        self.check_answered()
        self.pending = {block["id"]: None for block in blocks if block["type"] == "tool_use"}
        self.answered = set()
        self.assistant_param = param

    def on_tool(self, call_id: str, param: str) -> None:
        if call_id in self.answered:
            raise ProtocolError(f"tool call {call_id!r} has more than one tool message", param=param)
        if call_id not in self.pending:
            raise ProtocolError(
                f"{call_id!r} does not match a tool call of the preceding assistant message", param=param
            )
        del self.pending[call_id]
        self.answered.add(call_id)

    def check_answered(self) -> None:
        if self.pending:
            raise ProtocolError(
                f"tool calls {', '.join(self.pending)} have no tool message; send one per tool_call_id after this message",
                param=f"{self.assistant_param}.tool_calls",
            )


def _translate_chat_messages(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Translate Chat messages into (system blocks, canonical turns)."""
    if not isinstance(messages, list) or not messages:
        raise ProtocolError("must be a non-empty list of messages", param="messages")

    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    calls = _ToolCallTracker()
    for position, message in enumerate(messages):
        param = f"messages.{position}"
        _expect(message, dict, param, "an object")
        role = message.get("role")

        if role in ("system", "developer"):
            system.extend(_content_blocks(message.get("content"), f"{param}.content", ("text",)))
        elif role == "user":
            blocks = _content_blocks(message.get("content"), f"{param}.content", ("text", "image_url", "file"))
            _append_turn(turns, "user", blocks)
        elif role == "tool":
            block = _tool_result_block(message, param)
            calls.on_tool(block["tool_use_id"], f"{param}.tool_call_id")
            _append_turn(turns, "user", [block])
        elif role == "assistant":
            blocks = []
            reasoning = message.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                # NOTE: Chat clients hold no signature, so this block must not be sent to Anthropic.
                blocks.append({"type": "thinking", "thinking": reasoning, "signature": ""})
            blocks += _content_blocks(message.get("content"), f"{param}.content", ("text", "refusal"))
            if message.get("tool_calls") is not None:
                blocks += _tool_use_blocks(message["tool_calls"], f"{param}.tool_calls")
            calls.on_assistant(blocks, param)
            _append_turn(turns, "assistant", blocks)
        elif role == "function":
            raise ProtocolError("legacy function messages are not supported; send tool_calls and tool messages", param=f"{param}.role")
        else:
            raise ProtocolError(
                f"unknown role {role!r}; expected system, developer, user, assistant or tool", param=f"{param}.role"
            )

    # Unanswered calls are fine only on the last message: the client asks the model to continue it.
    if turns and turns[-1]["role"] != "assistant":
        calls.check_answered()
    if not turns:
        raise ProtocolError("must contain at least one user or assistant message with content", param="messages")
    _order_tool_results_first(turns)
    return system, turns


def _order_tool_results_first(turns: list[dict[str, Any]]) -> None:
    """Move tool_result blocks to the start of their user turn, keeping both groups in order.

    Anthropic wants the results of a tool call at the start of the next user turn. A user message
    that a client placed between the tool messages would otherwise split them.
    """
    for turn in turns:
        if turn["role"] == "user":
            results = [block for block in turn["content"] if block["type"] == "tool_result"]
            if results:
                others = [block for block in turn["content"] if block["type"] != "tool_result"]
                turn["content"] = results + others


def _translate_chat_tools(tools: Any) -> list[dict[str, Any]]:
    _expect(tools, list, "tools", "a list")
    translated = []
    for position, tool in enumerate(tools):
        param = f"tools.{position}"
        _expect(tool, dict, param, "an object")
        if tool.get("type", "function") != "function":
            raise ProtocolError(f"unsupported tool type {tool.get('type')!r}; only function tools are supported", param=f"{param}.type")
        # Cursor sometimes sends the flat Responses form: name and parameters beside `type`.
        function = tool.get("function", tool)
        function_param = f"{param}.function" if "function" in tool else param
        _expect(function, dict, function_param, "an object")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise ProtocolError("must be a non-empty string", param=f"{function_param}.name")

        converted: dict[str, Any] = {"name": name}
        description = function.get("description")
        if description is not None:
            converted["description"] = _expect(description, str, f"{function_param}.description", "a string")
        parameters = function.get("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        converted["input_schema"] = _expect(parameters, dict, f"{function_param}.parameters", "a JSON schema object")
        if isinstance(function.get("strict"), bool):
            converted["strict"] = function["strict"]
        translated.append(converted)
    return translated


def _translate_chat_tool_choice(choice: Any, names: set[str]) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice == "none":
        return {"type": "none"}
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or name not in names:
            raise ProtocolError(f"names tool {name!r}, which is not in tools", param="tool_choice.function.name")
        return {"type": "tool", "name": name}
    raise ProtocolError(
        'must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}', param="tool_choice"
    )


def _stop_sequences(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    _expect(stop, list, "stop", "a string or a list of strings")
    for position, item in enumerate(stop):
        _expect(item, str, f"stop.{position}", "a string")
    # Anthropic rejects empty stop sequences; OpenAI ignores them.
    return [item for item in stop if item]


def chat_request_to_canonical(body: object) -> tuple[dict[str, Any], dict[str, Any]]:
    """Translate a Chat Completions request into (canonical request, side fields).

    The side dict contains the fields that only the Chat response needs, which the canonical form
    has no place for: `model`, `created` (Unix seconds), `stream`, and when sent `stream_options`,
    `n`, `response_format`, `seed`, `reasoning_effort` and `metadata`. Raises ProtocolError(400) with the key path for
    malformed input. System and developer messages anywhere in the list are moved into `system`.
    """
    if not isinstance(body, dict):
        raise ProtocolError(f"request body must be a JSON object, got {_type_name(body)}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ProtocolError("is required and must be a non-empty string", param="model")
    n = _optional_int(body, "n", 1)
    if n is not None and n > 1:
        raise ProtocolError("only n=1 is supported", param="n")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise ProtocolError(f"must be a boolean, got {_type_name(stream)}", param="stream")
    stream_options = body.get("stream_options")
    if stream_options is not None:
        _expect(stream_options, dict, "stream_options", "an object")

    system, turns = _translate_chat_messages(body.get("messages"))
    max_tokens = _optional_int(body, "max_completion_tokens", 1) or _optional_int(body, "max_tokens", 1)

    canonical: dict[str, Any] = {"model": model, "max_tokens": max_tokens or DEFAULT_MAX_TOKENS}
    if system:
        canonical["system"] = system
    canonical["messages"] = turns

    tools = _translate_chat_tools(body["tools"]) if body.get("tools") is not None else []
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise ProtocolError(f"must be a boolean, got {_type_name(parallel)}", param="parallel_tool_calls")
    if tools:
        canonical["tools"] = tools
        tool_choice = _translate_chat_tool_choice(body.get("tool_choice"), {tool["name"] for tool in tools})
        if parallel is False and (tool_choice is None or tool_choice["type"] != "none"):
            tool_choice = {**(tool_choice or {"type": "auto"}), "disable_parallel_tool_use": True}
        if tool_choice is not None:
            canonical["tool_choice"] = tool_choice
    elif body.get("tool_choice") not in (None, "none", "auto"):
        raise ProtocolError("requires tools, but the request has none", param="tool_choice")

    stop = _stop_sequences(body.get("stop"))
    if stop:
        canonical["stop_sequences"] = stop
    temperature = _optional_number(body, "temperature", 0.0, 2.0)
    if temperature is not None:
        # NOTE: Anthropic accepts 0..1 and OpenAI 0..2; values above 1 are clamped, not rescaled.
        canonical["temperature"] = min(temperature, 1.0)
    top_p = _optional_number(body, "top_p", 0.0, 1.0)
    if top_p is not None:
        canonical["top_p"] = top_p
    user = body.get("user")
    if user is not None:
        canonical["metadata"] = {"user_id": _expect(user, str, "user", "a string")}
    if stream:
        canonical["stream"] = True

    ignored = sorted(key for key in body if key not in _HANDLED_FIELDS)
    if ignored:
        logger.debug("dropped Chat request fields without a canonical equivalent: %s", ", ".join(ignored))

    side: dict[str, Any] = {"model": model, "created": int(time.time()), "stream": bool(stream)}
    for key in ("stream_options", "n", "response_format", "seed", "reasoning_effort", "metadata"):
        if body.get(key) is not None:
            side[key] = body[key]
    return canonical, side


# ---------------------------------------------------------------------------------------------
# Client side: canonical Message -> Chat Completions response
# ---------------------------------------------------------------------------------------------


def message_to_chat_response(message: dict[str, Any], model: str, response_id: str, created: int) -> dict[str, Any]:
    """Translate a canonical Message into a Chat Completions response.

    `content` is null when the message has only tool calls, thinking becomes `reasoning_content`,
    and usage counts cached tokens inside `prompt_tokens`, as OpenAI does.
    """
    texts: list[str] = []
    thinking: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in message.get("content") or []:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            texts.append(block["text"])
        elif kind == "thinking" and block.get("thinking"):
            thinking.append(block["thinking"])
        elif kind == "tool_use":
            function = {"name": block.get("name", ""), "arguments": _format_arguments(block.get("input"))}
            tool_calls.append({"id": block.get("id", ""), "type": "function", "function": function})

    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if thinking:
        reply["reasoning_content"] = "\n".join(thinking)
    if tool_calls:
        reply["tool_calls"] = tool_calls

    finish_reason = finish_reason_from_stop(message.get("stop_reason"))
    if tool_calls and finish_reason == "stop":
        finish_reason = "tool_calls"
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": reply, "logprobs": None, "finish_reason": finish_reason}],
        "usage": anthropic_usage_to_openai(message.get("usage")),
    }


# ---------------------------------------------------------------------------------------------
# Client side: canonical events -> Chat Completions stream
# ---------------------------------------------------------------------------------------------


# The HTTP status behind an Anthropic error type, to pick the matching OpenAI error type.
_STATUS_BY_ANTHROPIC_ERROR = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


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
            status = _STATUS_BY_ANTHROPIC_ERROR.get(error.get("type"), 500)
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
        arguments = _format_arguments(state["initial_input"] or {})
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
