"""The `ollama` adapter: native `/api/chat` with NDJSON streams, and `num_ctx` from the policy.

Ollama's default context window (4096 tokens) silently truncates a coding agent's system prompt and
tool schemas, so the adapter always sends the policy's `num_ctx`.
"""

from __future__ import annotations

from typing import Any

import orjson

from engine.policy.models import Provider
from engine.protocol import ollama
from engine.protocol.errors import ProtocolError
from engine.protocol.sse import NDJSONParser
from engine.providers.base import PreparedRequest, api_key, dumps, json_error_message


class OllamaAdapter:
    kind = "ollama"

    def __init__(self, name: str, config: Provider):
        self.name = name
        self.config = config
        self._url = config.base_url + "/api/chat"
        self._key = api_key(config)

    def prepare(self, body: dict[str, Any], model: str, stream: bool, client_headers: dict[str, str]) -> PreparedRequest:
        upstream = ollama.canonical_to_ollama_request(body, model, num_ctx=self.config.num_ctx, stream=stream,
                                                      send_think=self.config.think)
        headers = {"content-type": "application/json"}
        if self._key:
            headers["authorization"] = f"Bearer {self._key}"
        headers.update(self.config.headers)
        return PreparedRequest(self._url, headers, dumps(upstream))

    def parse_message(self, data: bytes, model: str) -> dict[str, Any]:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ProtocolError("upstream response is not valid JSON", status=502) from None
        if not isinstance(parsed, dict):
            raise ProtocolError("upstream response is not a JSON object", status=502)
        return ollama.ollama_response_to_message(parsed, model)

    def stream_reader(self, model: str) -> "OllamaNDJSONReader":
        return OllamaNDJSONReader(ollama.OllamaStreamReader(model))

    def error_message(self, status: int, data: bytes) -> tuple[str, str | None]:
        return json_error_message(data)


class OllamaNDJSONReader:
    def __init__(self, reader: Any):
        self._parser = NDJSONParser()
        self._reader = reader

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for obj in self._parser.feed(chunk):
            events.extend(self._reader.feed(obj))
        return events

    def finish(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for obj in self._parser.finish():
            events.extend(self._reader.feed(obj))
        events.extend(self._reader.finish())
        return events
