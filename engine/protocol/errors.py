"""Protocol errors and the error bodies of the Anthropic and OpenAI wire formats."""

from __future__ import annotations

from typing import Any

# Anthropic error types by HTTP status. Statuses not listed fall back by class:
# other 4xx -> invalid_request_error, other 5xx -> api_error.
_ANTHROPIC_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# OpenAI error `type` and `code` by HTTP status. OpenAI documents few codes, so `code` is None
# where no usual value exists.
_OPENAI_TYPES: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("not_found_error", "model_not_found"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
    504: ("timeout_error", None),
    529: ("server_error", "overloaded"),
}


class ProtocolError(Exception):
    """Raised when a client request or an upstream response breaks its wire format.

    `status` is the HTTP status of the error response (a 4xx for bad client input), `param` the key path of
    the offending value (for example `messages.3.content.0.tool_use_id`), and `error_type` the
    Anthropic error type.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        param: str | None = None,
        error_type: str | None = None,
    ):
        self.status = status
        self.message = message
        self.param = param
        self.error_type = error_type or anthropic_error_type(status)
        super().__init__(f"{param}: {message}" if param else message)

    def anthropic_body(self) -> dict[str, Any]:
        return anthropic_error_body(self.status, str(self), self.error_type)

    def openai_body(self) -> dict[str, Any]:
        return openai_error_body(self.status, self.message, param=self.param)


# The HTTP status behind each Anthropic error type, for errors that arrive inside a stream.
_STATUS_BY_ANTHROPIC_TYPE: dict[str, int] = {error_type: status for status, error_type in _ANTHROPIC_TYPES.items()}


def status_for_anthropic_error_type(error_type: object, default: int = 500) -> int:
    """Map an Anthropic error type (from an `error` event) back to its HTTP status."""
    return _STATUS_BY_ANTHROPIC_TYPE.get(str(error_type), default)


def anthropic_error_type(status: int) -> str:
    """Map an HTTP status to the Anthropic error type."""
    if status in _ANTHROPIC_TYPES:
        return _ANTHROPIC_TYPES[status]
    if 400 <= status < 500:
        return "invalid_request_error"
    return "api_error"


def anthropic_error_body(status: int, message: str, error_type: str | None = None) -> dict[str, Any]:
    """Build `{"type": "error", "error": {"type", "message"}}` for an HTTP status."""
    return {
        "type": "error",
        "error": {"type": error_type or anthropic_error_type(status), "message": message},
    }


def openai_error_body(
    status: int,
    message: str,
    type: str | None = None,  # noqa: A002 - the OpenAI field is named `type`
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """Build `{"error": {"message", "type", "param", "code"}}` for an HTTP status."""
    if status in _OPENAI_TYPES:
        default_type, default_code = _OPENAI_TYPES[status]
    elif 400 <= status < 500:
        default_type, default_code = "invalid_request_error", None
    else:
        default_type, default_code = "server_error", None
    return {
        "error": {
            "message": message,
            "type": type or default_type,
            "param": param,
            "code": code if code is not None else default_code,
        }
    }
