"""A simulation of provider prompt caching: Anthropic breakpoints and OpenAI automatic prefixes.

The stub upstream reports cache usage with these rules, and benchmarks import the same classes to
price a recorded session, so both see the same hits and misses.

Anthropic rules as modelled here (from Anthropic's prompt-caching documentation, read in 2026):
- The prefix runs tools, then system, then messages. A block with `cache_control` is a breakpoint;
  the prefix up to and including it is written to the cache when it reaches the minimum length.
- At most 4 breakpoints per request; more is a 400. A `ttl: "1h"` breakpoint may not follow a
  `ttl: "5m"` one. Entries live 5 minutes (or 1 hour) and each read restarts that time.
- A lookup at a breakpoint also tries the 20 block boundaries before it, so a breakpoint that
  moved forward still reads the prefix written at its earlier position.
- Usage: `input_tokens` is the uncached remainder, so the total input is
  `input_tokens + cache_creation_input_tokens + cache_read_input_tokens`.

OpenAI rules: a prompt of at least 1024 tokens is cached automatically in 128-token steps, and
`cached_tokens` is the longest cached prefix of the current prompt, counted inside `prompt_tokens`.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from engine import tokens

ANTHROPIC_MAX_BREAKPOINTS = 4
ANTHROPIC_LOOKBACK_BLOCKS = 20
DEFAULT_MIN_TOKENS = 1024
ANTHROPIC_TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}

OPENAI_MIN_TOKENS = 1024
OPENAI_STEP_TOKENS = 128
# NOTE: an estimate. OpenAI documents that cached prefixes stay for 5 to 10 minutes of inactivity,
# up to an hour off-peak. The simulation keeps them 5 minutes after each use.
OPENAI_TTL_SECONDS = 300.0
OPENAI_EXTENDED_TTL_SECONDS = 24 * 3600.0

DEFAULT_MAX_ENTRIES = 200_000

# Stand-in token ids for message framing and images in the OpenAI prefix stream. tiktoken ids are
# non-negative, so negative ids never collide with text.
_ROLE_TOKEN = {"user": -1, "assistant": -2}
_MESSAGE_FRAME_TOKEN = -3
_IMAGE_TOKEN = -4


class PromptCacheError(ValueError):
    """Raised for `cache_control` use that the real Anthropic API rejects with a 400."""


@dataclass(frozen=True, slots=True)
class AnthropicCacheUsage:
    """Token usage split the way the Anthropic Messages API reports it."""

    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0

    @property
    def total_input_tokens(self) -> int:
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


@dataclass(frozen=True, slots=True)
class PrefixBlock:
    """One cacheable block of an Anthropic request, with the identity of the prefix that ends at it."""

    digest: bytes
    tokens_end: int
    ttl: str | None  # "5m" or "1h" when this block carries `cache_control`, else None


class _ExpiringKeys:
    """Keys with an expiry time, bounded in number; the oldest written entries go first."""

    def __init__(self, max_entries: int) -> None:
        self._expiry: dict[Any, tuple[float, float]] = {}
        self._max_entries = max_entries

    def __len__(self) -> int:
        return len(self._expiry)

    def read(self, key: Any, now: float) -> bool:
        """Return whether key is live, and restart its time to live if so."""
        entry = self._expiry.get(key)
        if entry is None:
            return False
        expires_at, ttl = entry
        if expires_at <= now:
            del self._expiry[key]
            return False
        self._expiry[key] = (now + ttl, ttl)
        return True

    def write(self, key: Any, ttl: float, now: float) -> None:
        self._expiry.pop(key, None)
        self._expiry[key] = (now + ttl, ttl)
        if len(self._expiry) > self._max_entries:
            self._evict(now)

    def _evict(self, now: float) -> None:
        for key in [key for key, (expires_at, _) in self._expiry.items() if expires_at <= now]:
            del self._expiry[key]
        while len(self._expiry) > self._max_entries:
            del self._expiry[next(iter(self._expiry))]


def _without_cache_control(block: Any) -> Any:
    if isinstance(block, dict) and "cache_control" in block:
        return {key: value for key, value in block.items() if key != "cache_control"}
    return block


def _breakpoint_ttl(block: Any, where: str) -> str | None:
    if not isinstance(block, dict):
        return None
    control = block.get("cache_control")
    if control is None:
        return None
    if not isinstance(control, dict) or control.get("type") != "ephemeral":
        raise PromptCacheError(f'{where}.cache_control: expected {{"type": "ephemeral"}}, got {control!r}')
    ttl = control.get("ttl", "5m")
    if ttl not in ANTHROPIC_TTL_SECONDS:
        raise PromptCacheError(f'{where}.cache_control.ttl: expected "5m" or "1h", got {ttl!r}')
    return ttl


def anthropic_prefix_blocks(body: dict) -> list[PrefixBlock]:
    """Split an Anthropic Messages body into its cacheable blocks, in prefix order.

    Each block's digest identifies the whole prefix up to and including it: a running hash over
    the compact JSON of every block in received key order, with `cache_control` removed, plus
    the section, role and message start. Any other change before a block changes its digest.
    Token counts follow `engine.tokens.count_request`, so the last block's `tokens_end` equals it.
    Raises PromptCacheError for a malformed `cache_control`.
    """
    blocks: list[PrefixBlock] = []
    running = b""
    total = 0

    def add(tag: bytes, block: Any, token_count: int, ttl: str | None) -> None:
        nonlocal running, total
        payload = tag + orjson.dumps(_without_cache_control(block))
        running = hashlib.blake2b(running + payload, digest_size=16).digest()
        total += token_count
        blocks.append(PrefixBlock(running, total, ttl))

    for index, tool in enumerate(body.get("tools") or ()):
        add(b"T", tool, tokens.count_json(tool), _breakpoint_ttl(tool, f"tools.{index}"))

    system = body.get("system")
    if isinstance(system, str) and system:
        add(b"S", {"type": "text", "text": system}, tokens.count_text(system), None)
    elif isinstance(system, list):
        for index, block in enumerate(system):
            add(b"S", block, tokens.count_block(block), _breakpoint_ttl(block, f"system.{index}"))

    for message_index, message in enumerate(body.get("messages") or ()):
        if not isinstance(message, dict):
            continue
        role_tag = b"M" + str(message.get("role")).encode()
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}] if content else []
        elif not isinstance(content, list):
            content = [] if content is None else [content]
        if not content:
            add(role_tag + b"^", None, tokens.MESSAGE_OVERHEAD, None)
            continue
        for block_index, block in enumerate(content):
            first = block_index == 0
            token_count = tokens.count_block(block) + (tokens.MESSAGE_OVERHEAD if first else 0)
            where = f"messages.{message_index}.content.{block_index}"
            add(role_tag + (b"^" if first else b"+"), block, token_count, _breakpoint_ttl(block, where))

    automatic = body.get("cache_control")
    if automatic is not None and blocks:
        # A top-level cache_control places one breakpoint on the last block of the request.
        ttl = _breakpoint_ttl({"cache_control": automatic}, "cache_control")
        last = blocks[-1]
        if last.ttl is None:
            blocks[-1] = PrefixBlock(last.digest, last.tokens_end, ttl)
    return blocks


def _check_breakpoints(blocks: list[PrefixBlock]) -> list[int]:
    positions = [index for index, block in enumerate(blocks) if block.ttl is not None]
    if len(positions) > ANTHROPIC_MAX_BREAKPOINTS:
        raise PromptCacheError(
            f"A request may carry at most {ANTHROPIC_MAX_BREAKPOINTS} blocks with cache_control, "
            f"found {len(positions)}."
        )
    seen_short = False
    for position in positions:
        if blocks[position].ttl == "5m":
            seen_short = True
        elif seen_short:
            raise PromptCacheError(
                'A cache_control block with ttl "1h" must not come after one with ttl "5m"; '
                "put the longer-lived breakpoints first."
            )
    return positions


class PromptCacheSimulator:
    """Per-model prompt caches with the Anthropic and OpenAI rules; safe to share between threads.

    `clock` returns seconds and is replaceable so tests can move time forward.
    """

    def __init__(
        self,
        *,
        min_tokens: int = DEFAULT_MIN_TOKENS,
        openai_min_tokens: int = OPENAI_MIN_TOKENS,
        lookback_blocks: int = ANTHROPIC_LOOKBACK_BLOCKS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min_tokens < 0 or openai_min_tokens < 0:
            raise ValueError("minimum cacheable tokens must not be negative")
        self.min_tokens = min_tokens
        self.openai_min_tokens = openai_min_tokens
        self.lookback_blocks = lookback_blocks
        self._clock = clock
        self._anthropic = _ExpiringKeys(max_entries)
        self._openai = _ExpiringKeys(max_entries)
        self._lock = threading.Lock()

    def anthropic_usage(self, body: dict, model: str | None = None) -> AnthropicCacheUsage:
        """Look up and write the prefixes of one Messages request; return its usage split.

        Raises PromptCacheError for what the real API rejects (more than 4 breakpoints, a bad ttl).
        """
        blocks = anthropic_prefix_blocks(body)
        positions = _check_breakpoints(blocks)
        total = blocks[-1].tokens_end if blocks else 0
        model_key = model if model is not None else str(body.get("model"))
        with self._lock:
            return self._anthropic_lookup(blocks, positions, total, model_key)

    def _anthropic_lookup(
        self, blocks: list[PrefixBlock], positions: list[int], total: int, model: str
    ) -> AnthropicCacheUsage:
        now = self._clock()
        read_at = -1
        for position in positions:
            earliest = max(position - self.lookback_blocks, read_at + 1, 0)
            for candidate in range(position, earliest - 1, -1):
                if self._anthropic.read((model, blocks[candidate].digest), now):
                    read_at = candidate
                    break
        read_tokens = blocks[read_at].tokens_end if read_at >= 0 else 0

        created = {"5m": 0, "1h": 0}
        written_end = read_tokens
        for position in positions:
            block = blocks[position]
            if position <= read_at or block.tokens_end < self.min_tokens:
                continue
            self._anthropic.write((model, block.digest), ANTHROPIC_TTL_SECONDS[block.ttl], now)
            created[block.ttl] += block.tokens_end - written_end
            written_end = block.tokens_end

        creation_tokens = created["5m"] + created["1h"]
        return AnthropicCacheUsage(
            input_tokens=total - read_tokens - creation_tokens,
            cache_creation_input_tokens=creation_tokens,
            cache_read_input_tokens=read_tokens,
            ephemeral_5m_input_tokens=created["5m"],
            ephemeral_1h_input_tokens=created["1h"],
        )

    def openai_cached_tokens(self, canonical_body: dict, model: str | None = None, *, extended: bool = False) -> int:
        """Return the cached prefix tokens of an OpenAI prompt, given in the canonical shape, and cache it.

        `extended` keeps the new entries for 24 hours (`prompt_cache_retention: "24h"`).
        """
        stream = openai_prefix_tokens(canonical_body)
        model_key = model if model is not None else str(canonical_body.get("model"))
        ttl = OPENAI_EXTENDED_TTL_SECONDS if extended else OPENAI_TTL_SECONDS
        boundaries = _step_digests(stream, self.openai_min_tokens)
        with self._lock:
            now = self._clock()
            cached = 0
            for end, digest in reversed(boundaries):
                if self._openai.read((model_key, digest), now):
                    cached = end
                    break
            for end, digest in boundaries:
                if end > cached:
                    self._openai.write((model_key, digest), ttl, now)
        return cached

    def clear(self) -> None:
        with self._lock:
            self._anthropic = _ExpiringKeys(self._anthropic._max_entries)
            self._openai = _ExpiringKeys(self._openai._max_entries)


def _step_digests(stream: array, min_tokens: int) -> list[tuple[int, bytes]]:
    """Return (end, digest) for each 128-token step boundary at or above min_tokens."""
    boundaries: list[tuple[int, bytes]] = []
    running = b""
    for end in range(OPENAI_STEP_TOKENS, len(stream) + 1, OPENAI_STEP_TOKENS):
        chunk = stream[end - OPENAI_STEP_TOKENS : end].tobytes()
        running = hashlib.blake2b(running + chunk, digest_size=16).digest()
        if end >= max(min_tokens, OPENAI_STEP_TOKENS):
            boundaries.append((end, running))
    return boundaries


def openai_prefix_tokens(canonical_body: dict) -> array:
    """Return the token ids of a canonical request in prompt order: tools, system, messages.

    Mirrors `engine.tokens.count_request`, so the length equals that count. Message framing and
    images become stand-in ids, so an image is one fixed run of ids whatever its data.
    """
    stream = array("q")
    for tool in canonical_body.get("tools") or ():
        _extend_json(stream, tool)
    _extend_content(stream, canonical_body.get("system"))
    for message in canonical_body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        role = _ROLE_TOKEN.get(message.get("role"), _MESSAGE_FRAME_TOKEN)
        stream.extend([role] + [_MESSAGE_FRAME_TOKEN] * (tokens.MESSAGE_OVERHEAD - 1))
        _extend_content(stream, message.get("content"))
    return stream


# Agent sessions resend the same long texts (system prompt, tool schemas, history) on every turn,
# so their encodings are kept, up to this many texts.
_ENCODING_CACHE_TEXTS = 4096
_SHORT_TEXT_CHARS = 256


@functools.lru_cache(maxsize=_ENCODING_CACHE_TEXTS)
def _encode_long(text: str) -> array:
    return array("q", tokens.encoding().encode_ordinary(text))


def _extend_text(stream: array, text: str) -> None:
    if not text:
        return
    if len(text) < _SHORT_TEXT_CHARS:
        stream.extend(tokens.encoding().encode_ordinary(text))
    else:
        stream.extend(_encode_long(text))


def _extend_json(stream: array, value: Any) -> None:
    _extend_text(stream, value if isinstance(value, str) else orjson.dumps(value).decode())


def _extend_content(stream: array, content: Any) -> None:
    if content is None:
        return
    if isinstance(content, str):
        _extend_text(stream, content)
    elif isinstance(content, list):
        for block in content:
            _extend_block(stream, block)
    else:
        _extend_json(stream, content)


def _extend_block(stream: array, block: Any) -> None:
    if isinstance(block, str):
        _extend_text(stream, block)
        return
    if not isinstance(block, dict):
        _extend_json(stream, block)
        return
    kind = block.get("type")
    if kind == "text":
        _extend_text(stream, block.get("text") or "")
    elif kind in ("image", "document"):
        stream.extend([_IMAGE_TOKEN] * tokens.IMAGE_TOKENS)
    elif kind == "tool_use":
        _extend_text(stream, block.get("name") or "")
        _extend_json(stream, block.get("input") or {})
    elif kind == "tool_result":
        _extend_content(stream, block.get("content"))
    elif kind == "thinking":
        _extend_text(stream, block.get("thinking") or "")
    elif kind != "redacted_thinking":
        _extend_json(stream, block)
