"""Adapters for providers that speak OpenAI Chat Completions (or Responses): `openai`,
`azure-openai` and `openai-compatible` (Moonshot, OpenRouter, vLLM, llama.cpp, LM Studio)."""

from __future__ import annotations

from typing import Any

import orjson

from engine.policy.models import Provider
from engine.protocol import openai_chat
from engine.protocol.errors import ProtocolError
from engine.protocol.sse import SSEParser
from engine.providers.base import PreparedRequest, api_key, dumps, join_url, json_error_message

# Reasoning models reject `max_tokens` and take `max_completion_tokens`.
_COMPLETION_TOKENS_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def _uses_max_completion_tokens(model: str) -> bool:
    return model.startswith(_COMPLETION_TOKENS_PREFIXES)


class OpenAIChatAdapter:
    kind = "openai"

    def __init__(self, name: str, config: Provider, max_output_tokens: dict[str, int] | None = None):
        self.name = name
        self.config = config
        self.kind = config.kind
        self._key = api_key(config)
        self._limits = max_output_tokens or {}
        self._responses = config.kind == "openai" and config.wire_api == "responses"

    def url(self, model: str) -> str:
        if self.config.kind == "azure-openai":
            deployment = self.config.deployments.get(model, model)
            version = self.config.api_version or "2024-10-21"
            return f"{self.config.base_url}/openai/deployments/{deployment}/chat/completions?api-version={version}"
        if self._responses:
            return join_url(self.config.base_url, "/v1/responses")
        return join_url(self.config.base_url, "/v1/chat/completions")

    def headers(self, stream: bool) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "text/event-stream" if stream else "application/json"}
        if self._key:
            if self.config.kind == "azure-openai":
                headers["api-key"] = self._key
            else:
                headers["authorization"] = f"Bearer {self._key}"
        headers.update(self.config.headers)
        return headers

    def prepare(self, body: dict[str, Any], model: str, stream: bool, client_headers: dict[str, str]) -> PreparedRequest:
        limit = self._limits.get(model)
        if self._responses:
            from engine.protocol import responses

            upstream = responses.canonical_to_responses_request(body, model, max_output_tokens=limit)
            upstream["stream"] = stream
        else:
            upstream = openai_chat.canonical_to_chat_request(
                body,
                model,
                max_output_tokens=limit,
                reasoning_content=self.config.reasoning_content,
                use_max_completion_tokens=self.config.kind == "openai" and _uses_max_completion_tokens(model),
            )
            if stream:
                upstream["stream"] = True
                upstream["stream_options"] = {"include_usage": True}
            else:
                upstream.pop("stream", None)
                upstream.pop("stream_options", None)
        return PreparedRequest(self.url(model), self.headers(stream), dumps(upstream))

    def parse_message(self, data: bytes, model: str) -> dict[str, Any]:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ProtocolError("upstream response is not valid JSON", status=502) from None
        if not isinstance(parsed, dict):
            raise ProtocolError("upstream response is not a JSON object", status=502)
        if self._responses:
            from engine.protocol import responses

            return responses.responses_to_message(parsed)
        return openai_chat.chat_response_to_message(parsed, model)

    def stream_reader(self, model: str) -> "ChatSSEReader":
        if self._responses:
            from engine.protocol import responses

            return ChatSSEReader(responses.ResponsesStreamReader(model), with_event_names=True)
        return ChatSSEReader(openai_chat.ChatStreamReader(model), with_event_names=False)

    def error_message(self, status: int, data: bytes) -> tuple[str, str | None]:
        return json_error_message(data)


class ChatSSEReader:
    """Feeds decoded SSE `data:` objects into a protocol stream reader."""

    def __init__(self, reader: Any, with_event_names: bool):
        self._parser = SSEParser()
        self._reader = reader
        self._with_event_names = with_event_names

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        return self._convert(self._parser.feed(chunk))

    def finish(self) -> list[dict[str, Any]]:
        events = self._convert(self._parser.finish())
        events.extend(self._reader.finish())
        return events

    def _convert(self, raw_events: list[tuple[str | None, str]]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for name, data in raw_events:
            if data.strip() == "[DONE]":
                continue
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise ProtocolError(f"upstream sent a stream event that is not JSON: {data[:80]!r}", status=502) from None
            if self._with_event_names:
                events.extend(self._reader.feed(name or (parsed.get("type") if isinstance(parsed, dict) else None), parsed))
            else:
                events.extend(self._reader.feed(parsed))
        return events
