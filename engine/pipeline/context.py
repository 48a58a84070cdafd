"""The per-request context that flows through the pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ClientProtocol = Literal["anthropic", "openai-chat", "openai-responses"]


@dataclass(slots=True)
class RequestContext:
    """One request on its way through the stages.

    `body` is the canonical request: a plain dict in the Anthropic Messages shape, already validated
    by the pydantic models in `engine.protocol.anthropic`. Stages replace parts of it; they never
    reorder or re-serialise parts they do not change, so that provider prompt caches keep hitting.
    """

    request_id: str
    protocol: ClientProtocol
    body: dict[str, Any]
    headers: dict[str, str]  # lower-case names
    team: str = "default"
    session_id: str | None = None
    requested_model: str = ""
    stream: bool = False
    # Values that one stage computes and a later stage reuses (request class, last user text,
    # the embedding of that text, ...). Keys are documented where they are set.
    scratch: dict[str, Any] = field(default_factory=dict)
    # The decision record under construction: one key per stage.
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def client(self) -> str:
        return self.headers.get("user-agent", "")


def session_id_from_headers(headers: dict[str, str], extra_header: str | None = None) -> str | None:
    """Return the agent session id: Claude Code's, Codex's, or a header the policy names."""
    for name in ("x-claude-code-session-id", "session_id", "session-id"):
        value = headers.get(name)
        if value:
            return value
    if extra_header:
        return headers.get(extra_header.lower()) or None
    return None
