"""The prompt-caching simulator on Claude Code's real system prompt and tool list."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from engine import tokens
from engine.stub.prompt_cache import (
    PromptCacheError,
    PromptCacheSimulator,
    anthropic_prefix_blocks,
    openai_prefix_tokens,
)

DATA = Path(__file__).parent / "data"
SYSTEM_TEXTS = json.loads((DATA / "claude_code_1.0.123_system.json").read_text())["blocks"]
TOOLS = json.loads((DATA / "claude_code_16tools.json").read_text())
EPHEMERAL = {"type": "ephemeral"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(clock: FakeClock) -> PromptCacheSimulator:
    return PromptCacheSimulator(clock=clock)


def conversation(turns: int, *, breakpoint_on_last: bool = True, system_breakpoint: bool = True, model: str = "claude-sonnet-4-5") -> dict:
    """A Claude Code style request: 16 tools, the system prompt, then `turns` user/assistant pairs."""
    system = [{"type": "text", "text": text} for text in SYSTEM_TEXTS]
    if system_breakpoint:
        system[-1]["cache_control"] = dict(EPHEMERAL)
    messages: list[dict] = []
    for turn in range(turns):
        messages.append({"role": "user", "content": [{"type": "text", "text": f"question {turn}: what does module_{turn}.py do?"}]})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": f"module_{turn}.py parses the config, line {turn}."}]})
    messages.append({"role": "user", "content": [{"type": "text", "text": "and now the tests, please"}]})
    if breakpoint_on_last:
        messages[-1]["content"][-1]["cache_control"] = dict(EPHEMERAL)
    return {"model": model, "max_tokens": 1024, "tools": copy.deepcopy(TOOLS), "system": system, "messages": messages}


def test_prefix_blocks_sum_to_count_request():
    body = conversation(3)
    blocks = anthropic_prefix_blocks(body)
    assert blocks[-1].tokens_end == tokens.count_request(body)
    assert len(blocks) == len(TOOLS) + len(SYSTEM_TEXTS) + 7


def test_first_request_writes_second_reads(cache):
    body = conversation(2)
    total = tokens.count_request(body)

    first = cache.anthropic_usage(body)
    assert first.cache_read_input_tokens == 0
    assert first.cache_creation_input_tokens == total
    assert first.input_tokens == 0

    second = cache.anthropic_usage(body)
    assert second.cache_read_input_tokens == total
    assert second.cache_creation_input_tokens == 0
    assert second.total_input_tokens == total


def test_usage_parts_add_up_to_total(cache):
    body = conversation(2, breakpoint_on_last=False)
    usage = cache.anthropic_usage(body)
    assert usage.total_input_tokens == tokens.count_request(body)
    assert usage.input_tokens > 0
    assert usage.cache_creation_input_tokens == anthropic_prefix_blocks(body)[len(TOOLS) + len(SYSTEM_TEXTS) - 1].tokens_end


def test_prefix_change_is_a_miss(cache):
    cache.anthropic_usage(conversation(1))
    changed = conversation(1)
    changed["tools"][3]["description"] += " Extra sentence."
    usage = cache.anthropic_usage(changed)
    assert usage.cache_read_input_tokens == 0
    assert usage.cache_creation_input_tokens == tokens.count_request(changed)


def test_tool_order_change_is_a_miss(cache):
    cache.anthropic_usage(conversation(1))
    reordered = conversation(1)
    reordered["tools"] = reordered["tools"][1:] + reordered["tools"][:1]
    assert cache.anthropic_usage(reordered).cache_read_input_tokens == 0


def test_key_order_change_is_a_miss(cache):
    cache.anthropic_usage(conversation(1))
    reordered = conversation(1)
    tool = reordered["tools"][0]
    reordered["tools"][0] = {key: tool[key] for key in reversed(list(tool))}
    assert cache.anthropic_usage(reordered).cache_read_input_tokens == 0


def test_change_after_breakpoint_still_reads_prefix(cache):
    cache.anthropic_usage(conversation(1, breakpoint_on_last=False))
    later = conversation(1, breakpoint_on_last=False)
    later["messages"][-1]["content"][0]["text"] = "something else entirely"
    usage = cache.anthropic_usage(later)
    system_end = anthropic_prefix_blocks(later)[len(TOOLS) + len(SYSTEM_TEXTS) - 1].tokens_end
    assert usage.cache_read_input_tokens == system_end
    assert usage.cache_creation_input_tokens == 0


def test_moved_breakpoint_reads_through_lookback(cache):
    earlier = conversation(2)
    cache.anthropic_usage(earlier)
    earlier_total = tokens.count_request(earlier)

    # The next turn: the old last user message loses its breakpoint, two new messages follow.
    later = conversation(2)
    del later["messages"][-1]["content"][-1]["cache_control"]
    later["messages"].append({"role": "assistant", "content": [{"type": "text", "text": "Here are the tests."}]})
    later["messages"].append({"role": "user", "content": [{"type": "text", "text": "thanks", "cache_control": dict(EPHEMERAL)}]})
    usage = cache.anthropic_usage(later)

    assert usage.cache_read_input_tokens == earlier_total
    assert usage.cache_creation_input_tokens == tokens.count_request(later) - earlier_total
    assert usage.input_tokens == 0


def test_breakpoint_beyond_lookback_misses_old_prefix(cache):
    earlier = conversation(1, system_breakpoint=False)
    cache.anthropic_usage(earlier)

    later = conversation(1, system_breakpoint=False)
    del later["messages"][-1]["content"][-1]["cache_control"]
    for index in range(11):  # 22 more blocks, past the 20-block lookback
        later["messages"].append({"role": "assistant", "content": [{"type": "text", "text": f"step {index}"}]})
        later["messages"].append({"role": "user", "content": [{"type": "text", "text": f"go on {index}"}]})
    later["messages"][-1]["content"][-1]["cache_control"] = dict(EPHEMERAL)
    usage = cache.anthropic_usage(later)

    assert usage.cache_read_input_tokens == 0
    assert usage.cache_creation_input_tokens == tokens.count_request(later)


def test_cache_control_is_not_part_of_identity(cache):
    cache.anthropic_usage(conversation(1, breakpoint_on_last=False))
    # Same blocks, but the breakpoint sits three blocks later: the lookback finds the system prefix.
    moved = conversation(1, system_breakpoint=False)
    usage = cache.anthropic_usage(moved)
    system_end = anthropic_prefix_blocks(moved)[len(TOOLS) + len(SYSTEM_TEXTS) - 1].tokens_end
    assert usage.cache_read_input_tokens == system_end


def test_entry_expires_after_five_minutes(cache, clock):
    body = conversation(1)
    cache.anthropic_usage(body)
    clock.now += 301
    assert cache.anthropic_usage(body).cache_read_input_tokens == 0


def test_read_refreshes_ttl(cache, clock):
    body = conversation(1)
    cache.anthropic_usage(body)
    clock.now += 200
    assert cache.anthropic_usage(body).cache_read_input_tokens > 0
    clock.now += 200  # 400 s after the write, 200 s after the read
    assert cache.anthropic_usage(body).cache_read_input_tokens > 0


def test_one_hour_ttl_outlives_five_minutes(cache, clock):
    body = conversation(1, breakpoint_on_last=False)
    body["system"][-1]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    first = cache.anthropic_usage(body)
    assert first.ephemeral_1h_input_tokens == first.cache_creation_input_tokens
    assert first.ephemeral_5m_input_tokens == 0
    clock.now += 1800
    assert cache.anthropic_usage(body).cache_read_input_tokens == first.cache_creation_input_tokens
    clock.now += 3601
    assert cache.anthropic_usage(body).cache_read_input_tokens == 0


def test_creation_split_by_ttl(cache):
    body = conversation(1)
    body["system"][-1]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    usage = cache.anthropic_usage(body)
    system_end = anthropic_prefix_blocks(body)[len(TOOLS) + len(SYSTEM_TEXTS) - 1].tokens_end
    assert usage.ephemeral_1h_input_tokens == system_end
    assert usage.ephemeral_5m_input_tokens == tokens.count_request(body) - system_end


def test_short_prefix_is_not_cached(cache):
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "You are brief.", "cache_control": dict(EPHEMERAL)}],
        "messages": [{"role": "user", "content": "hello"}],
    }
    for _ in range(2):
        usage = cache.anthropic_usage(body)
        assert usage.cache_creation_input_tokens == 0
        assert usage.cache_read_input_tokens == 0
        assert usage.input_tokens == tokens.count_request(body)


def test_min_tokens_is_configurable(clock):
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "You are brief. " * 20, "cache_control": dict(EPHEMERAL)}],
        "messages": [{"role": "user", "content": "hello"}],
    }
    small = PromptCacheSimulator(min_tokens=10, clock=clock)
    assert small.anthropic_usage(body).cache_creation_input_tokens > 0
    assert small.anthropic_usage(body).cache_read_input_tokens > 0


def test_caches_are_per_model(cache):
    cache.anthropic_usage(conversation(1, model="claude-sonnet-4-5"))
    other = cache.anthropic_usage(conversation(1, model="claude-haiku-4-5"))
    assert other.cache_read_input_tokens == 0
    again = cache.anthropic_usage(conversation(1, model="claude-sonnet-4-5"))
    assert again.cache_read_input_tokens > 0


def test_four_breakpoints_allowed_five_rejected(cache):
    body = conversation(2)
    body["tools"][0]["cache_control"] = dict(EPHEMERAL)
    body["messages"][0]["content"][0]["cache_control"] = dict(EPHEMERAL)
    cache.anthropic_usage(body)  # four: tool, system, first and last user message

    body["messages"][1]["content"][0]["cache_control"] = dict(EPHEMERAL)
    with pytest.raises(PromptCacheError, match="at most 4"):
        cache.anthropic_usage(body)


def test_one_hour_after_five_minutes_rejected(cache):
    body = conversation(1)
    body["messages"][-1]["content"][-1]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    with pytest.raises(PromptCacheError, match='ttl "1h"'):
        cache.anthropic_usage(body)


@pytest.mark.parametrize("control", [{"type": "persistent"}, {"type": "ephemeral", "ttl": "10m"}, "ephemeral"])
def test_malformed_cache_control_rejected(cache, control):
    body = conversation(1, breakpoint_on_last=False)
    body["system"][-1]["cache_control"] = control
    with pytest.raises(PromptCacheError):
        cache.anthropic_usage(body)


def test_top_level_cache_control_marks_last_block(cache):
    body = conversation(1, breakpoint_on_last=False, system_breakpoint=False)
    body["cache_control"] = dict(EPHEMERAL)
    first = cache.anthropic_usage(body)
    assert first.cache_creation_input_tokens == tokens.count_request(body)
    assert cache.anthropic_usage(body).cache_read_input_tokens == tokens.count_request(body)


def test_no_breakpoints_no_caching(cache):
    body = conversation(1, breakpoint_on_last=False, system_breakpoint=False)
    for _ in range(2):
        usage = cache.anthropic_usage(body)
        assert usage.cache_read_input_tokens == 0
        assert usage.cache_creation_input_tokens == 0


# --- OpenAI automatic prefix caching ---------------------------------------------------------------


def canonical_chat(turn_text: str, model: str = "gpt-4o") -> dict:
    return {
        "model": model,
        "tools": copy.deepcopy(TOOLS[:4]),
        "system": [{"type": "text", "text": text} for text in SYSTEM_TEXTS],
        "messages": [{"role": "user", "content": [{"type": "text", "text": turn_text}]}],
    }


def test_openai_prefix_tokens_match_count_request():
    body = canonical_chat("hello")
    body["messages"].append({"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "Read", "input": {"file_path": "/a"}}]})
    body["messages"].append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "data"}]})
    assert len(openai_prefix_tokens(body)) == tokens.count_request(body)


def test_openai_repeat_prompt_caches_in_128_steps(cache):
    body = canonical_chat("first question")
    total = tokens.count_request(body)
    assert total >= 1024
    assert cache.openai_cached_tokens(body) == 0
    cached = cache.openai_cached_tokens(body)
    assert cached == total // 128 * 128
    assert cached % 128 == 0


def test_openai_changed_tail_reads_common_prefix(cache):
    cache.openai_cached_tokens(canonical_chat("first question"))
    body = canonical_chat("a different question that is longer")
    prefix = tokens.count_request({**body, "messages": []})
    cached = cache.openai_cached_tokens(body)
    assert cached == prefix // 128 * 128


def test_openai_short_prompt_not_cached(cache):
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}
    cache.openai_cached_tokens(body)
    assert cache.openai_cached_tokens(body) == 0


def test_openai_changed_start_is_a_miss(cache):
    cache.openai_cached_tokens(canonical_chat("first question"))
    body = canonical_chat("first question")
    body["tools"][0]["description"] = "Different opening line."
    assert cache.openai_cached_tokens(body) == 0


def test_openai_changed_system_keeps_tools_prefix(cache):
    cache.openai_cached_tokens(canonical_chat("first question"))
    body = canonical_chat("first question")
    body["system"][0]["text"] = "Different opening line."
    tools_end = tokens.count_tools(body["tools"])
    assert cache.openai_cached_tokens(body) == tools_end // 128 * 128


def test_openai_caches_are_per_model(cache):
    cache.openai_cached_tokens(canonical_chat("q", model="gpt-4o"))
    assert cache.openai_cached_tokens(canonical_chat("q", model="gpt-4o-mini")) == 0


def test_openai_entry_expires(cache, clock):
    body = canonical_chat("q")
    cache.openai_cached_tokens(body)
    clock.now += 301
    assert cache.openai_cached_tokens(body) == 0


def test_openai_extended_retention(cache, clock):
    body = canonical_chat("q")
    cache.openai_cached_tokens(body, extended=True)
    clock.now += 3 * 3600
    assert cache.openai_cached_tokens(body) > 0


def test_bounded_entries_evict_oldest(clock):
    small = PromptCacheSimulator(max_entries=2, min_tokens=10, clock=clock)
    bodies = []
    for index in range(3):
        body = {
            "model": "m",
            "max_tokens": 10,
            "system": [{"type": "text", "text": f"prompt number {index} " * 10, "cache_control": dict(EPHEMERAL)}],
            "messages": [{"role": "user", "content": "hi"}],
        }
        small.anthropic_usage(body)
        bodies.append(body)
    assert small.anthropic_usage(bodies[0]).cache_read_input_tokens == 0
    assert small.anthropic_usage(bodies[2]).cache_read_input_tokens > 0
