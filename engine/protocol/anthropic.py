"""The Anthropic Messages request (the canonical request), its validation, and stream helpers.

`validate_messages_request` checks a client's request against pydantic models of the Messages API
plus the structural rules the API enforces (non-empty content, tool results right after their
tool calls). It returns the caller's own dict untouched, because stages and prompt caching depend on
its exact keys and order. `MessageAssembler` builds a Message from canonical stream events, and
`message_to_events` turns a Message back into a well-formed event sequence.
"""

from __future__ import annotations

import copy
import logging
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from engine.protocol.errors import ProtocolError

logger = logging.getLogger(__name__)

# The key under which a tool_use input keeps text that is not a JSON object; the OpenAI translators
# use the same key.
RAW_ARGUMENTS_KEY = "_raw_arguments"

USAGE_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")

# ---------------------------------------------------------------------------------------------
# Request models
# ---------------------------------------------------------------------------------------------

# Union members are tagged with names that start with "~", so that the tags can be removed from
# pydantic's error locations, which then read as key paths such as `messages.0.content.1.text`.
_TAG = "~"


class _Open(BaseModel):
    """A part of the request that keeps unknown fields, because the API adds fields often.

    Strict mode rejects strings such as `"100"` or `"yes"` where the API wants a number or a boolean.
    """

    model_config = ConfigDict(extra="allow", strict=True)


class CacheControl(_Open):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class _Block(_Open):
    cache_control: CacheControl | None = None


class TextBlock(_Block):
    type: Literal["text"]
    text: str
    citations: list[dict[str, Any]] | None = None


class Base64Source(_Open):
    type: Literal["base64"]
    media_type: str
    data: str


class ImageBase64Source(_Open):
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str


class UrlSource(_Open):
    type: Literal["url"]
    url: str


class FileSource(_Open):
    type: Literal["file"]
    file_id: str


class TextSource(_Open):
    type: Literal["text"]
    media_type: str
    data: str


class ContentSource(_Open):
    type: Literal["content"]
    content: str | list[dict[str, Any]]


def _type_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        return _TAG + str(value.get("type"))
    return None


_ImageSource = Annotated[
    Annotated[ImageBase64Source, Tag(_TAG + "base64")]
    | Annotated[UrlSource, Tag(_TAG + "url")]
    | Annotated[FileSource, Tag(_TAG + "file")],
    Discriminator(
        _type_tag,
        custom_error_type="invalid_source",
        custom_error_message="must be an object with type base64, url or file",
    ),
]

_DocumentSource = Annotated[
    Annotated[Base64Source, Tag(_TAG + "base64")]
    | Annotated[UrlSource, Tag(_TAG + "url")]
    | Annotated[FileSource, Tag(_TAG + "file")]
    | Annotated[TextSource, Tag(_TAG + "text")]
    | Annotated[ContentSource, Tag(_TAG + "content")],
    Discriminator(
        _type_tag,
        custom_error_type="invalid_source",
        custom_error_message="must be an object with type base64, url, file, text or content",
    ),
]

class ImageBlock(_Block):
    type: Literal["image"]
    source: _ImageSource


class DocumentBlock(_Block):
    type: Literal["document"]
    source: _DocumentSource
    title: str | None = None
    context: str | None = None


class SearchResultBlock(_Block):
    type: Literal["search_result"]
    source: str
    title: str
    content: list[TextBlock]


class ToolUseBlock(_Block):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]


def _block_tag(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    return _TAG + kind if kind in _KNOWN_BLOCKS else _TAG + "other"


class OtherBlock(_Block):
    """A block type this gateway does not model (server tool blocks, new types); it passes through."""

    type: str


_ToolResultItem = Annotated[
    Annotated[TextBlock, Tag(_TAG + "text")]
    | Annotated[ImageBlock, Tag(_TAG + "image")]
    | Annotated[DocumentBlock, Tag(_TAG + "document")]
    | Annotated[SearchResultBlock, Tag(_TAG + "search_result")]
    | Annotated[OtherBlock, Tag(_TAG + "other")],
    Discriminator(_block_tag, custom_error_type="invalid_block", custom_error_message="must be an object with a type"),
]


def _content_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return _TAG + "string"
    if isinstance(value, list):
        return _TAG + "list"
    return None


class ToolResultBlock(_Block):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: (
        Annotated[
            Annotated[str, Tag(_TAG + "string")] | Annotated[list[_ToolResultItem], Tag(_TAG + "list")],
            Discriminator(
                _content_tag,
                custom_error_type="invalid_content",
                custom_error_message="must be a string or a list of content blocks",
            ),
        ]
        | None
    ) = None
    is_error: bool | None = None


class ThinkingBlock(_Open):
    type: Literal["thinking"]
    thinking: str
    signature: str


class RedactedThinkingBlock(_Open):
    type: Literal["redacted_thinking"]
    data: str


_KNOWN_BLOCKS = frozenset(
    {"text", "image", "document", "search_result", "tool_use", "tool_result", "thinking", "redacted_thinking"}
)

_ContentBlock = Annotated[
    Annotated[TextBlock, Tag(_TAG + "text")]
    | Annotated[ImageBlock, Tag(_TAG + "image")]
    | Annotated[DocumentBlock, Tag(_TAG + "document")]
    | Annotated[SearchResultBlock, Tag(_TAG + "search_result")]
    | Annotated[ToolUseBlock, Tag(_TAG + "tool_use")]
    | Annotated[ToolResultBlock, Tag(_TAG + "tool_result")]
    | Annotated[ThinkingBlock, Tag(_TAG + "thinking")]
    | Annotated[RedactedThinkingBlock, Tag(_TAG + "redacted_thinking")]
    | Annotated[OtherBlock, Tag(_TAG + "other")],
    Discriminator(_block_tag, custom_error_type="invalid_block", custom_error_message="must be an object with a type"),
]

_Content = Annotated[
    Annotated[str, Tag(_TAG + "string")] | Annotated[list[_ContentBlock], Tag(_TAG + "list")],
    Discriminator(
        _content_tag, custom_error_type="invalid_content", custom_error_message="must be a string or a list of content blocks"
    ),
]


class Message(_Open):
    role: Literal["user", "assistant"]
    content: _Content


class Tool(_Open):
    """A custom tool (`input_schema`, optional `type: custom`) or a server tool (versioned `type`)."""

    name: str = Field(min_length=1)
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    cache_control: CacheControl | None = None

    @model_validator(mode="after")
    def _check_schema(self) -> Tool:
        if self.type in (None, "custom") and self.input_schema is None:
            raise ValueError("input_schema is required for a custom tool (server tools have a versioned type)")
        return self


class ToolChoiceAuto(_Open):
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(_Open):
    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(_Open):
    type: Literal["tool"]
    name: str = Field(min_length=1)
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(_Open):
    type: Literal["none"]


_ToolChoice = Annotated[
    Annotated[ToolChoiceAuto, Tag(_TAG + "auto")]
    | Annotated[ToolChoiceAny, Tag(_TAG + "any")]
    | Annotated[ToolChoiceTool, Tag(_TAG + "tool")]
    | Annotated[ToolChoiceNone, Tag(_TAG + "none")],
    Discriminator(
        _type_tag,
        custom_error_type="invalid_tool_choice",
        custom_error_message="must be an object with type auto, any, tool or none",
    ),
]


class ThinkingEnabled(_Open):
    type: Literal["enabled"]
    budget_tokens: int = Field(ge=1024)
    display: Literal["summarized", "omitted"] | None = None


class ThinkingDisabled(_Open):
    type: Literal["disabled"]


class ThinkingAdaptive(_Open):
    type: Literal["adaptive"]
    display: Literal["summarized", "omitted"] | None = None


_Thinking = Annotated[
    Annotated[ThinkingEnabled, Tag(_TAG + "enabled")]
    | Annotated[ThinkingDisabled, Tag(_TAG + "disabled")]
    | Annotated[ThinkingAdaptive, Tag(_TAG + "adaptive")],
    Discriminator(
        _type_tag,
        custom_error_type="invalid_thinking",
        custom_error_message="must be an object with type enabled, disabled or adaptive",
    ),
]

_System = Annotated[
    Annotated[str, Tag(_TAG + "string")] | Annotated[list[TextBlock], Tag(_TAG + "list")],
    Discriminator(
        _content_tag, custom_error_type="invalid_system", custom_error_message="must be a string or a list of text blocks"
    ),
]


class Metadata(_Open):
    user_id: str | None = None


class CountTokensRequest(_Open):
    """The body of `POST /v1/messages/count_tokens`."""

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    system: _System | None = None
    tools: list[Tool] | None = None
    tool_choice: _ToolChoice | None = None
    thinking: _Thinking | None = None


class MessagesRequest(CountTokensRequest):
    """The body of `POST /v1/messages`."""

    max_tokens: int = Field(ge=1)
    metadata: Metadata | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    service_tier: Literal["auto", "standard_only"] | None = None


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _preview(value: Any) -> str:
    """Show a rejected value in an error message, cut short so a huge value cannot flood the message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _key_path(location: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in location if not (isinstance(part, str) and part.startswith(_TAG)))


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


def _is_unsigned_thinking(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") == "thinking" and not block.get("signature")


def drop_unsigned_thinking(body: dict[str, Any]) -> dict[str, Any]:
    """Remove thinking blocks without a signature before a request goes to Anthropic.

    Such blocks come from OpenAI-style providers (`reasoning_content`) or Chat clients, and the
    Anthropic API rejects them. Returns `body` itself when there is none, so the common case costs
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


# ---------------------------------------------------------------------------------------------
# Usage
# ---------------------------------------------------------------------------------------------


def empty_usage() -> dict[str, int]:
    return dict.fromkeys(USAGE_FIELDS, 0)


def total_input_tokens(usage: dict[str, Any]) -> int:
    """Count every input token: Anthropic's `input_tokens` excludes cache reads and writes."""
    return sum(
        usage.get(key) or 0 for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )


# ---------------------------------------------------------------------------------------------
# Stream events <-> Message
# ---------------------------------------------------------------------------------------------


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
