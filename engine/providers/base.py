"""The provider adapter interface: build the upstream request, and read its response back into the
canonical Anthropic Message (or its stream of events)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from engine.policy.models import Provider


class UpstreamError(Exception):
    """Raised when the upstream responds with an error status, or cannot be reached."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None, error_type: str | None = None,
                 transport: bool = False):
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.error_type = error_type
        self.transport = transport  # True when no HTTP response came back (connect error, reset, timeout)
        super().__init__(f"{status}: {message}")


@dataclass(frozen=True)
class PreparedRequest:
    url: str
    headers: dict[str, str]
    content: bytes


class StreamReader(Protocol):
    """Turns upstream stream bytes into canonical Anthropic events."""

    def feed(self, chunk: bytes) -> list[dict[str, Any]]: ...

    def finish(self) -> list[dict[str, Any]]: ...


class Adapter(Protocol):
    kind: str
    name: str
    config: Provider

    def prepare(self, body: dict[str, Any], model: str, stream: bool, client_headers: dict[str, str]) -> PreparedRequest: ...

    def parse_message(self, data: bytes, model: str) -> dict[str, Any]: ...

    def stream_reader(self, model: str) -> StreamReader: ...

    def error_message(self, status: int, data: bytes) -> tuple[str, str | None]: ...


def dumps(value: Any) -> bytes:
    """Serialise a request body deterministically: insertion order kept, no whitespace."""
    return orjson.dumps(value)


def api_key(config: Provider) -> str | None:
    if config.api_key is None:
        return None
    value = config.api_key.get_secret_value()
    return value or None


def join_url(base_url: str, path: str) -> str:
    """Join a provider base URL and an API path, accepting base URLs given with or without `/v1`."""
    if path.startswith("/v1/") and base_url.endswith("/v1"):
        return base_url + path[3:]
    return base_url + path


def json_error_message(data: bytes) -> tuple[str, str | None]:
    """Pull a readable message and an error type out of an upstream error body of any protocol."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        text = data.decode("utf-8", "replace").strip()
        return (text[:500] or "upstream returned an error without a body"), None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict):
            message = error.get("message") or error.get("type") or "upstream error"
            return str(message)[:1000], error.get("type") or error.get("code")
        if isinstance(error, str):
            return error[:1000], None
        if isinstance(parsed.get("message"), str):
            return parsed["message"][:1000], None
    return "upstream returned an error", None
