"""The stub's replies: markers read from the last user text, then a deterministic reply.

Markers (documented in docs/stub-upstream.md):
- `<<call NAME {json args}>>`: reply with that tool call. Several markers make parallel calls.
- `<<fault SPEC>>`: apply a fault to this request (see faults.py).
- `<<quirk finish_reason_stop>>`: on OpenAI Chat, report finish_reason "stop" with tool calls.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import orjson

from engine import tokens
from engine.stub.canonical import InvalidRequest
from engine.stub.faults import Fault, FaultSpecError, parse_fault

CALL_MARKER = re.compile(r"<<call\s+([A-Za-z0-9_.:\-]+)\s*(\{.*?\})?\s*>>", re.DOTALL)
FAULT_MARKER = re.compile(r"<<fault\s+([^>]*)>>")
QUIRK_MARKER = re.compile(r"<<quirk\s+([A-Za-z0-9_]+)\s*>>")
ANY_MARKER = re.compile(r"<<(?:call|fault|quirk)\b.*?>>", re.DOTALL)

QUIRKS = frozenset({"finish_reason_stop"})
ANSWER_WORDS = 8


@dataclass(frozen=True, slots=True)
class ToolCall:
    id_suffix: str  # protocols add their own prefix: toolu_, call_, fc_
    name: str
    arguments: object
    arguments_json: str


@dataclass(slots=True)
class Reply:
    """A deterministic reply with its output token count, independent of the wire protocol."""

    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    stop: str = "end_turn"  # end_turn, tool_use or max_tokens, in Anthropic terms
    output_tokens: int = 0
    quirks: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Markers:
    calls: list[tuple[str, object]]
    faults: list[Fault]
    quirks: frozenset[str]
    plain_text: str


def last_user_text(canonical: dict) -> tuple[str, int]:
    """Return the text of the last user message and how many tool results it carries."""
    for message in reversed(canonical.get("messages") or ()):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content, 0
        texts: list[str] = []
        results = 0
        for block in content or ():
            if isinstance(block, dict) and block.get("type") == "text":
                texts.append(block.get("text") or "")
            elif isinstance(block, dict) and block.get("type") == "tool_result":
                results += 1
        return "\n".join(texts), results
    return "", 0


def read_markers(text: str) -> Markers:
    """Parse the markers of a user text; raise InvalidRequest for a malformed one."""
    if "<<" not in text:
        return Markers([], [], frozenset(), text)
    calls: list[tuple[str, object]] = []
    for match in CALL_MARKER.finditer(text):
        raw_arguments = match.group(2) or "{}"
        try:
            arguments = orjson.loads(raw_arguments)
        except orjson.JSONDecodeError as error:
            raise InvalidRequest(f"stub marker <<call {match.group(1)} ...>>: the arguments are not valid JSON: {error}") from None
        calls.append((match.group(1), arguments))
    faults: list[Fault] = []
    for match in FAULT_MARKER.finditer(text):
        try:
            faults.append(parse_fault(match.group(1)))
        except FaultSpecError as error:
            raise InvalidRequest(f"stub marker <<fault ...>>: {error}") from None
    quirks = frozenset(match.group(1) for match in QUIRK_MARKER.finditer(text))
    unknown = quirks - QUIRKS
    if unknown:
        raise InvalidRequest(f"stub marker <<quirk ...>>: unknown quirk {', '.join(sorted(unknown))}; known: {', '.join(sorted(QUIRKS))}")
    return Markers(calls, faults, quirks, ANY_MARKER.sub(" ", text))


def plan_reply(canonical: dict, markers: Markers, tool_results: int, max_output_tokens: int | None) -> Reply:
    """Build the reply to a request from its markers; truncate text at max_output_tokens."""
    if markers.calls:
        seed = f"{len(canonical.get('messages') or ())}\x00{markers.plain_text}"
        calls = []
        for index, (name, arguments) in enumerate(markers.calls):
            suffix = hashlib.blake2b(f"{seed}\x00{index}".encode(), digest_size=12).hexdigest()
            calls.append(ToolCall(suffix, name, arguments, orjson.dumps(arguments).decode()))
        output = sum(tokens.count_text(call.name) + tokens.count_text(call.arguments_json) for call in calls)
        return Reply("", calls, "tool_use", output, markers.quirks)

    if tool_results:
        text = f"stub received {tool_results} tool result{'s' if tool_results != 1 else ''}."
    else:
        words = markers.plain_text.split()[:ANSWER_WORDS]
        text = f"stub answer to: {' '.join(words)}" if words else "stub answer."
    encoded = tokens.encoding().encode_ordinary(text)
    if max_output_tokens is not None and len(encoded) > max_output_tokens:
        return Reply(tokens.encoding().decode(encoded[:max_output_tokens]), [], "max_tokens", max_output_tokens, markers.quirks)
    return Reply(text, [], "end_turn", len(encoded), markers.quirks)


def split_fragments(text: str, pieces: int = 3) -> list[str]:
    """Split text into at least `pieces` fragments where it is long enough, as providers stream arguments."""
    if len(text) <= pieces:
        return list(text) or [""]
    size = -(-len(text) // pieces)
    return [text[start : start + size] for start in range(0, len(text), size)]


def split_words(text: str) -> list[str]:
    """Split text into word-sized deltas that concatenate back to the text."""
    parts = re.findall(r"\S+\s*|\s+", text)
    return parts or [""]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one exchange. `input_tokens` is the whole prompt, cached parts included."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_creation_5m_tokens: int = 0
    cache_creation_1h_tokens: int = 0

    @property
    def uncached_input_tokens(self) -> int:
        return self.input_tokens - self.cache_read_tokens - self.cache_creation_tokens
