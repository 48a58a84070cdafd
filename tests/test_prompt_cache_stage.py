"""The prompt-caching stage on real Claude Code tools and system prompt, priced by the project's
prompt-cache simulator (`engine.stub.prompt_cache`)."""

from __future__ import annotations

import copy

import orjson
import pytest

from benchmarks.sessions import EDIT_PROMPTS, agent_session, anthropic_request, load_claude_code
from engine import tokens
from engine.pipeline.context import RequestContext
from engine.policy.models import Policy
from engine.stages.prompt_cache.breakpoints import walk_prefix
from engine.stages.prompt_cache.stage import apply_prompt_caching
from engine.stub.prompt_cache import PromptCacheSimulator, anthropic_prefix_blocks

SYSTEM, TOOLS = load_claude_code()
STRONG = {"tier": "strong", "provider": "anthropic", "model": "claude-sonnet-4-5"}
EPHEMERAL = {"type": "ephemeral"}


def make_policy(prompt_caching: dict | None = None) -> Policy:
    return Policy.model_validate(
        {
            "providers": {
                "anthropic": {"kind": "anthropic", "base_url": "http://127.0.0.1:9"},
                "openai": {"kind": "openai", "base_url": "http://127.0.0.1:9"},
                "local": {"kind": "ollama", "base_url": "http://127.0.0.1:9"},
            },
            "tiers": [{"name": "strong", "provider": "anthropic", "model": "claude-sonnet-4-5"}],
            "prompt_caching": prompt_caching or {},
        }
    )


def run(body: dict, protocol: str = "openai-chat", policy: Policy | None = None, tier: dict = STRONG) -> dict:
    ctx = RequestContext(request_id="test", protocol=protocol, body=body, headers={})
    decision = apply_prompt_caching(ctx, policy or make_policy(), tier)
    assert ctx.body is body, "the stage edits the body in place"
    return decision


def unmarked_request(index: int = 4, seed: int = 3) -> dict:
    return anthropic_request(agent_session(12, seed=seed), index, "claude-sonnet-4-5", claude_code_markers=False)


def marked_locations(body: dict) -> list[str]:
    locations = [block.location for block in walk_prefix(body) if isinstance(block.block, dict) and "cache_control" in block.block]
    return locations


def without_cache_control(value):
    if isinstance(value, dict):
        return {key: without_cache_control(item) for key, item in value.items() if key != "cache_control"}
    if isinstance(value, list):
        return [without_cache_control(item) for item in value]
    return value


# --- inject ------------------------------------------------------------------------------------------


def test_inject_marks_tools_system_and_two_turns():
    body = unmarked_request(index=4)
    last = len(body["messages"]) - 1

    decision = run(body)

    expected = ["tools[15]", "system[1]", f"messages[{last - 2}].content[0]", f"messages[{last}].content[0]"]
    assert decision["mode"] == "inject"
    assert decision["added"] == expected
    assert decision["carried"] == []
    assert marked_locations(body) == expected
    assert body["tools"][-1]["cache_control"] == EPHEMERAL
    assert decision["cached_prefix_tokens"] == tokens.count_request(body)


def test_inject_never_mutates_shared_objects():
    body = unmarked_request()
    tools_before = copy.deepcopy(body["tools"])
    messages_before = copy.deepcopy(body["messages"])
    tools_object, messages_object = body["tools"], body["messages"]

    run(body)

    assert tools_object == tools_before
    assert messages_object == messages_before
    assert TOOLS[-1].get("cache_control") is None


def test_inject_turns_string_system_into_a_block():
    body = unmarked_request()
    body["system"] = "\n".join(SYSTEM)

    decision = run(body)

    assert "system[0]" in decision["added"]
    assert body["system"] == [{"type": "text", "text": "\n".join(SYSTEM), "cache_control": EPHEMERAL}]


def test_inject_skips_thinking_and_empty_text():
    body = unmarked_request(index=2)
    body["messages"][-1]["content"].append({"type": "text", "text": ""})
    body["messages"].append(
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking the tests."},
            {"type": "thinking", "thinking": "The fixture is stale.", "signature": "c2lnbmF0dXJl"},
            {"type": "redacted_thinking", "data": "b3BhcXVl"},
        ]}
    )
    last = len(body["messages"]) - 1

    decision = run(body)

    assert f"messages[{last}].content[0]" in decision["added"]
    assert f"messages[{last - 1}].content[0]" in decision["added"], "the user turn before the prefill"
    for message in body["messages"]:
        for block in message["content"]:
            if block["type"] in ("thinking", "redacted_thinking") or (block["type"] == "text" and not block["text"]):
                assert "cache_control" not in block


def test_inject_skips_prefixes_below_minimum():
    body = {
        "model": "m",
        "max_tokens": 16,
        "tools": [TOOLS[6]],
        "system": [{"type": "text", "text": SYSTEM[1]}],
        "messages": [{"role": "user", "content": "Fix the bug in app.py."}],
    }
    tools_tokens = tokens.count_tools(body["tools"])
    assert tools_tokens < 1024 < tools_tokens + tokens.count_system(body["system"])

    decision = run(body)

    assert decision["added"] == ["system[0]", "messages[0].content[0]"]
    assert "cache_control" not in body["tools"][0]


def test_inject_adds_nothing_to_a_short_request():
    body = {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "What is 2 + 2?"}]}
    decision = run(body)
    assert decision["added"] == []
    assert decision["cached_prefix_tokens"] == 0


def test_inject_uses_haiku_minimum_from_policy():
    body = unmarked_request(index=0)
    assert 4096 < tokens.count_request(body)
    policy = make_policy({"min_tokens": {"*haiku*": 50_000, "*": 1024}})
    tier = {"tier": "fast", "provider": "anthropic", "model": "claude-haiku-4-5"}

    assert run(body, policy=policy, tier=tier)["added"] == []


def test_inject_adds_only_after_client_breakpoints():
    body = unmarked_request(index=4)
    body["system"][1]["cache_control"] = EPHEMERAL
    last = len(body["messages"]) - 1

    decision = run(body)

    assert decision["carried"] == ["system[1]"]
    assert decision["added"] == [f"messages[{last - 2}].content[0]", f"messages[{last}].content[0]"]
    assert "cache_control" not in body["tools"][-1]


def test_inject_counts_client_breakpoints_in_the_limit():
    body = unmarked_request(index=4)
    for block in (body["tools"][3], body["tools"][9], body["system"][0]):
        block["cache_control"] = EPHEMERAL
    last = len(body["messages"]) - 1

    decision = run(body)

    assert decision["added"] == [f"messages[{last}].content[0]"]
    assert len(marked_locations(body)) == 4


def test_inject_adds_nothing_past_four_client_breakpoints():
    body = unmarked_request(index=4)
    for block in (*body["tools"][:2], *body["system"]):
        block["cache_control"] = EPHEMERAL
    decision = run(body)
    assert decision["added"] == []
    assert len(decision["carried"]) == 4


def test_inject_ttl_1h_from_policy():
    body = unmarked_request()
    decision = run(body, policy=make_policy({"default": {"mode": "inject", "ttl": "1h"}}))
    assert decision["ttl"] == "1h"
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    PromptCacheSimulator().anthropic_usage(body)  # raises if the API would reject the order


def test_inject_1h_adds_beta_header():
    body = unmarked_request()
    ctx = RequestContext(request_id="test", protocol="openai-chat", body=body, headers={"anthropic-beta": "fine-grained-tool-streaming-2025-05-14"})

    decision = apply_prompt_caching(ctx, make_policy({"default": {"mode": "inject", "ttl": "1h"}}), STRONG)

    assert decision["anthropic_beta_added"] == "extended-cache-ttl-2025-04-11"
    assert ctx.headers["anthropic-beta"] == "fine-grained-tool-streaming-2025-05-14,extended-cache-ttl-2025-04-11"


def test_inject_5m_leaves_headers_alone():
    ctx = RequestContext(request_id="test", protocol="openai-chat", body=unmarked_request(), headers={})
    decision = apply_prompt_caching(ctx, make_policy(), STRONG)
    assert "anthropic_beta_added" not in decision
    assert ctx.headers == {}


def test_inject_1h_without_beta_when_policy_says_null():
    ctx = RequestContext(request_id="test", protocol="openai-chat", body=unmarked_request(), headers={})
    policy = make_policy({"default": {"mode": "inject", "ttl": "1h"}, "extended_ttl_beta": None})
    decision = apply_prompt_caching(ctx, policy, STRONG)
    assert "anthropic_beta_added" not in decision
    assert ctx.headers == {}


def test_inject_1h_after_client_5m_falls_back_to_5m():
    body = unmarked_request()
    body["system"][1]["cache_control"] = EPHEMERAL

    run(body, policy=make_policy({"default": {"mode": "inject", "ttl": "1h"}}))

    assert body["messages"][-1]["content"][-1]["cache_control"] == EPHEMERAL
    PromptCacheSimulator().anthropic_usage(body)


def test_inject_respects_top_level_cache_control():
    body = unmarked_request()
    body["cache_control"] = EPHEMERAL
    decision = run(body)
    assert decision["carried"] == ["cache_control"]
    assert decision["added"] == []
    assert decision["cached_prefix_tokens"] == tokens.count_request(body)


def test_inject_without_previous_turn_option():
    body = unmarked_request(index=4)
    last = len(body["messages"]) - 1
    decision = run(body, policy=make_policy({"default": {"mode": "inject", "previous_turn": False}}))
    assert decision["added"] == ["tools[15]", "system[1]", f"messages[{last}].content[0]"]


# --- preserve and off --------------------------------------------------------------------------------


def test_preserve_keeps_bytes():
    body = anthropic_request(agent_session(12, seed=3), 5, "claude-sonnet-4-5")
    before = orjson.dumps(body)
    last = len(body["messages"]) - 1

    decision = run(body, protocol="anthropic")

    assert decision["mode"] == "preserve"
    assert orjson.dumps(body) == before
    assert decision["carried"] == ["system[1]", f"messages[{last}].content[0]"]
    assert decision["added"] == []
    assert decision["cached_prefix_tokens"] == tokens.count_request(body)


def test_preserve_warns_about_five_breakpoints():
    body = unmarked_request()
    for block in (*body["tools"][:3], *body["system"]):
        block["cache_control"] = EPHEMERAL
    decision = run(body, protocol="anthropic")
    assert len(decision["carried"]) == 5
    assert "at most 4" in decision["warning"]


def test_off_strips_every_breakpoint():
    body = anthropic_request(agent_session(12, seed=3), 5, "claude-sonnet-4-5")
    body["tools"] = [*body["tools"][:-1], {**body["tools"][-1], "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    body["cache_control"] = EPHEMERAL
    expected = without_cache_control(body)

    decision = run(body, protocol="anthropic", policy=make_policy({"default": {"mode": "off"}}))

    assert body == expected
    assert decision["removed"][0] == "tools[15]"
    assert decision["removed"][-1] == "cache_control"
    assert len(decision["removed"]) == 4
    assert decision["cached_prefix_tokens"] == 0


# --- upstreams without breakpoints -------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "local"])
def test_automatic_upstream_leaves_body_and_explains(provider):
    body = anthropic_request(agent_session(12, seed=3), 5, "claude-sonnet-4-5")
    before = orjson.dumps(body)

    decision = run(body, protocol="anthropic", tier={"tier": "strong", "provider": provider, "model": "m"})

    assert orjson.dumps(body) == before
    assert decision["carried"] == []
    assert decision["added"] == []
    assert len(decision["removed"]) == 2
    assert "does not send cache_control" in decision["reason"]


def test_unknown_provider_leaves_body():
    body = unmarked_request()
    before = orjson.dumps(body)
    decision = run(body, tier={"tier": "x", "provider": "missing", "model": "m"})
    assert orjson.dumps(body) == before
    assert "unknown provider" in decision["reason"]


def test_decision_is_json():
    decision = run(unmarked_request())
    assert orjson.loads(orjson.dumps(decision)) == decision


# --- a whole session, priced by the simulator --------------------------------------------------------


def replay(mode: str, requests: int = 16) -> list:
    session = agent_session(requests, seed=11, prompts=EDIT_PROMPTS)
    policy = make_policy({"default": {"mode": mode}})
    simulator = PromptCacheSimulator()
    bodies, usages = [], []
    for index in range(requests):
        body = anthropic_request(session, index, "claude-sonnet-4-5", claude_code_markers=False)
        run(body, policy=policy)
        bodies.append(body)
        usages.append(simulator.anthropic_usage(body))
    return list(zip(bodies, usages))


def test_injected_session_reads_previous_turn():
    turns = replay("inject")
    first_body, first_usage = turns[0]
    assert first_usage.cache_read_input_tokens == 0
    assert first_usage.cache_creation_input_tokens == first_usage.total_input_tokens
    for (previous, _), (body, usage) in zip(turns, turns[1:]):
        assert usage.cache_read_input_tokens == anthropic_prefix_blocks(previous)[-1].tokens_end
        assert usage.input_tokens == 0, "the latest block is marked, so nothing is left uncached"


def test_off_session_reads_nothing():
    for _, usage in replay("off"):
        assert usage.cache_read_input_tokens == 0
        assert usage.cache_creation_input_tokens == 0


def test_injected_prefix_is_stable_between_turns():
    turns = replay("inject", requests=10)
    for (previous, _), (body, _) in zip(turns, turns[1:]):
        assert orjson.dumps(without_cache_control(body["tools"])) == orjson.dumps(without_cache_control(previous["tools"]))
        assert orjson.dumps(without_cache_control(body["system"])) == orjson.dumps(without_cache_control(previous["system"]))
        count = len(previous["messages"])
        assert orjson.dumps(without_cache_control(body["messages"][:count])) == orjson.dumps(
            without_cache_control(previous["messages"])
        )
