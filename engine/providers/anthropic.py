"""The `anthropic` adapter: the canonical request is already the Anthropic Messages shape."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from engine.policy.models import Provider
from engine.protocol.anthropic import drop_unsigned_thinking
from engine.protocol.errors import ProtocolError
from engine.protocol.sse import SSEParser
from engine.providers.base import PreparedRequest, api_key, dumps, join_url, json_error_message

log = logging.getLogger(__name__)

DEFAULT_VERSION = "2023-06-01"
USAGE_INPUT_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


class AnthropicAdapter:
    kind = "anthropic"

    def __init__(self, name: str, config: Provider):
        self.name = name
        self.config = config
        self._url = join_url(config.base_url, "/v1/messages")
        self._key = api_key(config)

    def prepare(self, body: dict[str, Any], model: str, stream: bool, client_headers: dict[str, str]) -> PreparedRequest:
        upstream = dict(drop_unsigned_thinking(body))
        upstream["model"] = model
        if stream:
            upstream["stream"] = True
        else:
            upstream.pop("stream", None)
        headers = {
            "content-type": "application/json",
            "anthropic-version": client_headers.get("anthropic-version") or DEFAULT_VERSION,
            "accept": "text/event-stream" if stream else "application/json",
        }
        beta = client_headers.get("anthropic-beta")
        if beta:
            headers["anthropic-beta"] = beta
        if self._key:
            headers["x-api-key"] = self._key
        headers.update(self.config.headers)
        return PreparedRequest(self._url, headers, dumps(upstream))

    def parse_message(self, data: bytes, model: str) -> dict[str, Any]:
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ProtocolError("upstream response is not valid JSON", status=502) from None
        if not isinstance(message, dict) or message.get("type") != "message":
            raise ProtocolError("upstream response is not an Anthropic message", status=502)
        return message

    def stream_reader(self, model: str) -> "AnthropicStreamReader":
        return AnthropicStreamReader()

    def error_message(self, status: int, data: bytes) -> tuple[str, str | None]:
        return json_error_message(data)


class AnthropicStreamReader:
    """Parses Anthropic SSE into event dicts and repeats the input usage on `message_delta`.

    Claude Code reads `message_delta.usage` as the turn's usage, so the input and cache counts from
    `message_start` are copied there when the upstream left them out. Values the upstream did put on
    `message_delta` win: usage there is cumulative, so nothing is counted twice.
    """

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._start_usage: dict[str, Any] = {}

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        return self._convert(self._parser.feed(chunk))

    def finish(self) -> list[dict[str, Any]]:
        return self._convert(self._parser.finish())

    def _convert(self, raw_events: list[tuple[str | None, str]]) -> list[dict[str, Any]]:
        events = []
        for name, data in raw_events:
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                log.warning("skipping an upstream SSE event that is not JSON (event %r)", name)
                continue
            if not isinstance(event, dict):
                continue
            if "type" not in event and name:
                event["type"] = name
            kind = event.get("type")
            if kind == "message_start":
                usage = (event.get("message") or {}).get("usage") or {}
                self._start_usage = {key: usage[key] for key in USAGE_INPUT_FIELDS if key in usage}
            elif kind == "message_delta":
                usage = event.setdefault("usage", {})
                if isinstance(usage, dict):
                    for key, value in self._start_usage.items():
                        usage.setdefault(key, value)
            events.append(event)
        return events
