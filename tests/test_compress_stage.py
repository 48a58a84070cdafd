"""The compression stage on whole requests: what it changes, what it must leave alone, and its records."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
import toon_format
from pydantic import TypeAdapter

from engine.pipeline.context import RequestContext
from engine.policy.loader import load_policy_set
from engine.stages.compress.encode import json_equal
from engine.stages.compress.policy import CompressionTarget
from engine.stages.compress.stage import RESULT_CACHE, compress

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "compress"
TOOL_RESULTS = "$.messages[*].content[?(@.type == 'tool_result')]"
TARGETS = TypeAdapter(list[CompressionTarget])


class TargetsOnly:
    """The part of a Policy that the stage reads."""

    def __init__(self, targets: list[dict[str, Any]]):
        self.compression = TARGETS.validate_python(targets)


@pytest.fixture(autouse=True)
def empty_result_cache() -> None:
    RESULT_CACHE.clear()


def records(count: int = 40) -> list[dict[str, Any]]:
    return [
        {"file": f"src/module_{i % 4}.py", "line": 10 + i * 3, "match": f"    value_{i} = compute({i}, 'a, b')"}
        for i in range(count)
    ]


def tool_call(tool_id: str, name: str, tool_input: dict | None = None) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input or {"pattern": "value_"}}


def tool_result(tool_id: str, content: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": content}


def claude_code_body(messages: list[dict[str, Any]]) -> dict[str, Any]:
    system = json.loads((DATA / "claude_code_1.0.123_system.json").read_text())
    tools = json.loads((DATA / "claude_code_16tools.json").read_text())
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "system": [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}} for text in system["blocks"]],
        "tools": tools,
        "messages": [{"role": "user", "content": "Find where compute is called."}, *messages],
    }


def run(body: dict[str, Any], policy: Any) -> list[dict]:
    ctx = RequestContext(request_id="test", protocol="anthropic", body=body, headers={})
    return compress(ctx, policy)


def default_policy() -> Any:
    return load_policy_set(ROOT / "policies").base


def grep_body(content: Any, tool: str = "Grep") -> dict[str, Any]:
    return claude_code_body(
        [
            {"role": "assistant", "content": [tool_call("toolu_1", tool)]},
            {"role": "user", "content": [tool_result("toolu_1", content)]},
        ]
    )


def result_block(body: dict[str, Any]) -> dict[str, Any]:
    return body["messages"][-1]["content"][0]


def decode(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return toon_format.decode(text)


# Lossless path ---------------------------------------------------------------------------------


def test_json_grep_result_decodes_to_original() -> None:
    original = records()
    body = grep_body(json.dumps(original, indent=2))

    decisions = run(body, default_policy())

    assert len(decisions) == 1
    decision = decisions[0]
    assert decision["target"] == "search-results"
    assert decision["applied"] is True
    assert decision["lossless"] is True
    assert decision["verified"] is True
    assert decision["tokens_after"] < decision["tokens_before"]
    assert json_equal(decode(result_block(body)["content"]), original)


def test_toon_chosen_for_tabular_records() -> None:
    body = grep_body(json.dumps(records(), separators=(",", ":")))
    decisions = run(body, default_policy())
    assert decisions[0]["action"] == "toon"
    assert result_block(body)["content"].startswith("[40]{file,line,match}:")


def test_result_in_text_block_list_is_compressed() -> None:
    original = records()
    body = grep_body([{"type": "text", "text": json.dumps(original, indent=2), "cache_control": {"type": "ephemeral"}}])
    decisions = run(body, default_policy())
    assert decisions[0]["applied"] is True
    block = result_block(body)["content"][0]
    assert block["cache_control"] == {"type": "ephemeral"}
    assert json_equal(decode(block["text"]), original)


def test_not_smaller_is_recorded_and_kept() -> None:
    # Deeply nested, non-tabular data that is already compact: neither encoder saves tokens.
    original = [{"a": {"b": {"c": [i, {"d": i}]}}} for i in range(60)]
    text = json.dumps(original, separators=(",", ":"))
    body = grep_body(text)
    block = result_block(body)

    decisions = run(body, default_policy())

    assert decisions[0]["applied"] is False
    assert decisions[0]["tokens_after"] == decisions[0]["tokens_before"]
    assert result_block(body) is block
    assert block["content"] == text


# What stays untouched --------------------------------------------------------------------------


def test_plain_text_result_left_alone() -> None:
    text = "src/a.py:12:    value = compute(1)\n" * 200
    body = grep_body(text)
    block = result_block(body)
    decisions = run(body, default_policy())
    assert decisions == []
    assert result_block(body) is block
    assert block["content"] == text


def test_json_looking_invalid_text_left_alone() -> None:
    text = "[" + ", ".join(f"{{'file': 'a{i}.py'}}" for i in range(200)) + "]"
    body = grep_body(text)
    decisions = run(body, default_policy())
    assert decisions == []
    assert result_block(body)["content"] == text


def test_untouched_blocks_stay_identical() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    thinking = {"type": "thinking", "thinking": json.dumps(records()), "signature": "sig-opaque"}
    read_input = {"file_path": "/repo/data.json", "note": json.dumps(records())}
    body = claude_code_body(
        [
            {
                "role": "assistant",
                "content": [
                    thinking,
                    {"type": "text", "text": json.dumps(records())},
                    tool_call("toolu_1", "Grep"),
                    tool_call("toolu_2", "Bash", read_input),
                ],
            },
            {
                "role": "user",
                "content": [
                    tool_result("toolu_1", json.dumps(records(), indent=2)),
                    tool_result("toolu_2", [{"type": "text", "text": json.dumps(records(), indent=2)}, image]),
                ],
            },
        ]
    )
    before = copy.deepcopy(body)
    originals = {
        "system": body["system"],
        "tools": body["tools"],
        "assistant": body["messages"][1],
        "assistant_blocks": list(body["messages"][1]["content"]),
        "bash_result": body["messages"][2]["content"][1],
        "bash_text": body["messages"][2]["content"][1]["content"][0],
        "image": body["messages"][2]["content"][1]["content"][1],
    }

    decisions = run(body, default_policy())

    assert [decision["target"] for decision in decisions] == ["search-results"]
    assert body["system"] is originals["system"]
    assert body["tools"] is originals["tools"]
    assert body["messages"][1] is originals["assistant"]
    assert body["messages"][1]["content"] == originals["assistant_blocks"]
    for now, then in zip(body["messages"][1]["content"], originals["assistant_blocks"]):
        assert now is then
    assert body["messages"][2]["content"][1] is originals["bash_result"]
    assert body["messages"][2]["content"][1]["content"][0] is originals["bash_text"]
    assert body["messages"][2]["content"][1]["content"][1] is originals["image"]
    for key in ("model", "max_tokens", "system", "tools"):
        assert orjson.dumps(body[key]) == orjson.dumps(before[key])
    assert orjson.dumps(body["messages"][:2]) == orjson.dumps(before["messages"][:2])
    assert orjson.dumps(body["messages"][2]["content"][1]) == orjson.dumps(before["messages"][2]["content"][1])


def test_protected_blocks_never_rewritten() -> None:
    payload = json.dumps(records(), indent=2)
    document = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": payload}}
    search_result = {
        "type": "search_result",
        "source": "https://docs.example/x",
        "title": "x",
        "content": [{"type": "text", "text": payload}],
    }
    thinking = {"type": "thinking", "thinking": payload, "signature": "sig"}
    body = claude_code_body(
        [
            {"role": "assistant", "content": [thinking, tool_call("toolu_1", "WebSearch", {"query": payload})]},
            {"role": "user", "content": [tool_result("toolu_1", [search_result]), document]},
        ]
    )
    before = orjson.dumps(body)
    # Every string and every block of the request, wherever it sits.
    policy = TargetsOnly(
        [
            {"name": "everything", "path": "$..*", "actions": ["toon", "minify"]},
            {"name": "text", "path": "$..text", "actions": ["toon", "minify"]},
        ]
    )
    decisions = run(body, policy)
    assert decisions == []
    assert orjson.dumps(body) == before


def test_block_below_min_tokens_left_alone() -> None:
    text = json.dumps(records(3), indent=2)
    body = grep_body(text)
    decisions = run(body, default_policy())
    assert decisions == []
    assert result_block(body)["content"] == text


# Determinism and caching -----------------------------------------------------------------------


def test_same_input_gives_same_bytes() -> None:
    body = grep_body(json.dumps(records(), indent=2))
    first, second, third = copy.deepcopy(body), copy.deepcopy(body), copy.deepcopy(body)

    run(first, default_policy())
    RESULT_CACHE.clear()
    run(second, default_policy())
    run(third, default_policy())  # served from the result cache

    assert orjson.dumps(first) == orjson.dumps(second)
    assert orjson.dumps(first) == orjson.dumps(third)


def test_cached_outcome_repeats_decision() -> None:
    body = grep_body(json.dumps(records(), indent=2))
    first = run(copy.deepcopy(body), default_policy())
    second = run(copy.deepcopy(body), default_policy())
    assert first == second
    first[0]["target"] = "changed by a caller"
    assert run(copy.deepcopy(body), default_policy())[0]["target"] == "search-results"


def test_cached_rejections_are_copied() -> None:
    original = [{"a": {"b": {"c": [i, {"d": i}]}}} for i in range(60)]
    body = grep_body(json.dumps(original, separators=(",", ":")))
    first = run(copy.deepcopy(body), default_policy())
    first[0]["rejected"][0]["reason"] = "changed by a caller"
    second = run(copy.deepcopy(body), default_policy())
    assert second[0]["rejected"][0]["reason"].startswith("not fewer tokens")


# Verification ----------------------------------------------------------------------------------


def _corrupting_decode(real_decode: Any) -> Any:
    def decode_and_change(text: str, **options: Any) -> Any:
        value = real_decode(text, **options)
        if isinstance(value, list) and value and isinstance(value[0], dict):
            value[0] = {**value[0], "line": -1}
        return value

    return decode_and_change


def test_failed_verification_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate a TOON decoder bug: the decoded value differs from what was encoded.
    monkeypatch.setattr(toon_format, "decode", _corrupting_decode(toon_format.decode))
    text = json.dumps(records(), indent=2)
    body = grep_body(text)
    block = result_block(body)
    policy = TargetsOnly([{"name": "toon-only", "path": TOOL_RESULTS, "actions": ["toon"]}])

    decisions = run(body, policy)

    assert len(decisions) == 1
    assert decisions[0]["verified"] is False
    assert decisions[0]["applied"] is False
    assert decisions[0]["tokens_after"] == decisions[0]["tokens_before"]
    assert decisions[0]["rejected"][0]["action"] == "toon"
    assert "does not decode" in decisions[0]["rejected"][0]["reason"]
    assert result_block(body) is block
    assert block["content"] == text


def test_failed_toon_leaves_minify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(toon_format, "decode", _corrupting_decode(toon_format.decode))
    original = records()
    body = grep_body(json.dumps(original, indent=2))

    decisions = run(body, default_policy())

    assert decisions[0]["action"] == "minify"
    assert decisions[0]["verified"] is True
    assert decisions[0]["rejected"][0]["action"] == "toon"
    assert json.loads(result_block(body)["content"]) == original


# Tool resolution -------------------------------------------------------------------------------


def test_tool_glob_resolves_through_tool_use_id() -> None:
    payload = json.dumps(records(), indent=2)
    body = claude_code_body(
        [
            {
                "role": "assistant",
                "content": [
                    tool_call("toolu_grep", "Grep"),
                    tool_call("toolu_mcp", "mcp__github__search_code"),
                    tool_call("toolu_bash", "Bash"),
                ],
            },
            {
                "role": "user",
                "content": [
                    tool_result("toolu_grep", payload),
                    tool_result("toolu_mcp", payload),
                    tool_result("toolu_bash", payload),
                    tool_result("toolu_unknown", payload),
                ],
            },
        ]
    )
    decisions = run(body, default_policy())
    assert [decision["target"] for decision in decisions] == ["search-results", "search-results"]
    results = body["messages"][2]["content"]
    assert results[0]["content"] != payload
    assert results[1]["content"] != payload
    assert results[2]["content"] == payload
    assert results[3]["content"] == payload


def test_tool_call_in_earlier_turn_resolves() -> None:
    payload = json.dumps(records(), indent=2)
    body = claude_code_body(
        [
            {"role": "assistant", "content": [tool_call("toolu_old", "Glob")]},
            {"role": "user", "content": [tool_result("toolu_old", payload)]},
            {"role": "assistant", "content": [{"type": "text", "text": "Next."}, tool_call("toolu_new", "Grep")]},
            {"role": "user", "content": [tool_result("toolu_new", payload)]},
        ]
    )
    decisions = run(body, default_policy())
    # Decisions come in target order: search-results is listed before file-listings.
    assert [decision["target"] for decision in decisions] == ["search-results", "file-listings"]
    assert body["messages"][2]["content"][0]["content"] != payload
    assert body["messages"][4]["content"][0]["content"] != payload


def test_first_deciding_target_handles_block() -> None:
    body = grep_body(json.dumps(records(), indent=2))
    policy = TargetsOnly(
        [
            {"name": "first", "path": TOOL_RESULTS, "actions": ["minify"]},
            {"name": "second", "path": "$.messages[*].content[*]", "actions": ["toon"]},
        ]
    )
    decisions = run(body, policy)
    assert [decision["target"] for decision in decisions] == ["first"]
    assert result_block(body)["content"].startswith("[{")


def test_string_path_targets_content() -> None:
    original = records()
    body = grep_body(json.dumps(original, indent=2))
    policy = TargetsOnly([{"name": "by-string", "path": TOOL_RESULTS + ".content", "actions": ["toon"]}])
    decisions = run(body, policy)
    assert decisions[0]["applied"] is True
    assert json_equal(toon_format.decode(result_block(body)["content"]), original)


def test_lone_surrogate_output_never_produced() -> None:
    text = json.dumps([{"file": "a.py", "line": i, "match": "bad \ud800 text"} for i in range(40)], indent=2)
    body = grep_body(text)
    run(body, default_policy())
    orjson.dumps(body)  # raises if any string cannot be sent as UTF-8


def test_failing_filter_skips_target(caplog: pytest.LogCaptureFixture) -> None:
    text = json.dumps(records(), indent=2)
    body = grep_body(text)
    # The regular expression is only compiled when the filter runs, so it fails per request.
    policy = TargetsOnly(
        [
            {"name": "bad-regex", "path": "$.messages[*].content[?(@.type =~ '(')]", "actions": ["toon"]},
            {"name": "fine", "path": TOOL_RESULTS, "actions": ["toon"]},
        ]
    )
    with caplog.at_level("ERROR", logger="engine.stages.compress.stage"):
        decisions = run(body, policy)
    assert [decision["target"] for decision in decisions] == ["fine"]
    assert "compression target bad-regex skipped" in caplog.text
