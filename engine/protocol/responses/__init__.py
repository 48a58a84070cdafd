"""The OpenAI Responses API (`POST /v1/responses`), the only protocol current Codex CLI speaks.

Client side: responses_request_to_canonical, message_to_response, ResponsesStreamWriter,
codex_models_body. Upstream side (an `openai` provider with `wire_api: responses`):
canonical_to_responses_request, responses_to_message, ResponsesStreamReader, and
is_openai_reasoning for adapters that must drop OpenAI reasoning before sending to Anthropic.
"""

from engine.protocol.responses._common import is_openai_reasoning
from engine.protocol.responses.answer import message_to_response
from engine.protocol.responses.codex_models import codex_models_body
from engine.protocol.responses.request import responses_request_to_canonical
from engine.protocol.responses.stream import ResponsesStreamWriter
from engine.protocol.responses.upstream import canonical_to_responses_request, responses_to_message
from engine.protocol.responses.upstream_stream import ResponsesStreamReader

__all__ = [
    "ResponsesStreamReader",
    "ResponsesStreamWriter",
    "canonical_to_responses_request",
    "codex_models_body",
    "is_openai_reasoning",
    "message_to_response",
    "responses_request_to_canonical",
    "responses_to_message",
]
