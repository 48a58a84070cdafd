"""The per-request context that flows through the pipeline stages."""

from __future__ import annotations

import hashlib

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

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


def conversation_session_id(body: dict[str, Any]) -> str | None:
    """Derive a session id from the start of a conversation, for clients that send none.

    Aider, Cline and Cursor send no session header, but every request of one conversation repeats
    its system prompt and first user message, so their hash identifies the conversation. Two
    conversations that start with the same system prompt and the same first message share an id,
    which only makes them share the sticky tool set and tier.
    """
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    first_user = next((m for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
    if first_user is None:
        return None
    digest = hashlib.blake2b(digest_size=12)
    digest.update(orjson.dumps(body.get("system")))
    digest.update(orjson.dumps(first_user.get("content")))
    return "derived-" + digest.hexdigest()


def resolve_session(headers: dict[str, str], body: dict[str, Any], header: str | None, derive: bool) -> tuple[str | None, str | None]:
    """Return the request's session id and where it came from: `header`, `derived` or None."""
    session_id = session_id_from_headers(headers, header)
    if session_id:
        return session_id, "header"
    if derive:
        derived = conversation_session_id(body)
        if derived:
            return derived, "derived"
    return None, None
