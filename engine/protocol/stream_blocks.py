"""Shared by the upstream stream readers that build canonical Anthropic events from another format."""

from __future__ import annotations

from typing import Any


class OpenBlockEvents:
    """Numbers the content blocks of a canonical event stream and keeps one text or thinking block open.

    A subclass sets `_next_index = 0` and `_open = None` and defines `_close_all(events)`, which closes
    whatever is open before another block starts.
    """

    _next_index: int
    _open: str | None

    def _close_all(self, events: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def _delta(self, delta: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": self._next_index - 1, "delta": delta}

    def _ensure_open(self, kind: str, events: list[dict[str, Any]]) -> None:
        if self._open == kind:
            return
        self._close_all(events)
        block: dict[str, Any] = {"type": "text", "text": ""}
        if kind == "thinking":
            block = {"type": "thinking", "thinking": "", "signature": ""}
        events.append({"type": "content_block_start", "index": self._next_index, "content_block": block})
        self._next_index += 1
        self._open = kind
