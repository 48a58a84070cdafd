"""Conditional tool groups through the running gateway: what the stub upstream receives over a session.

The stub runs with `--prompt-cache`, so the usage it reports shows whether the cached prefix (tools,
system, earlier messages) was read again or written anew.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import anthropic
import openai
import pytest

from tests.conftest import recording_gateway
from tests.test_gateway_e2e import decision_for

DATA = Path(__file__).resolve().parent / "data"
CLAUDE_CODE = json.loads((DATA / "tool-sets" / "claude_code_16tools.json").read_text())
CURSOR = json.loads((DATA / "tool-sets" / "cursor_agent_v1.0.json").read_text())
SYSTEM_BLOCKS = json.loads((DATA / "claude_code_1.0.123_system.json").read_text())["blocks"]
# The default policy's conditional tools in the 16-tool Claude Code set.
CONDITIONAL = ["ExitPlanMode", "NotebookEdit", "BashOutput", "KillBash"]
ALL_NAMES = [tool["name"] for tool in CLAUDE_CODE]
NOT_CONDITIONAL = [name for name in ALL_NAMES if name not in CONDITIONAL]
# The default `edit` class keeps every group but `web` on a session's first request.
EDIT_START = [name for name in NOT_CONDITIONAL if name not in ("WebFetch", "WebSearch")]


@pytest.fixture(scope="module")
def caching_gateway(tmp_path_factory):
    """A stub with prompt-cache simulation and recording, and a gateway on the shipped policies."""
    with recording_gateway(tmp_path_factory.mktemp("tool-triggers")) as gateway:
        yield gateway, gateway.extra["stub"]


def system_prompt(marker: str) -> list[dict]:
    # The marker in the second block finds this conversation's recordings again.
    texts = [SYSTEM_BLOCKS[0], SYSTEM_BLOCKS[1] + f"\n<env>\nWorking directory: /home/dev/{marker}\n</env>"]
    return [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}} for text in texts]


def claude_client(gateway, session_id: str | None) -> anthropic.Anthropic:
    headers = {"user-agent": "claude-cli/1.0.123 (external, cli)", "x-app": "cli", "cache-control": "no-cache"}
    if session_id:
        headers["x-claude-code-session-id"] = session_id
    return anthropic.Anthropic(base_url=gateway.url, api_key="client-key", max_retries=0, default_headers=headers)


class Conversation:
    """A Claude Code conversation that grows by one tool round per request, as the agent loop does."""

    def __init__(self, gateway, session_id: str | None = "new", tools: list[dict] | None = None):
        self.gateway = gateway
        self.session_id = uuid.uuid4().hex if session_id == "new" else session_id
        self.marker = uuid.uuid4().hex[:12]
        self.system = system_prompt(self.marker)
        self.tools = tools if tools is not None else CLAUDE_CODE
        self.messages: list[dict] = []
        self.calls = 0
        # The prompt-cache reads the stub reported to the client, one per request.
        self.cache_reads: list[int] = []

    def say(self, text: str) -> None:
        self.messages.append({"role": "user", "content": [{"type": "text", "text": text}]})

    def tool_round(self, name: str, tool_input: dict, output: str) -> None:
        self.calls += 1
        call_id = f"toolu_trigger_{self.marker}_{self.calls:03d}"
        self.messages.append({"role": "assistant", "content": [{"type": "tool_use", "id": call_id, "name": name, "input": tool_input}]})
        self.messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": output}]})

    def send(self, model: str = "leangate-strong", **extra):
        """Send the conversation so far; return the raw response and the decision record's tools part."""
        messages = json.loads(json.dumps(self.messages))
        messages[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
        raw = claude_client(self.gateway, self.session_id).messages.with_raw_response.create(
            model=model, max_tokens=256, system=self.system, tools=self.tools, messages=messages, **extra)
        self.cache_reads.append(raw.parse().usage.cache_read_input_tokens or 0)
        record = decision_for(self.gateway, raw.headers["x-leangate-request-id"])
        return raw, record["tools"]


def recorded_raw(stub, marker: str, count: int, timeout: float = 10.0) -> list[tuple[str, dict]]:
    """Return (raw body text, metadata) of the recorded requests that contain `marker`, oldest first."""
    directory: Path = stub.extra["record"]
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for path in sorted(directory.glob("*.json")):
            if path.name.endswith(".meta.json"):
                continue
            raw = path.read_text(encoding="utf-8")
            if marker in raw:
                meta = path.with_name(path.name[:-5] + ".meta.json")
                found.append((raw, json.loads(meta.read_text()) if meta.exists() else {}))
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def top_level_slices(raw: str) -> dict[str, str]:
    """Split a JSON object's text into the exact text of each top-level value, by key."""
    decoder = json.JSONDecoder()
    slices: dict[str, str] = {}
    position = raw.index("{") + 1
    while True:
        while raw[position] in " \t\r\n,":
            position += 1
        if raw[position] == "}":
            return slices
        key, position = decoder.raw_decode(raw, position)
        while raw[position] in " \t\r\n:":
            position += 1
        _, end = decoder.raw_decode(raw, position)
        slices[key] = raw[position:end]
        position = end


def tool_names(raw: str) -> list[str]:
    return [tool["name"] for tool in json.loads(raw).get("tools", [])]


# --- a session with a header ----------------------------------------------------------------------


def test_session_without_trigger_never_sends_conditional_tools(caching_gateway):
    gateway, stub = caching_gateway
    conversation = Conversation(gateway)
    conversation.say("Fix the rounding in src/shop/pricing.py; totals are off by a cent.")
    decisions = [conversation.send()[1]]
    conversation.tool_round("Read", {"file_path": "/home/dev/shop/src/shop/pricing.py"}, "def total(items):\n    return sum(items)\n")
    decisions.append(conversation.send()[1])
    conversation.tool_round("Bash", {"command": "pytest -q tests/test_pricing.py"}, "1 failed, 12 passed in 0.4s")
    decisions.append(conversation.send()[1])
    conversation.tool_round("Edit", {"file_path": "/home/dev/shop/src/shop/pricing.py", "old_string": "sum(items)",
                                     "new_string": "round(sum(items), 2)"}, "The file has been updated.")
    decisions.append(conversation.send()[1])

    recordings = recorded_raw(stub, conversation.marker, 4)
    assert len(recordings) == 4
    for raw, _ in recordings:
        assert tool_names(raw) == EDIT_START
    for decision in decisions:
        assert sorted(decision["held_back"]) == sorted(CONDITIONAL)
        assert decision["needed_groups"] == {}

    slices = [top_level_slices(raw) for raw, _ in recordings]
    for index in range(1, 4):
        assert slices[index]["tools"] == slices[0]["tools"], f"request {index + 1}: tools bytes changed"
        assert slices[index]["system"] == slices[0]["system"], f"request {index + 1}: system bytes changed"
    # The unchanged prefix is read from the provider cache on every request after the first.
    reads = conversation.cache_reads
    assert reads[0] == 0
    assert all(read > 0 for read in reads[1:]), reads


def test_trigger_adds_group_and_keeps_it(caching_gateway):
    gateway, stub = caching_gateway
    conversation = Conversation(gateway)
    conversation.say("The churn numbers are wrong for March; find out why and fix it.")
    conversation.send()
    conversation.tool_round("Grep", {"pattern": "churn", "path": "/home/dev/shop"}, "src/shop/metrics.py:12:def churn(rows):")
    conversation.send()
    # Request 3: a notebook shows up in a file listing.
    conversation.tool_round("Glob", {"pattern": "analysis/**/*"}, "analysis/churn_report.ipynb\nanalysis/helpers.py")
    _, trigger_decision = conversation.send()
    conversation.tool_round("Read", {"file_path": "/home/dev/shop/analysis/helpers.py"}, "def load():\n    pass\n")
    _, after_decision = conversation.send()

    recordings = recorded_raw(stub, conversation.marker, 4)
    assert len(recordings) == 4
    names = [tool_names(raw) for raw, _ in recordings]
    assert "NotebookEdit" not in names[0]
    assert "NotebookEdit" not in names[1]
    assert "NotebookEdit" in names[2]
    assert "NotebookEdit" in names[3]
    assert names[2] == [name for name in ALL_NAMES if name not in ("ExitPlanMode", "BashOutput", "KillBash")]

    assert trigger_decision["needed_groups"] == {"notebook": "needed_when[0]"}
    assert trigger_decision["session"] == "widened"
    assert after_decision["session"] == "unchanged"

    slices = [top_level_slices(raw)["tools"] for raw, _ in recordings]
    assert slices[1] == slices[0]
    assert slices[2] != slices[1]
    assert slices[3] == slices[2]
    # The trigger request writes the prefix again; the request after it reads it.
    reads = conversation.cache_reads
    assert reads[1] > 0
    assert reads[2] == 0
    assert reads[3] > 0


def test_session_memory_keeps_group_after_history_changes(caching_gateway):
    """A later request of the session whose messages name no notebook (as after Claude Code's
    compaction) still gets the notebook tools, because a session's kept set only grows."""
    gateway, stub = caching_gateway
    session_id = uuid.uuid4().hex
    first = Conversation(gateway, session_id)
    first.say("Plot the weekly signups in notebooks/signups.ipynb.")
    _, first_decision = first.send()
    assert first_decision["needed_groups"] == {"notebook": "needed_when[0]"}

    compacted = Conversation(gateway, session_id)
    compacted.say("Now fix the failing signup test.")
    _, later_decision = compacted.send()

    (raw, _), = recorded_raw(stub, compacted.marker, 1)
    assert "NotebookEdit" in tool_names(raw)
    assert later_decision["needed_groups"] == {}
    assert "NotebookEdit" not in later_decision["held_back"]


def test_background_bash_adds_output_tools(caching_gateway):
    gateway, stub = caching_gateway
    conversation = Conversation(gateway)
    conversation.say("Start the dev server and check that it comes up.")
    _, first = conversation.send()
    conversation.tool_round("Bash", {"command": "npm run dev", "run_in_background": True},
                            "Command running in background with ID: bash_1")
    _, second = conversation.send()

    recordings = recorded_raw(stub, conversation.marker, 2)
    assert "BashOutput" not in tool_names(recordings[0][0])
    assert "BashOutput" in tool_names(recordings[1][0])
    assert "KillBash" in tool_names(recordings[1][0])
    assert "BashOutput" in first["held_back"]
    assert second["needed_groups"] == {"background_shell": "needed_when[0]"}


def test_plan_mode_reminder_adds_exit_plan_mode(caching_gateway):
    gateway, stub = caching_gateway
    conversation = Conversation(gateway)
    conversation.messages.append({"role": "user", "content": [
        {"type": "text", "text": "Add a cache in front of the pricing API."},
        {"type": "text", "text": "<system-reminder>\nPlan mode is active. The user indicated that they do not "
                                 "want you to execute yet.\n</system-reminder>"},
    ]})
    _, decision = conversation.send()

    (raw, _), = recorded_raw(stub, conversation.marker, 1)
    assert "ExitPlanMode" in tool_names(raw)
    assert decision["needed_groups"] == {"plan_mode": "needed_when[0]"}


# --- protected tools --------------------------------------------------------------------------------


def test_tool_called_in_history_is_kept(caching_gateway):
    gateway, stub = caching_gateway
    conversation = Conversation(gateway)
    conversation.say("Write the plan for the coupon refactor and ask me before you start.")
    conversation.tool_round("ExitPlanMode", {"plan": "1. Extract apply_coupon\n2. Add tests"}, "User approved the plan.")
    _, decision = conversation.send()

    (raw, _), = recorded_raw(stub, conversation.marker, 1)
    assert "ExitPlanMode" in tool_names(raw)
    assert "plan_mode" not in decision["needed_groups"]
    assert "ExitPlanMode" not in decision["held_back"]


def test_forced_conditional_tool_is_kept(caching_gateway):
    gateway, stub = caching_gateway
    conversation = Conversation(gateway)
    conversation.say("Explain how the pricing module rounds totals.")
    conversation.send(tool_choice={"type": "tool", "name": "KillBash"})

    (raw, _), = recorded_raw(stub, conversation.marker, 1)
    body = json.loads(raw)
    assert "KillBash" in tool_names(raw)
    assert body["tool_choice"]["name"] == "KillBash"


# --- clients without a session header ----------------------------------------------------------------


def test_derived_session_holds_back_until_trigger(caching_gateway):
    """Without a session header the gateway derives an id from the conversation's start: the first
    request is narrowed to its class, and a trigger later adds the group on top."""
    gateway, stub = caching_gateway
    conversation = Conversation(gateway, session_id=None)
    conversation.say("Explain how the churn metric is computed.")
    _, first = conversation.send()
    conversation.tool_round("Glob", {"pattern": "**/*churn*"}, "src/shop/metrics.py\nanalysis/churn.ipynb")
    _, second = conversation.send()

    recordings = recorded_raw(stub, conversation.marker, 2)
    assert first["class"] == "explain"
    assert first["session"] == "first"
    assert tool_names(recordings[0][0]) == ["Glob", "Grep", "LS", "Read"]
    assert second["needed_groups"] == {"notebook": "needed_when[0]"}
    assert "NotebookEdit" in tool_names(recordings[1][0])


def test_openai_chat_client_gets_edit_notebook_on_trigger(caching_gateway):
    gateway, stub = caching_gateway
    marker = uuid.uuid4().hex[:12]
    tools = [{"type": "function", "function": {"name": tool["name"], "description": tool["description"],
                                                "parameters": tool["input_schema"]}} for tool in CURSOR]
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="client-key", max_retries=0,
                           default_headers={"cache-control": "no-cache"})

    plain = client.chat.completions.with_raw_response.create(
        model="leangate-strong", max_tokens=256, tools=tools,
        messages=[{"role": "user", "content": f"How does the signup form validate emails? [{marker}-a]"}])
    notebook = client.chat.completions.with_raw_response.create(
        model="leangate-strong", max_tokens=256, tools=tools,
        messages=[{"role": "user", "content": f"Why does the second cell of eda.ipynb raise a KeyError? [{marker}-b]"}])

    (plain_raw, _), = recorded_raw(stub, f"{marker}-a", 1)
    (notebook_raw, _), = recorded_raw(stub, f"{marker}-b", 1)
    assert plain.headers["x-leangate-class"] == "explain"
    assert notebook.headers["x-leangate-class"] == "explain"
    assert "edit_notebook" not in tool_names(plain_raw)
    assert "edit_notebook" in tool_names(notebook_raw)
    assert "edit_file" not in tool_names(notebook_raw)
