"""The Anthropic Messages request (the canonical request), its validation, and stream helpers.

`validate_messages_request` checks a client's request against pydantic models of the Messages API
plus the structural rules the API enforces (non-empty content, tool results right after their
tool calls). It returns the caller's own dict untouched, because stages and prompt caching depend on
its exact keys and order. `MessageAssembler` builds a Message from canonical stream events, and
`message_to_events` turns a Message back into a well-formed event sequence.
"""

from engine.protocol.anthropic.models import CountTokensRequest, MessagesRequest
from engine.protocol.anthropic.stream import (
    RAW_ARGUMENTS_KEY,
    USAGE_FIELDS,
    MessageAssembler,
    empty_usage,
    message_to_events,
    total_input_tokens,
)
from engine.protocol.anthropic.validate import (
    drop_unsigned_thinking,
    validate_count_tokens_request,
    validate_messages_request,
)

__all__ = [
    "RAW_ARGUMENTS_KEY",
    "USAGE_FIELDS",
    "CountTokensRequest",
    "MessageAssembler",
    "MessagesRequest",
    "drop_unsigned_thinking",
    "empty_usage",
    "message_to_events",
    "total_input_tokens",
    "validate_count_tokens_request",
    "validate_messages_request",
]
