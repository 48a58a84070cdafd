"""The per-protocol parts of an exchange: checks, usage, response bodies, stream events and errors.

The HTTP flow in server.py is the same for every protocol. Each class here fills in one wire format.
"""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timezone

from engine.stub import canonical as convert
from engine.stub import wire_anthropic, wire_ollama, wire_openai
from engine.stub.prompt_cache import PromptCacheSimulator
from engine.stub.replies import Reply, Usage

_ids = itertools.count(1)


def _next_id() -> str:
    return f"{next(_ids):012d}"


def _positive_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


class Protocol:
    """One wire format. Subclasses override what differs."""

    name = ""  # the tag in record file names
    stream_media_type = "text/event-stream"
    stream_by_default = False

    def error(self, status: int, message: str, request_id: str) -> bytes:
        return wire_openai.error_body(status, message)

    def to_canonical(self, body: dict) -> dict:
        raise NotImplementedError

    def max_output_tokens(self, body: dict) -> int | None:
        return None

    def wants_stream(self, body: dict) -> bool:
        stream = body.get("stream", self.stream_by_default)
        return bool(stream)

    def usage(self, body: dict, canonical: dict, input_tokens: int, reply: Reply, cache: PromptCacheSimulator | None) -> Usage:
        """Split the input tokens into cached and uncached parts (OpenAI rules when cache is given).

        Raises PromptCacheError for a request that the real API would reject for its caching.
        """
        model = str(body.get("model"))
        cached = 0
        if cache is not None:
            extended = body.get("prompt_cache_retention") == "24h"
            cached = min(cache.openai_cached_tokens(canonical, model, extended=extended), input_tokens)
        return Usage(input_tokens=input_tokens, output_tokens=reply.output_tokens, cache_read_tokens=cached)

    def body(self, reply: Reply, model: str, usage: Usage, request: dict) -> bytes:
        raise NotImplementedError

    def events(self, reply: Reply, model: str, usage: Usage, request: dict) -> list[bytes]:
        raise NotImplementedError

    def stream_error(self, message: str, sequence_number: int) -> bytes:
        return wire_openai.stream_error_line(message)


class AnthropicMessages(Protocol):
    name = "anthropic"

    def error(self, status: int, message: str, request_id: str) -> bytes:
        return wire_anthropic.error_body(status, message, request_id)

    def to_canonical(self, body: dict) -> dict:
        convert.check_anthropic(body)
        return body

    def max_output_tokens(self, body: dict) -> int | None:
        return _positive_int(body.get("max_tokens"))

    def usage(self, body: dict, canonical: dict, input_tokens: int, reply: Reply, cache: PromptCacheSimulator | None) -> Usage:
        if cache is None:
            return Usage(input_tokens=input_tokens, output_tokens=reply.output_tokens)
        split = cache.anthropic_usage(body, str(body.get("model")))
        return Usage(
            input_tokens=split.total_input_tokens,
            output_tokens=reply.output_tokens,
            cache_read_tokens=split.cache_read_input_tokens,
            cache_creation_tokens=split.cache_creation_input_tokens,
            cache_creation_5m_tokens=split.ephemeral_5m_input_tokens,
            cache_creation_1h_tokens=split.ephemeral_1h_input_tokens,
        )

    def body(self, reply: Reply, model: str, usage: Usage, request: dict) -> bytes:
        return wire_anthropic.message_body(reply, model, usage, f"msg_stub{_next_id()}")

    def events(self, reply: Reply, model: str, usage: Usage, request: dict) -> list[bytes]:
        return wire_anthropic.stream_events(reply, model, usage, f"msg_stub{_next_id()}")

    def stream_error(self, message: str, sequence_number: int) -> bytes:
        return wire_anthropic.stream_error_event(message)


class OpenAIChat(Protocol):
    name = "openai-chat"

    def to_canonical(self, body: dict) -> dict:
        return convert.chat_to_canonical(body)

    def max_output_tokens(self, body: dict) -> int | None:
        limit = _positive_int(body.get("max_completion_tokens"))
        return limit if limit is not None else _positive_int(body.get("max_tokens"))

    def body(self, reply: Reply, model: str, usage: Usage, request: dict) -> bytes:
        return wire_openai.chat_body(reply, model, usage, f"chatcmpl-stub{_next_id()}", int(time.time()))

    def events(self, reply: Reply, model: str, usage: Usage, request: dict) -> list[bytes]:
        options = request.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        return wire_openai.chat_stream_events(reply, model, usage, f"chatcmpl-stub{_next_id()}", int(time.time()), include_usage)


class AzureChat(OpenAIChat):
    name = "azure-openai"

    def error(self, status: int, message: str, request_id: str) -> bytes:
        if status in (401, 404):
            return wire_openai.azure_error_body(status, message)
        return wire_openai.error_body(status, message)


class OpenAIResponses(Protocol):
    name = "openai-responses"

    def to_canonical(self, body: dict) -> dict:
        return convert.responses_to_canonical(body)

    def max_output_tokens(self, body: dict) -> int | None:
        return _positive_int(body.get("max_output_tokens"))

    def body(self, reply: Reply, model: str, usage: Usage, request: dict) -> bytes:
        return wire_openai.response_body(reply, model, usage, f"resp_stub{_next_id()}", int(time.time()), request)

    def events(self, reply: Reply, model: str, usage: Usage, request: dict) -> list[bytes]:
        return wire_openai.responses_stream_events(reply, model, usage, f"resp_stub{_next_id()}", int(time.time()), request)

    def stream_error(self, message: str, sequence_number: int) -> bytes:
        return wire_openai.responses_stream_error_event(message, sequence_number)


class OllamaChat(Protocol):
    name = "ollama"
    stream_media_type = "application/x-ndjson"
    stream_by_default = True  # Ollama streams unless the request sets "stream": false

    def error(self, status: int, message: str, request_id: str) -> bytes:
        return wire_ollama.error_body(message)

    def to_canonical(self, body: dict) -> dict:
        return convert.ollama_to_canonical(body)

    def max_output_tokens(self, body: dict) -> int | None:
        options = body.get("options")
        if not isinstance(options, dict):
            return None
        limit = options.get("num_predict")
        return limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None

    def usage(self, body: dict, canonical: dict, input_tokens: int, reply: Reply, cache: PromptCacheSimulator | None) -> Usage:
        # Ollama keeps only the last num_ctx tokens of a longer prompt, so the count is capped there.
        return Usage(input_tokens=min(input_tokens, num_ctx(body)), output_tokens=reply.output_tokens)

    def body(self, reply: Reply, model: str, usage: Usage, request: dict) -> bytes:
        return wire_ollama.chat_body(reply, model, usage, _now_iso(), 1_000_000)

    def events(self, reply: Reply, model: str, usage: Usage, request: dict) -> list[bytes]:
        return wire_ollama.stream_lines(reply, model, usage, _now_iso(), 1_000_000)

    def stream_error(self, message: str, sequence_number: int) -> bytes:
        return wire_ollama.stream_error_line(message)


def num_ctx(body: dict) -> int:
    """Return the context window of an Ollama request: options.num_ctx, or Ollama's default."""
    options = body.get("options")
    value = options.get("num_ctx") if isinstance(options, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return wire_ollama.DEFAULT_NUM_CTX


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
