"""The three client protocols the gateway speaks, behind one small interface: parse a request into
the canonical form, and render canonical answers, streams and errors back in the client's shape."""

from __future__ import annotations

from typing import Any, Protocol

import orjson
from starlette.responses import Response

from engine.protocol.errors import anthropic_error_body, openai_error_body
from engine.protocol.sse import encode_event


class StreamWriter(Protocol):
    def feed(self, event: dict[str, Any]) -> list[bytes]: ...

    def error(self, status: int, message: str) -> list[bytes]: ...

    def close(self) -> list[bytes]: ...


class ClientProtocol(Protocol):
    name: str  # "anthropic" | "openai-chat" | "openai-responses"
    stream_media_type: str

    def parse(self, data: Any) -> tuple[dict[str, Any], dict[str, Any]]: ...

    def render(self, message: dict[str, Any], side: dict[str, Any], response_id: str) -> dict[str, Any]: ...

    def stream_writer(self, side: dict[str, Any], response_id: str, model: str) -> StreamWriter: ...

    def error_body(self, status: int, message: str, error_type: str | None = None, param: str | None = None) -> dict[str, Any]: ...


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")


class AnthropicClient:
    name = "anthropic"
    stream_media_type = "text/event-stream"

    def parse(self, data: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        from engine.protocol.anthropic import validate_messages_request

        body = validate_messages_request(data)
        return body, {"stream": bool(body.get("stream"))}

    def render(self, message: dict[str, Any], side: dict[str, Any], response_id: str) -> dict[str, Any]:
        return message

    def stream_writer(self, side: dict[str, Any], response_id: str, model: str) -> StreamWriter:
        return AnthropicStreamWriter()

    def error_body(self, status: int, message: str, error_type: str | None = None, param: str | None = None) -> dict[str, Any]:
        return anthropic_error_body(status, message, error_type)


class AnthropicStreamWriter:
    """Writes canonical events as Anthropic SSE; a stream that ends early gets an `error` event."""

    def __init__(self) -> None:
        self._stopped = False
        self._failed = False

    def feed(self, event: dict[str, Any]) -> list[bytes]:
        kind = event.get("type")
        if kind == "message_stop":
            self._stopped = True
        elif kind == "error":
            self._failed = True
        return [encode_event(event)]

    def error(self, status: int, message: str) -> list[bytes]:
        self._failed = True
        return [encode_event(anthropic_error_body(status, message))]

    def close(self) -> list[bytes]:
        if self._stopped or self._failed:
            return []
        self._failed = True
        return self.error(502, "upstream stream ended before message_stop")


class OpenAIChatClient:
    name = "openai-chat"
    stream_media_type = "text/event-stream"

    def parse(self, data: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        from engine.protocol.openai_chat import chat_request_to_canonical

        return chat_request_to_canonical(data)

    def render(self, message: dict[str, Any], side: dict[str, Any], response_id: str) -> dict[str, Any]:
        from engine.protocol.openai_chat import message_to_chat_response

        return message_to_chat_response(message, message.get("model") or "", response_id, side["created"])

    def stream_writer(self, side: dict[str, Any], response_id: str, model: str) -> StreamWriter:
        from engine.protocol.openai_chat import ChatStreamWriter

        include_usage = bool((side.get("stream_options") or {}).get("include_usage"))
        return ChatStreamWriter(model, response_id, side["created"], include_usage)

    def error_body(self, status: int, message: str, error_type: str | None = None, param: str | None = None) -> dict[str, Any]:
        return openai_error_body(status, message, param=param)


class OpenAIResponsesClient:
    name = "openai-responses"
    stream_media_type = "text/event-stream"

    def parse(self, data: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        from engine.protocol.responses import responses_request_to_canonical

        return responses_request_to_canonical(data)

    def render(self, message: dict[str, Any], side: dict[str, Any], response_id: str) -> dict[str, Any]:
        from engine.protocol.responses import message_to_response

        return message_to_response(message, side, response_id, side["created"])

    def stream_writer(self, side: dict[str, Any], response_id: str, model: str) -> StreamWriter:
        from engine.protocol.responses import ResponsesStreamWriter

        return ResponsesStreamWriter(side, response_id, side["created"])

    def error_body(self, status: int, message: str, error_type: str | None = None, param: str | None = None) -> dict[str, Any]:
        return openai_error_body(status, message, param=param)


ANTHROPIC = AnthropicClient()
OPENAI_CHAT = OpenAIChatClient()
OPENAI_RESPONSES = OpenAIResponsesClient()
