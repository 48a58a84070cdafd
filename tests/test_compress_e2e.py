"""Compression end to end: an SDK client -> `leangate serve` -> `leangate stub-upstream --record`.

The body the stub records is what a provider would receive, so the tool result in it must decode back
to the original (default policy), or still name every match (lossy preset).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import anthropic
import openai
import toon_format

from engine.stages.compress.encode import json_equal

GREP_TOOL = {
    "name": "Grep",
    "description": "Search file contents with a regular expression.",
    "input_schema": {"type": "object", "properties": {"pattern": {"type": "string"}}, "required": ["pattern"]},
}


def matches(count: int = 40) -> list[dict[str, Any]]:
    return [
        {
            "file": f"engine/module_{i // 4:02d}.py",
            "line": 12 + i * 9,
            "match": f"    session_{i} = headers.get('x-session-id', {i})",
            "context": {"before": ["    headers = dict(request.headers)"], "after": ["    return session"]},
        }
        for i in range(count)
    ]


def unique(text: str) -> str:
    return f"{text} [{uuid.uuid4().hex[:12]}]"


def recorded_bodies(stub, needle: str, timeout: float = 10.0) -> list[dict]:
    directory: Path = stub.extra["record"]
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for path in sorted(directory.glob("*.json")):
            if path.name.endswith(".meta.json"):
                continue
            raw = path.read_text(encoding="utf-8", errors="replace")
            if needle in raw:
                found.append(json.loads(raw))
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def decision_record(gateway, request_id: str, timeout: float = 10.0) -> dict:
    path: Path = gateway.extra["decisions"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    record = json.loads(line)
                    if record.get("request_id") == request_id:
                        return record
        time.sleep(0.05)
    raise AssertionError(f"no decision record for {request_id}")


def grep_conversation(needle: str, result_text: str) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Where is the session id read?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_e2e_1", "name": "Grep", "input": {"pattern": "session_"}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_e2e_1", "content": result_text},
                {"type": "text", "text": needle},
            ],
        },
    ]


def tool_result_text(body: dict[str, Any]) -> str:
    block = body["messages"][-1]["content"][0]
    assert block["type"] == "tool_result"
    content = block["content"]
    if isinstance(content, list):
        return "".join(part["text"] for part in content if part.get("type") == "text")
    return content


def decode_forwarded(text: str) -> Any:
    """Decode a forwarded tool result: compact JSON when minify won, TOON otherwise."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return toon_format.decode(text)


def test_forwarded_tool_result_decodes_to_original(gateway, stub) -> None:
    original = matches()
    needle = unique("summarise the matches")
    client = anthropic.Anthropic(base_url=gateway.url, api_key="client-key", max_retries=0)

    raw = client.messages.with_raw_response.create(
        model="claude-sonnet-4-5",
        max_tokens=256,
        tools=[GREP_TOOL],
        messages=grep_conversation(needle, json.dumps(original, indent=2)),
    )

    (body,) = recorded_bodies(stub, needle)
    forwarded = tool_result_text(body)
    assert forwarded != json.dumps(original, indent=2)
    assert json_equal(decode_forwarded(forwarded), original)
    assert body["messages"][1]["content"][0]["input"] == {"pattern": "session_"}

    record = decision_record(gateway, raw.headers["x-leangate-request-id"])
    (decision,) = record["compression"]
    assert decision["target"] == "search-results"
    assert decision["lossless"] is True
    assert decision["verified"] is True
    assert decision["tokens_after"] < decision["tokens_before"]


def test_openai_tool_message_is_compressed(gateway, stub) -> None:
    original = matches()
    needle = unique("and which file sets it?")
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="client-key", max_retries=0)
    client.chat.completions.create(
        model="leangate-auto",
        tools=[{"type": "function", "function": {"name": "Grep", "description": GREP_TOOL["description"],
                                                 "parameters": GREP_TOOL["input_schema"]}}],
        messages=[
            {"role": "user", "content": "Where is the session id read?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_e2e", "type": "function", "function": {"name": "Grep", "arguments": '{"pattern": "session_"}'}},
            ]},
            {"role": "tool", "tool_call_id": "call_e2e", "content": json.dumps(original, indent=2)},
            {"role": "user", "content": needle},
        ],
    )
    (body,) = recorded_bodies(stub, needle)
    results = [
        block for message in body["messages"] if isinstance(message["content"], list)
        for block in message["content"] if block.get("type") == "tool_result"
    ]
    assert len(results) == 1
    content = results[0]["content"]
    text = content if isinstance(content, str) else "".join(part["text"] for part in content)
    assert text != json.dumps(original, indent=2)
    assert json_equal(decode_forwarded(text), original)


def test_lossy_preset_keeps_every_match(start_gateway, stub) -> None:
    def opt_in(policy_dir: Path) -> None:
        (policy_dir / "teams" / "search-lossy.yaml").write_text(
            "extends: default\ncompression: !include ../presets/lossy-search.yaml\n", encoding="utf-8"
        )

    gateway = start_gateway(opt_in, name="gateway-lossy")
    original = matches()
    needle = unique("list the call sites")
    client = anthropic.Anthropic(
        base_url=gateway.url, api_key="client-key", max_retries=0, default_headers={"x-leangate-team": "search-lossy"}
    )
    client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=256,
        tools=[GREP_TOOL],
        messages=grep_conversation(needle, json.dumps(original, indent=2)),
    )

    (body,) = recorded_bodies(stub, needle)
    forwarded = tool_result_text(body)
    lines = forwarded.split("\n")
    for match in original:
        assert match["file"] in lines
        assert f"{match['line']}:{match['match']}" in lines
    assert "headers = dict(request.headers)" not in forwarded
    assert lines[-1] == "[fields context of 40 records omitted by policy search-results-lossy]"
