"""Tool selection through the running gateway: what the stub upstream receives, headers and records."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import anthropic
import openai

from tests.test_gateway_e2e import decision_for, recorded, unique

TOOL_SETS = Path(__file__).resolve().parent / "data" / "tool-sets"
CLAUDE_CODE = json.loads((TOOL_SETS / "claude_code_16tools.json").read_text())
READ_TOOLS = ["Glob", "Grep", "LS", "Read"]
# Tools of the default policy's conditional groups, held back until a trigger shows up.
CONDITIONAL = {"NotebookEdit", "BashOutput", "KillBash", "ExitPlanMode"}
# The default read-only classes keep every tool but the conditional ones on the first request of a
# session with a header.
SESSION_START_TOOLS = [tool["name"] for tool in CLAUDE_CODE if tool["name"] not in CONDITIONAL]


def client(gateway, session_id: str | None = None) -> anthropic.Anthropic:
    headers = {"user-agent": "claude-cli/1.0.123 (external, cli)"}
    if session_id:
        headers["x-claude-code-session-id"] = session_id
    return anthropic.Anthropic(base_url=gateway.url, api_key="client-key", max_retries=0, default_headers=headers)


def send(gateway, text: str, session_id: str | None = None, **extra):
    """Send one Claude Code style request; return the raw response and the parsed message."""
    raw = client(gateway, session_id).messages.with_raw_response.create(
        model="claude-sonnet-4-5",
        max_tokens=256,
        tools=CLAUDE_CODE,
        messages=[{"role": "user", "content": text}],
        **extra,
    )
    return raw, raw.parse()


def upstream_tool_names(stub, needle: str) -> list[str]:
    (body, _), = recorded(stub, needle)
    return [tool["name"] for tool in body.get("tools", [])]


def test_read_only_question_reaches_upstream_with_read_tools(gateway, stub):
    text = unique("Explain how the retry backoff in client.py works")
    raw, _ = send(gateway, text)
    assert raw.headers["x-leangate-class"] == "explain"
    assert upstream_tool_names(stub, text) == READ_TOOLS

    record = decision_for(gateway, raw.headers["x-leangate-request-id"])
    assert record["tools"]["class"] == "explain"
    assert "Bash" in record["tools"]["removed"]
    assert record["tools"]["tokens_after"] < record["tools"]["tokens_before"] / 2


def test_forwarded_tools_keep_their_bytes(gateway, stub):
    text = unique("Where is parse_config defined?")
    send(gateway, text)
    (body, _), = recorded(stub, text)
    originals = {tool["name"]: tool for tool in CLAUDE_CODE}
    for tool in body["tools"]:
        assert tool == originals[tool["name"]]


def test_forced_tool_choice_survives_the_gateway(gateway, stub):
    text = unique("Explain what the settings module loads")
    send(gateway, text, tool_choice={"type": "tool", "name": "WebSearch"})
    (body, _), = recorded(stub, text)
    names = [tool["name"] for tool in body["tools"]]
    assert "WebSearch" in names
    assert body["tool_choice"]["name"] == "WebSearch"


def test_greeting_sends_no_tools_and_no_tool_choice(gateway, stub):
    # The greeting must be the whole user text, so the system prompt carries the marker to find it by.
    marker = unique("You are a coding agent.")
    raw, _ = send(gateway, "hello", tool_choice={"type": "auto"}, system=marker)
    assert raw.headers["x-leangate-class"] == "conversational"

    (body, _), = recorded(stub, marker)
    assert "tools" not in body
    assert "tool_choice" not in body
    record = decision_for(gateway, raw.headers["x-leangate-request-id"])
    assert record["tools"]["kept"] == []


def test_session_start_keeps_edit_set(gateway, stub):
    session = uuid.uuid4().hex
    first = unique("Explain the pricing module")
    second = unique("Fix the rounding bug in the pricing module")
    third = unique("What does the serializer do?")

    raw_first, _ = send(gateway, first, session_id=session)
    raw_second, _ = send(gateway, second, session_id=session)
    send(gateway, third, session_id=session)

    # A Claude Code session starts with its class's `session_keep` (all but the conditional groups), so
    # the edit needs no widening.
    assert upstream_tool_names(stub, first) == SESSION_START_TOOLS
    assert upstream_tool_names(stub, second) == SESSION_START_TOOLS
    assert upstream_tool_names(stub, third) == SESSION_START_TOOLS
    assert decision_for(gateway, raw_first.headers["x-leangate-request-id"])["tools"]["session_start"] is True
    assert decision_for(gateway, raw_second.headers["x-leangate-request-id"])["tools"]["session"] == "unchanged"


def test_derived_session_widens_once(gateway, stub):
    """A client without a session header gets an id derived from its conversation's start. Its
    read-only first request is narrowed, and the first edit widens the list at once to every tool
    that no conditional group holds back."""
    first = unique("Explain the pricing module")
    second = unique("Fix the rounding bug in the pricing module")
    api = client(gateway)
    conversation = [{"role": "user", "content": first}]
    api.messages.create(model="claude-sonnet-4-5", max_tokens=256, tools=CLAUDE_CODE, messages=conversation)
    conversation += [{"role": "assistant", "content": "The module rounds per line item."},
                     {"role": "user", "content": second}]
    raw = api.messages.with_raw_response.create(model="claude-sonnet-4-5", max_tokens=256, tools=CLAUDE_CODE,
                                                messages=conversation)

    opening = [body for body, _ in recorded(stub, first) if len(body["messages"]) == 1]
    assert [tool["name"] for tool in opening[0]["tools"]] == READ_TOOLS
    assert upstream_tool_names(stub, second) == SESSION_START_TOOLS
    assert decision_for(gateway, raw.headers["x-leangate-request-id"])["tools"]["session"] == "widened"


def test_openai_chat_request_is_classified(gateway, stub):
    text = unique("Explain how the lexer handles escaped quotes")
    tools = [{"type": "function", "function": {"name": tool["name"], "description": tool["description"],
                                                "parameters": tool["input_schema"]}} for tool in CLAUDE_CODE]
    openai_client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="client-key", max_retries=0)
    raw = openai_client.chat.completions.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=256, tools=tools, messages=[{"role": "user", "content": text}]
    )
    assert raw.headers["x-leangate-class"] == "explain"
    assert upstream_tool_names(stub, text) == READ_TOOLS
