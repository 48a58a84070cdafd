"""The lexical and structural tier features (1 to 14), computed from a canonical request body.

The extractor is pure and cheap: it walks the body once and runs a handful of compiled regexes over
the last user text. Token counts here are estimates from character counts, because running tiktoken
over a Claude Code request (about 55 KB of tools and system prompt) takes milliseconds. The features
are logarithms or shares, so an error of a few percent does not matter as long as training and
routing use the same estimate.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from engine.stages.tier.policy import FEATURE_NAMES, MarkerVocabularies

LEXICAL_FEATURES: tuple[str, ...] = FEATURE_NAMES[:14]

# cl100k_base averages about 4 characters a token on English text and on the JSON of tool
# definitions (about 4.5 measured on Claude Code's 16 tools and system prompt), less on dense code.
CHARS_PER_TOKEN = 4.0
# Images and documents count as a fixed size, as in engine.tokens (1600 tokens).
IMAGE_CHARS = 1600 * 4

# Only the tail of a tool result is scanned for error lines: test runners and compilers print the
# failure last, and a capped scan keeps the extractor fast on huge outputs.
TOOL_RESULT_SCAN_CHARS = 32_000

_SYSTEM_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.DOTALL)
_FENCE = re.compile(r"^[ \t]*(```|~~~)", re.MULTILINE)

_FILE_EXTENSIONS = (
    "py|pyi|js|mjs|cjs|ts|tsx|jsx|go|rs|java|kt|kts|rb|php|c|h|cc|cpp|hpp|cs|swift|m|mm|scala|sql|"
    "yaml|yml|json|toml|ini|cfg|md|rst|txt|sh|bash|zsh|ps1|html|css|scss|vue|svelte|proto|tf|gradle|"
    "xml|lock|env|dockerfile|mk|cmake|ex|exs|erl|hs|ml|clj|lua|dart|r|jl|zig|nim|sol"
)
_REFERENCE = re.compile(
    r"(?:[\w.@~-]+/)+[\w.@-]+"  # paths with a slash: src/app/main.py, ./build, ~/x/y
    rf"|\b[\w-]+\.(?:{_FILE_EXTENSIONS})\b"  # file names: main.py, Cargo.lock
    r"|\b[A-Za-z_][A-Za-z0-9]*_[A-Za-z0-9_]+\b"  # snake_case identifiers
    r"|\b[a-z][a-z0-9]*[A-Z][A-Za-z0-9]*\b"  # camelCase identifiers
    r"|\b[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*\b"  # PascalCase with two or more humps
    r"|\b[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)+\(\)"  # dotted calls: os.path.join()
    r"|\b[A-Za-z_]\w*\(\)"  # calls: parse()
    r"|`[^`\n]{1,80}`"  # inline code spans
)


def extract_features(body: dict[str, Any], markers: MarkerVocabularies) -> dict[str, float]:
    """Compute features 1 to 14 of a canonical request body, in FEATURE_NAMES order."""
    messages = [message for message in body.get("messages") or () if isinstance(message, dict)]
    tools = [tool for tool in body.get("tools") or () if isinstance(tool, dict)]

    total_chars, tool_result_chars = _count_chars(body, messages, tools)
    user_text = last_user_text(messages)
    prose, code_lines = split_code(user_text)
    trace_text = user_text + "\n" + last_tool_result_text(messages)[-TOOL_RESULT_SCAN_CHARS:]

    return {
        "log_input_tokens": math.log1p(total_chars / CHARS_PER_TOKEN),
        "log_last_user_tokens": math.log1p(len(user_text) / CHARS_PER_TOKEN),
        "message_count": float(len(messages)),
        "tool_result_share": tool_result_chars / total_chars if total_chars else 0.0,
        "tool_rounds": float(count_tool_rounds(messages)),
        "tools_offered": float(len(tools)),
        "write_tools_offered": 1.0 if any(markers.is_write_tool(str(tool.get("name", ""))) for tool in tools) else 0.0,
        "code_lines": float(code_lines),
        "error_trace_lines": float(markers.count_error_lines(trace_text)),
        "file_references": float(len({match.group(0) for match in _REFERENCE.finditer(prose)})),
        "reasoning_markers": float(_count(markers.pattern("reasoning"), prose)),
        "multi_step_markers": float(_count(markers.pattern("multi_step"), prose)),
        "risk_markers": float(_count(markers.pattern("risk"), prose)),
        "lookup_markers": float(_count(markers.pattern("lookup"), prose)),
    }


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """Return the text of the latest user message that has any, without tool results or system reminders.

    In an agent loop the last user message often contains only tool results. The task the user typed
    is then in an earlier message, and the marker features read that text.
    """
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        text = _SYSTEM_REMINDER.sub("", _text_of(message.get("content"))).strip()
        if text:
            return text
    return ""


def last_tool_result_text(messages: list[dict[str, Any]]) -> str:
    """Return the text of the last tool_result block in the conversation, or an empty string."""
    for message in reversed(messages):
        content = message.get("content")
        if message.get("role") != "user" or not isinstance(content, list):
            continue
        for block in reversed(content):
            if isinstance(block, dict) and block.get("type") == "tool_result":
                return _text_of(block.get("content"))
    return ""


def split_code(text: str) -> tuple[str, int]:
    """Split text into its prose (fenced code removed) and the number of lines inside code fences.

    An unclosed fence runs to the end of the text, as Markdown renders it.
    """
    fences = list(_FENCE.finditer(text))
    if not fences:
        return text, 0

    prose_parts: list[str] = []
    code_lines = 0
    position = 0
    for index in range(0, len(fences), 2):
        opening = fences[index]
        prose_parts.append(text[position : opening.start()])
        body_start = text.find("\n", opening.end())
        if body_start < 0:
            position = len(text)
            break
        closing = fences[index + 1] if index + 1 < len(fences) else None
        body_end = closing.start() if closing else len(text)
        code_lines += text.count("\n", body_start + 1, body_end) + (0 if closing else 1)
        if closing is None:
            position = len(text)
            break
        line_end = text.find("\n", closing.end())
        position = len(text) if line_end < 0 else line_end
    prose_parts.append(text[position:])
    return "".join(prose_parts), code_lines


def count_tool_rounds(messages: list[dict[str, Any]]) -> int:
    """Count the consecutive tool_use -> tool_result rounds at the end of the conversation."""
    rounds = 0
    index = len(messages) - 1
    while index >= 1:
        user, assistant = messages[index], messages[index - 1]
        if user.get("role") != "user" or assistant.get("role") != "assistant":
            break
        if not (_has_block(user, "tool_result") and _has_block(assistant, "tool_use")):
            break
        rounds += 1
        index -= 2
    return rounds


def _count(pattern: re.Pattern[str] | None, text: str) -> int:
    if pattern is None or not text:
        return 0
    return sum(1 for _ in pattern.finditer(text))


def _has_block(message: dict[str, Any], kind: str) -> bool:
    content = message.get("content")
    if not isinstance(content, list):
        return False
    return any(isinstance(block, dict) and block.get("type") == kind for block in content)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text") or ""))
    return "\n".join(parts)


def _count_chars(body: dict[str, Any], messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> tuple[int, int]:
    """Return (characters of the whole input, characters inside tool results)."""
    total = _content_chars(body.get("system"))
    if tools:
        total += len(orjson.dumps(tools))
    tool_result_chars = 0
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            total += _content_chars(content)
            continue
        for block in content:
            size = _content_chars([block])
            total += size
            if isinstance(block, dict) and block.get("type") == "tool_result":
                tool_result_chars += size
    return total, tool_result_chars


def _content_chars(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content)
    if not isinstance(content, list):
        return len(orjson.dumps(content, default=str))
    size = 0
    for block in content:
        if isinstance(block, str):
            size += len(block)
            continue
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            size += len(str(block.get("text") or ""))
        elif kind == "tool_result":
            size += _content_chars(block.get("content"))
        elif kind == "tool_use":
            size += len(str(block.get("name") or "")) + len(orjson.dumps(block.get("input") or {}, default=str))
        elif kind == "thinking":
            size += len(str(block.get("thinking") or ""))
        elif kind in ("image", "document"):
            size += IMAGE_CHARS
        elif kind != "redacted_thinking":
            size += len(orjson.dumps(block, default=str))
    return size
