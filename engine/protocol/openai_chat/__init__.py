"""Translation between the canonical request (Anthropic Messages) and OpenAI Chat Completions.

Upstream side: `canonical_to_chat_request`, `chat_response_to_message` and `ChatStreamReader` let
leangate talk Chat Completions to OpenAI, Azure OpenAI, Moonshot, vLLM and similar providers.
Client side: `chat_request_to_canonical`, `message_to_chat_response` and `ChatStreamWriter` serve
agents that talk Chat Completions to leangate (Aider, Cline, Cursor).
"""

from engine.protocol.openai_chat._common import (
    RAW_ARGUMENTS_KEY,
    anthropic_usage_to_openai,
    finish_reason_from_stop,
    new_tool_use_id,
    openai_usage_to_anthropic,
    stop_reason_from_finish,
)
from engine.protocol.openai_chat.client import DEFAULT_MAX_TOKENS, chat_request_to_canonical, message_to_chat_response
from engine.protocol.openai_chat.client_stream import ChatStreamWriter
from engine.protocol.openai_chat.upstream import (
    MAX_STOP_SEQUENCES,
    REASONING_PLACEHOLDER,
    canonical_to_chat_request,
    chat_response_to_message,
)
from engine.protocol.openai_chat.upstream_stream import ChatStreamReader, upstream_error_event

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "MAX_STOP_SEQUENCES",
    "RAW_ARGUMENTS_KEY",
    "REASONING_PLACEHOLDER",
    "ChatStreamReader",
    "ChatStreamWriter",
    "anthropic_usage_to_openai",
    "canonical_to_chat_request",
    "chat_request_to_canonical",
    "chat_response_to_message",
    "finish_reason_from_stop",
    "message_to_chat_response",
    "new_tool_use_id",
    "openai_usage_to_anthropic",
    "stop_reason_from_finish",
    "upstream_error_event",
]
