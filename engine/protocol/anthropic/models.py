"""Pydantic models of the Anthropic Messages request, the canonical request of the gateway.

Every model keeps unknown fields (`extra="allow"`), because the API adds fields often. The models
only validate: callers keep working on the client's own dict.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator


# Union members are tagged with names that start with "~", so that the tags can be removed from
# pydantic's error locations, which then read as key paths such as `messages.0.content.1.text`.
UNION_TAG_PREFIX = "~"


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
        return UNION_TAG_PREFIX + str(value.get("type"))
    return None


_ImageSource = Annotated[
    Annotated[ImageBase64Source, Tag(UNION_TAG_PREFIX + "base64")]
    | Annotated[UrlSource, Tag(UNION_TAG_PREFIX + "url")]
    | Annotated[FileSource, Tag(UNION_TAG_PREFIX + "file")],
    Discriminator(
        _type_tag,
        custom_error_type="invalid_source",
        custom_error_message="must be an object with type base64, url or file",
    ),
]

_DocumentSource = Annotated[
    Annotated[Base64Source, Tag(UNION_TAG_PREFIX + "base64")]
    | Annotated[UrlSource, Tag(UNION_TAG_PREFIX + "url")]
    | Annotated[FileSource, Tag(UNION_TAG_PREFIX + "file")]
    | Annotated[TextSource, Tag(UNION_TAG_PREFIX + "text")]
    | Annotated[ContentSource, Tag(UNION_TAG_PREFIX + "content")],
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
    return UNION_TAG_PREFIX + kind if kind in _KNOWN_BLOCKS else UNION_TAG_PREFIX + "other"


class OtherBlock(_Block):
    """A block type this gateway does not model (server tool blocks, new types); it passes through."""

    type: str


_ToolResultItem = Annotated[
    Annotated[TextBlock, Tag(UNION_TAG_PREFIX + "text")]
    | Annotated[ImageBlock, Tag(UNION_TAG_PREFIX + "image")]
    | Annotated[DocumentBlock, Tag(UNION_TAG_PREFIX + "document")]
    | Annotated[SearchResultBlock, Tag(UNION_TAG_PREFIX + "search_result")]
    | Annotated[OtherBlock, Tag(UNION_TAG_PREFIX + "other")],
    Discriminator(_block_tag, custom_error_type="invalid_block", custom_error_message="must be an object with a type"),
]


def _content_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return UNION_TAG_PREFIX + "string"
    if isinstance(value, list):
        return UNION_TAG_PREFIX + "list"
    return None


class ToolResultBlock(_Block):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: (
        Annotated[
            Annotated[str, Tag(UNION_TAG_PREFIX + "string")] | Annotated[list[_ToolResultItem], Tag(UNION_TAG_PREFIX + "list")],
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
    Annotated[TextBlock, Tag(UNION_TAG_PREFIX + "text")]
    | Annotated[ImageBlock, Tag(UNION_TAG_PREFIX + "image")]
    | Annotated[DocumentBlock, Tag(UNION_TAG_PREFIX + "document")]
    | Annotated[SearchResultBlock, Tag(UNION_TAG_PREFIX + "search_result")]
    | Annotated[ToolUseBlock, Tag(UNION_TAG_PREFIX + "tool_use")]
    | Annotated[ToolResultBlock, Tag(UNION_TAG_PREFIX + "tool_result")]
    | Annotated[ThinkingBlock, Tag(UNION_TAG_PREFIX + "thinking")]
    | Annotated[RedactedThinkingBlock, Tag(UNION_TAG_PREFIX + "redacted_thinking")]
    | Annotated[OtherBlock, Tag(UNION_TAG_PREFIX + "other")],
    Discriminator(_block_tag, custom_error_type="invalid_block", custom_error_message="must be an object with a type"),
]

_Content = Annotated[
    Annotated[str, Tag(UNION_TAG_PREFIX + "string")] | Annotated[list[_ContentBlock], Tag(UNION_TAG_PREFIX + "list")],
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
    Annotated[ToolChoiceAuto, Tag(UNION_TAG_PREFIX + "auto")]
    | Annotated[ToolChoiceAny, Tag(UNION_TAG_PREFIX + "any")]
    | Annotated[ToolChoiceTool, Tag(UNION_TAG_PREFIX + "tool")]
    | Annotated[ToolChoiceNone, Tag(UNION_TAG_PREFIX + "none")],
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
    Annotated[ThinkingEnabled, Tag(UNION_TAG_PREFIX + "enabled")]
    | Annotated[ThinkingDisabled, Tag(UNION_TAG_PREFIX + "disabled")]
    | Annotated[ThinkingAdaptive, Tag(UNION_TAG_PREFIX + "adaptive")],
    Discriminator(
        _type_tag,
        custom_error_type="invalid_thinking",
        custom_error_message="must be an object with type enabled, disabled or adaptive",
    ),
]

_System = Annotated[
    Annotated[str, Tag(UNION_TAG_PREFIX + "string")] | Annotated[list[TextBlock], Tag(UNION_TAG_PREFIX + "list")],
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
