"""Prompt caching end to end: multi-turn sessions through `leangate serve` to `leangate stub-upstream`.

Two properties are checked over real HTTP:
- The prefix that the provider caches (tools, system, and the messages of the previous request) is
  byte-identical from one upstream request to the next, for Anthropic, OpenAI Chat and Responses
  clients, and for every upstream kind.
- Usage reaches each client in its own protocol's convention, with the stub simulating prompt
  caching: Anthropic `input_tokens` excludes cached tokens, Chat `prompt_tokens` and Responses
  `input_tokens` include them and name them in their details.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import anthropic
import httpx
import openai
import orjson
import pytest

from benchmarks.sessions import EDIT_PROMPTS, agent_session, anthropic_request, chat_request, responses_request
from tests.conftest import ADAPTER_TEAMS, recorded_bodies, recording_gateway

PATHS = {"anthropic": "/v1/messages", "openai-chat": "/v1/chat/completions", "openai-responses": "/v1/responses"}
RENDER = {"anthropic": anthropic_request, "openai-chat": chat_request, "openai-responses": responses_request}
PROTOCOLS = list(PATHS)
TURNS = 8


def without_cache_control(value):
    if isinstance(value, dict):
        return {key: without_cache_control(item) for key, item in value.items() if key != "cache_control"}
    if isinstance(value, list):
        return [without_cache_control(item) for item in value]
    return value


def session_headers(protocol: str, session_id: str, team: str) -> dict[str, str]:
    name = "x-claude-code-session-id" if protocol == "anthropic" else "session_id"
    return {name: session_id, "x-leangate-team": team, "content-type": "application/json"}


def upstream_prefix(body: dict, previous_message_count: int) -> dict:
    """The cacheable prefix of an upstream request, in either wire format, without breakpoints."""
    messages = body.get("messages") if "messages" in body else body.get("input")
    return {
        "tools": without_cache_control(body.get("tools")),
        "system": without_cache_control(body.get("system", body.get("instructions"))),
        "messages": without_cache_control(messages[:previous_message_count]),
    }


def message_count(body: dict) -> int:
    return len(body["messages"] if "messages" in body else body["input"])


def replay(url: str, protocol: str, team: str, turns: int = TURNS, model: str = "claude-sonnet-4-5") -> tuple[str, list[str]]:
    """Send a generated session; return the tag that its upstream recordings contain, and the request ids."""
    seed = random.randrange(1 << 40)
    session = agent_session(turns, seed=seed, prompts=EDIT_PROMPTS)
    headers = session_headers(protocol, session.session_id, team)
    request_ids = []
    with httpx.Client(base_url=url, timeout=30.0) as client:
        for index in range(turns):
            body = RENDER[protocol](session, index, model)
            response = client.post(PATHS[protocol], content=orjson.dumps(body), headers=headers)
            assert response.status_code == 200, response.text
            request_ids.append(response.headers["x-leangate-request-id"])
    return f"(task {seed}-0)", request_ids


def decision_records(path: Path, request_ids: list[str], timeout: float = 10.0) -> list[dict]:
    """Return the decision records of the given requests, in the same order."""
    deadline = time.monotonic() + timeout
    while True:
        found = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line) if line.strip() else {}
                if record.get("request_id") in request_ids:
                    found[record["request_id"]] = record
        if len(found) == len(request_ids) or time.monotonic() > deadline:
            return [found[request_id] for request_id in request_ids if request_id in found]
        time.sleep(0.05)


@pytest.mark.parametrize("team", list(ADAPTER_TEAMS))
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cached_prefix_is_byte_stable(gateway, stub, protocol, team):
    tag, _ = replay(gateway.url, protocol, team)
    bodies = recorded_bodies(stub.extra["record"], tag, TURNS)
    assert len(bodies) == TURNS

    for turn in range(1, TURNS):
        previous, current = bodies[turn - 1], bodies[turn]
        count = message_count(previous)
        assert message_count(current) > count
        expected = upstream_prefix(previous, count)
        actual = upstream_prefix(current, count)
        for part in ("tools", "system", "messages"):
            assert orjson.dumps(actual[part]) == orjson.dumps(expected[part]), f"turn {turn}: {part} changed"


def test_openai_clients_get_breakpoints_on_anthropic(gateway, stub):
    tag, _ = replay(gateway.url, "openai-chat", "via-anthropic", turns=3)
    bodies = recorded_bodies(stub.extra["record"], tag, 3)
    last = bodies[-1]
    assert last["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert last["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert last["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}


def test_openai_upstream_gets_no_cache_control(gateway, stub):
    tag, request_ids = replay(gateway.url, "anthropic", "via-openai", turns=2)
    bodies = recorded_bodies(stub.extra["record"], tag, 2)
    assert len(bodies) == 2
    assert all("cache_control" not in json.dumps(body) for body in bodies)

    records = decision_records(gateway.extra["decisions"], request_ids)
    assert len(records) == 2
    decision = records[-1]["prompt_cache"]
    assert decision["provider_kind"] == "openai"
    assert decision["carried"] == []
    assert decision["removed"] == ["system[1]", "messages[2].content[0]"]
    assert "caches prompt prefixes automatically" in decision["reason"]


def test_off_mode_strips_client_breakpoints(start_gateway, stub):
    def turn_off(policy_dir: Path) -> None:
        team = policy_dir / "teams" / "no-caching.yaml"
        team.write_text("extends: default\nprompt_caching:\n  default: {mode: 'off'}\n", encoding="utf-8")

    gateway = start_gateway(turn_off)
    tag, request_ids = replay(gateway.url, "anthropic", "no-caching", turns=2)
    bodies = recorded_bodies(stub.extra["record"], tag, 2)
    assert len(bodies) == 2
    assert all("cache_control" not in json.dumps(body) for body in bodies)

    records = decision_records(gateway.extra["decisions"], request_ids)
    assert [record["prompt_cache"]["mode"] for record in records] == ["off", "off"]
    assert records[-1]["prompt_cache"]["removed"] == ["system[1]", "messages[2].content[0]"]


# --- usage mapping with the stub's prompt-cache simulation ------------------------------------------


@pytest.fixture(scope="module")
def caching_gateway(tmp_path_factory):
    """A stub started with --prompt-cache, and a gateway on the shipped policies in front of it."""
    with recording_gateway(tmp_path_factory.mktemp("prompt-cache")) as gateway:
        yield gateway


def recorded_input_tokens(record_dir: Path, needle: str, count: int) -> list[int]:
    """Return the stub's own input-token count of each recorded request that contains `needle`."""
    deadline = time.monotonic() + 10.0
    while True:
        counts = []
        for path in sorted(record_dir.glob("*.json")):
            if path.name.endswith(".meta.json") or needle not in path.read_text(encoding="utf-8"):
                continue
            meta = json.loads(path.with_name(path.name[:-5] + ".meta.json").read_text())
            counts.append(meta["input_tokens"])
        if len(counts) >= count or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


def send_turns(gateway, protocol: str, stream: bool, turns: int = 3) -> tuple[list[dict], str]:
    """Send `turns` requests of a new session with an official SDK; return each turn's usage as a dict."""
    seed = random.randrange(1 << 40)
    session = agent_session(turns, seed=seed, prompts=EDIT_PROMPTS)
    headers = session_headers(protocol, session.session_id, "via-anthropic")
    headers.pop("content-type")
    usages = []
    if protocol == "anthropic":
        client = anthropic.Anthropic(base_url=gateway.url, api_key="client-key", max_retries=0, default_headers=headers)
        for index in range(turns):
            body = anthropic_request(session, index, "leangate-strong")
            if stream:
                with client.messages.stream(**body) as events:
                    message = events.get_final_message()
            else:
                message = client.messages.create(**body)
            usages.append(message.usage.model_dump())
    elif protocol == "openai-chat":
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="client-key", max_retries=0, default_headers=headers)
        for index in range(turns):
            body = chat_request(session, index, "leangate-strong")
            if stream:
                chunks = list(client.chat.completions.create(**body, stream=True, stream_options={"include_usage": True}))
                usages.append(chunks[-1].usage.model_dump())
            else:
                usages.append(client.chat.completions.create(**body).usage.model_dump())
    else:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="client-key", max_retries=0, default_headers=headers)
        for index in range(turns):
            body = responses_request(session, index, "leangate-strong")
            body.pop("stream")
            if stream:
                events = list(client.responses.create(**body, stream=True))
                completed = [event for event in events if event.type == "response.completed"]
                usages.append(completed[-1].response.usage.model_dump())
            else:
                usages.append(client.responses.create(**body).usage.model_dump())
    return usages, f"(task {seed}-0)"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_anthropic_usage_excludes_cached_tokens(caching_gateway, stream):
    usages, tag = send_turns(caching_gateway, "anthropic", stream)
    totals = recorded_input_tokens(caching_gateway.extra["stub"].extra["record"], tag, len(usages))
    assert len(totals) == len(usages)
    for turn, (usage, total) in enumerate(zip(usages, totals)):
        billed = usage["input_tokens"] + usage["cache_creation_input_tokens"] + usage["cache_read_input_tokens"]
        assert billed == total, f"turn {turn}"
    assert usages[0]["cache_creation_input_tokens"] > 0, "the new session's first turn writes its messages"
    for turn in range(1, len(usages)):
        assert usages[turn]["cache_read_input_tokens"] == totals[turn - 1], f"turn {turn} reads the previous turn"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_chat_usage_includes_cached_tokens(caching_gateway, stream):
    usages, tag = send_turns(caching_gateway, "openai-chat", stream)
    totals = recorded_input_tokens(caching_gateway.extra["stub"].extra["record"], tag, len(usages))
    assert len(totals) == len(usages)
    for turn, (usage, total) in enumerate(zip(usages, totals)):
        assert usage["prompt_tokens"] == total, f"turn {turn}"
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usages[0]["prompt_tokens_details"]["cached_tokens"] < totals[0]
    for turn in range(1, len(usages)):
        assert usages[turn]["prompt_tokens_details"]["cached_tokens"] == totals[turn - 1], f"turn {turn}"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_responses_usage_includes_cached_tokens(caching_gateway, stream):
    usages, tag = send_turns(caching_gateway, "openai-responses", stream)
    totals = recorded_input_tokens(caching_gateway.extra["stub"].extra["record"], tag, len(usages))
    assert len(totals) == len(usages)
    for turn, (usage, total) in enumerate(zip(usages, totals)):
        assert usage["input_tokens"] == total, f"turn {turn}"
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usages[0]["input_tokens_details"]["cached_tokens"] < totals[0]
    for turn in range(1, len(usages)):
        assert usages[turn]["input_tokens_details"]["cached_tokens"] == totals[turn - 1], f"turn {turn}"


def test_decision_record_names_breakpoints(caching_gateway):
    usages, tag = send_turns(caching_gateway, "openai-chat", stream=False, turns=2)
    decisions_path = caching_gateway.extra["decisions"]
    deadline = time.monotonic() + 10.0
    records = []
    while time.monotonic() < deadline:
        if decisions_path.exists():
            records = [json.loads(line) for line in decisions_path.read_text().splitlines() if line.strip()]
            records = [record for record in records if record.get("prompt_cache", {}).get("mode") == "inject"]
        if len(records) >= 2:
            break
        time.sleep(0.05)
    assert records, "no decision record with a prompt_cache entry"
    decision = records[-1]["prompt_cache"]
    assert decision["provider_kind"] == "anthropic"
    assert decision["added"][-1].startswith("messages[")
    assert decision["cached_prefix_tokens"] > 0
