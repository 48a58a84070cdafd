"""Server-sent events and NDJSON: encoders for gateway responses, incremental parsers for upstream bytes."""

from __future__ import annotations

from typing import Any

import orjson

from engine.protocol.errors import ProtocolError

_BOM = "\ufeff"


def encode_event(event: dict[str, Any]) -> bytes:
    """Encode an Anthropic stream event as `event: <type>` plus a compact JSON `data:` line.

    The Anthropic SDKs dispatch on the `event:` line, so it must match the event's `type`.
    """
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def encode_data(obj: Any) -> bytes:
    """Encode one data-only SSE message; a `str` is sent as is (for `[DONE]`), anything else as JSON."""
    payload = obj.encode() if isinstance(obj, str) else orjson.dumps(obj)
    return b"data: " + payload + b"\n\n"


class SSEParser:
    """Incremental parser of an SSE byte stream into `(event name or None, data)` pairs.

    It follows the WHATWG event-stream rules. Lines end in CRLF, LF or CR, and a line starting with
    `:` is a comment. Several `data:` lines of one event are joined with newlines, and an event
    without data is not dispatched. Chunks may be split anywhere, including inside a UTF-8 sequence
    or between CR and LF.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()  # appended in place, so a long line costs linear time
        self._event: str | None = None
        self._data: list[str] = []
        self._first_line = True
        self._skip_lf = False

    def feed(self, chunk: bytes) -> list[tuple[str | None, str]]:
        if self._skip_lf and chunk:
            # The previous chunk ended in CR, which already ended its line; an LF right after it
            # belongs to the same CRLF.
            self._skip_lf = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        if b"\n" not in chunk and b"\r" not in chunk:
            # No line ends here: the chunk only extends the current line. Returning early keeps a
            # long line that arrives in many chunks linear instead of re-splitting the buffer.
            self._buffer += chunk
            return []

        self._buffer += chunk
        lines = self._buffer.splitlines(keepends=True)
        if lines[-1].endswith((b"\n", b"\r")):
            self._buffer = bytearray()
            self._skip_lf = lines[-1].endswith(b"\r")
        else:
            self._buffer = lines.pop()

        events: list[tuple[str | None, str]] = []
        for raw in lines:
            line = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
            self._process_line(line, events)
        return events

    def finish(self) -> list[tuple[str | None, str]]:
        """Flush what is left when the stream ends: a last line without a newline and its event.

        Strict SSE discards an event that lacks its closing blank line. An upstream that was cut just
        before that line still sent a whole JSON payload, so this method returns it.
        """
        events: list[tuple[str | None, str]] = []
        if self._buffer:
            line = self._buffer.rstrip(b"\r\n").decode("utf-8", errors="replace")
            self._buffer = bytearray()
            self._process_line(line, events)
        self._process_line("", events)
        return events

    def _process_line(self, line: str, events: list[tuple[str | None, str]]) -> None:
        if self._first_line:
            self._first_line = False
            if line.startswith(_BOM):
                line = line[1:]

        if not line:
            if self._data:
                events.append((self._event, "\n".join(self._data)))
            self._event = None
            self._data = []
            return
        if line.startswith(":"):
            return

        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        # `id` and `retry` matter to browsers reconnecting, not to a proxy; they are ignored.


class NDJSONParser:
    """Incremental parser of newline-delimited JSON (Ollama streams) into decoded objects.

    Blank lines are skipped. A line that is not JSON raises ProtocolError with status 502, because
    it is the upstream that broke the format.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[Any]:
        self._buffer += chunk
        if b"\n" not in chunk:
            return []
        *lines, rest = self._buffer.split(b"\n")
        self._buffer = bytearray(rest)
        return [self._decode(line) for line in lines if line.strip()]

    def finish(self) -> list[Any]:
        """Decode a last line that the upstream did not end with a newline."""
        line, self._buffer = self._buffer, bytearray()
        return [self._decode(line)] if line.strip() else []

    @staticmethod
    def _decode(line: bytes) -> Any:
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            preview = line[:80].decode("utf-8", errors="replace")
            raise ProtocolError(
                f"upstream sent a line that is not JSON ({exc}): {preview!r}", status=502
            ) from None
