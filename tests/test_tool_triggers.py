"""Conditional tool groups: the policy model, each trigger condition, the stage's rules, and load errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from engine.pipeline.context import RequestContext
from engine.policy.errors import PolicyError
from engine.policy.loader import load_policy_set
from engine.policy.models import Policy, json_schema
from engine.stages.tools.classify import conversation_facts
from engine.stages.tools.groups import ToolGroup, conditional_groups
from engine.stages.tools.select import select_tools
from engine.stages.tools.sessions import ToolSessions
from engine.stages.tools.triggers import needed_groups

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
CLAUDE_CODE = json.loads((ROOT / "tests" / "data" / "tool-sets" / "claude_code_16tools.json").read_text())
CLAUDE_UA = {"user-agent": "claude-cli/1.0.123 (external, cli)", "x-app": "cli"}


def make_policy(tool_groups: dict, classes: list | None = None) -> Policy:
    return Policy.model_validate({
        "providers": {"stub": {"kind": "anthropic", "base_url": "http://127.0.0.1:9"}},
        "tiers": [{"name": "only", "provider": "stub", "model": "stub-model"}],
        "tool_groups": tool_groups,
        "classes": classes if classes is not None else [{"name": "default", "keep": "all"}],
    })


def user(text: str) -> dict:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def tool_round(name: str, call_id: str, tool_input: dict, output) -> list[dict]:
    return [
        {"role": "assistant", "content": [{"type": "tool_use", "id": call_id, "name": name, "input": tool_input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": output}]},
    ]


def needed(trigger: dict, body: dict, headers: dict | None = None) -> bool:
    """Return True if a group with this single trigger is needed by the request body."""
    policy = make_policy({"probe": {"tools": ["Probe"], "needed_when": [trigger]}})
    facts = conversation_facts(body, headers or {})
    return "probe" in needed_groups(conditional_groups(policy.tool_groups), body, facts, [])


def make_ctx(messages: list, tools: list, headers=None, session_id=None, session_source=None, **extra) -> RequestContext:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": messages, "tools": tools, **extra}
    return RequestContext(request_id="req_test", protocol="anthropic", body=body, headers=dict(headers or {}),
                          session_id=session_id, requested_model="claude-sonnet-4-5",
                          scratch={"session_source": session_source})


def names(ctx: RequestContext) -> list[str]:
    return [tool["name"] for tool in ctx.body.get("tools", [])]


def tool(name: str) -> dict:
    return {"name": name, "description": f"The {name} tool.", "input_schema": {"type": "object", "properties": {}}}


# --- the group model ----------------------------------------------------------------------------------


def test_plain_list_validates_as_group():
    policy = make_policy({"read": ["Read", "Grep"]})
    group = policy.tool_groups["read"]
    assert group.tools == ["Read", "Grep"]
    assert not group.conditional
    assert conditional_groups(policy.tool_groups) == ()


def test_single_trigger_mapping_becomes_list():
    group = ToolGroup.model_validate({"tools": ["X"], "needed_when": {"called_tool": "Y"}})
    assert group.conditional
    assert len(group.needed_when) == 1
    assert group.needed_when[0].called_tool == ["Y"]


def test_null_needed_when_makes_group_plain():
    group = ToolGroup.model_validate({"tools": ["X"], "needed_when": None})
    assert not group.conditional


@pytest.mark.parametrize("needed_when, message", [
    ([], "lists no trigger"),
    ([{}], "needs at least one condition"),
    ([{"conversation_text": "(unclosed"}], "invalid regular expression"),
    ([{"tool_input": {"Bash": "[oops"}}], "tool_input['Bash']: invalid regular expression"),
    ([{"tool_input": {}}], "at least one"),
    ([{"conversation_txt": "x"}], "Extra inputs"),
])
def test_bad_trigger_is_rejected(needed_when, message):
    with pytest.raises(ValidationError) as caught:
        make_policy({"notebook": {"tools": ["NotebookEdit"], "needed_when": needed_when}})
    assert message in str(caught.value)


def test_group_mapping_needs_tools():
    with pytest.raises(ValidationError) as caught:
        make_policy({"notebook": {"needed_when": [{"conversation_text": "x"}]}})
    locations = [tuple(detail["loc"]) for detail in caught.value.errors()]
    assert ("tool_groups", "notebook", "tools") in locations


def test_schema_accepts_list_and_mapping_groups():
    schema = json_schema()
    group = schema["$defs"]["ToolGroup"]
    kinds = [variant.get("type") for variant in group["anyOf"]]
    assert kinds == ["array", "object"]
    mapping = group["anyOf"][1]
    assert set(mapping["properties"]) == {"tools", "description", "needed_when"}
    trigger = schema["$defs"]["TriggerConditions"]
    assert set(trigger["properties"]) == {"user_text", "conversation_text", "system_text", "called_tool", "tool_input", "client"}
    assert trigger["additionalProperties"] is False


def test_checked_in_schema_has_trigger_keys():
    checked_in = json.loads((ROOT / "schemas" / "policy.schema.json").read_text())
    assert "TriggerConditions" in checked_in["$defs"]
    assert "needed_when" in checked_in["$defs"]["ToolGroup"]["anyOf"][1]["properties"]


# --- trigger conditions -----------------------------------------------------------------------------


def test_user_text_searches_every_user_message():
    body = {"messages": [user("Look at https://example.com/changelog"), {"role": "assistant", "content": "Sure."},
                         user("Now fix the parser.")]}
    assert needed({"user_text": "https?://"}, body)


def test_user_text_ignores_reminders_and_tool_results():
    body = {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>see https://x.dev</system-reminder>"},
                                     {"type": "text", "text": "Fix the parser."}]},
        *tool_round("Read", "toolu_1", {"file_path": "README.md"}, "Docs at https://x.dev"),
    ]}
    assert not needed({"user_text": "https?://"}, body)


@pytest.mark.parametrize("messages", [
    [user("Open notebooks/eda.ipynb")],
    [user("Fix it"), *tool_round("Glob", "toolu_1", {"pattern": "**/*"}, "a.py\nnotebooks/eda.ipynb")],
    [user("Fix it"), *tool_round("Glob", "toolu_1", {"pattern": "**/*"}, [{"type": "text", "text": "eda.IPYNB"}])],
    [user("Fix it"), *tool_round("Read", "toolu_1", {"file_path": "/work/eda.ipynb"}, "cells")],
    [user("Fix it"), {"role": "assistant", "content": [{"type": "text", "text": "The bug is in eda.ipynb."}]}],
    [{"role": "user", "content": "Open eda.ipynb please"}],
])
def test_conversation_text_finds_notebook_anywhere(messages):
    assert needed({"conversation_text": r"(?i)\.ipynb\b"}, {"messages": messages})


def test_conversation_text_skips_thinking_and_system():
    body = {"system": "Notebooks end in .ipynb.", "messages": [
        user("Fix it"),
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "maybe eda.ipynb", "signature": "c2ln"}]},
    ]}
    assert not needed({"conversation_text": r"\.ipynb\b"}, body)


@pytest.mark.parametrize("body", [
    {"system": "Plan mode is active.", "messages": [user("Add a cache")]},
    {"system": [{"type": "text", "text": "x"}, {"type": "text", "text": "Plan mode is active."}], "messages": [user("Add a cache")]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "Add a cache"},
                                               {"type": "text", "text": "<system-reminder>\nPlan mode is active.\n</system-reminder>"}]}]},
    {"messages": [user("Add a cache"), *tool_round("Read", "toolu_1", {"file_path": "a.py"},
                                                   "x = 1\n<system-reminder>Plan mode is active.</system-reminder>")]},
])
def test_system_text_reads_system_and_reminders(body):
    assert needed({"system_text": "Plan mode is active"}, body)


def test_system_text_ignores_plain_user_text():
    body = {"messages": [user("Is plan mode is active a thing? Plan mode is active, they say.")]}
    assert not needed({"system_text": "Plan mode is active"}, body)


def test_called_tool_glob():
    body = {"messages": [user("Plan it"), *tool_round("EnterPlanMode", "toolu_1", {}, "Entered plan mode.")]}
    assert needed({"called_tool": "Enter*"}, body)
    assert not needed({"called_tool": "Exit*"}, body)


def test_tool_input_matches_tool_and_json():
    background = {"messages": [user("Start it"), *tool_round("Bash", "toolu_1", {"command": "npm run dev", "run_in_background": True}, "ok")]}
    foreground = {"messages": [user("Start it"), *tool_round("Bash", "toolu_1", {"command": "npm run dev", "run_in_background": False}, "ok")]}
    other_tool = {"messages": [user("Start it"), *tool_round("Task", "toolu_1", {"prompt": '"run_in_background":true'}, "ok")]}
    trigger = {"tool_input": {"Bash": r'"run_in_background":\s*true'}}
    assert needed(trigger, background)
    assert not needed(trigger, foreground)
    assert not needed(trigger, other_tool)


def test_conditions_of_one_trigger_all_hold():
    body = {"messages": [user("Open eda.ipynb")]}
    trigger = {"conversation_text": r"\.ipynb", "client": "(?i)cursor"}
    assert not needed(trigger, body, CLAUDE_UA)
    assert needed(trigger, body, {"user-agent": "Cursor/1.0"})


def test_first_holding_trigger_is_the_reason():
    policy = make_policy({"probe": {"tools": ["Probe"], "needed_when": [
        {"user_text": "never matches this"}, {"user_text": "eda"}, {"user_text": "ipynb"}]}})
    body = {"messages": [user("Open eda.ipynb")]}
    found = needed_groups(conditional_groups(policy.tool_groups), body, conversation_facts(body, {}), [])
    assert found == {"probe": "needed_when[1]"}


def test_malformed_messages_do_not_crash():
    body = {"system": 42, "messages": ["text", {"role": "user"}, {"role": "user", "content": [None, 3, {"type": "text"}]},
                                       {"role": "user", "content": [{"type": "tool_result", "content": {"odd": 1}}]}]}
    assert not needed({"conversation_text": "x", "system_text": "x"}, body)


# --- the stage --------------------------------------------------------------------------------------


NOTEBOOK_POLICY = {
    "tool_groups": {
        "read": ["Read"],
        "write": ["Edit"],
        "notebook": {"tools": ["NotebookEdit"], "needed_when": [{"conversation_text": r"\.ipynb\b"}]},
    },
    "classes": [
        {"name": "explain", "when": {"last_user_text": "(?i)explain"}, "keep": ["read"]},
        {"name": "notebook-work", "when": {"last_user_text": "(?i)jupyter"}, "keep": ["read", "notebook"]},
        {"name": "default", "keep": "all", "session_keep": "all"},
    ],
}
TOOLS = [tool("Read"), tool("Edit"), tool("NotebookEdit"), tool("Unlisted")]


def notebook_policy() -> Policy:
    return make_policy(NOTEBOOK_POLICY["tool_groups"], NOTEBOOK_POLICY["classes"])


def test_keep_all_still_holds_back_conditional_group():
    ctx = make_ctx([user("Fix the parser")], list(TOOLS))
    decision = select_tools(ctx, notebook_policy(), ToolSessions())
    assert names(ctx) == ["Read", "Edit", "Unlisted"]
    assert decision["held_back"] == ["NotebookEdit"]
    assert decision["removed"] == ["NotebookEdit"]


def test_trigger_forwards_group_beyond_class():
    ctx = make_ctx([user("Explain cell 3 of eda.ipynb")], list(TOOLS))
    decision = select_tools(ctx, notebook_policy(), ToolSessions())
    assert decision["class"] == "explain"
    assert names(ctx) == ["Read", "NotebookEdit", "Unlisted"]
    assert decision["needed_groups"] == {"notebook": "needed_when[0]"}
    assert decision["held_back"] == []


def test_class_naming_group_forwards_it():
    ctx = make_ctx([user("Tidy my Jupyter setup")], list(TOOLS))
    decision = select_tools(ctx, notebook_policy(), ToolSessions())
    assert "NotebookEdit" in names(ctx)
    assert decision["needed_groups"] == {"notebook": "class"}


def test_forced_and_called_tools_are_not_held():
    forced = make_ctx([user("Fix the parser")], list(TOOLS), tool_choice={"type": "tool", "name": "NotebookEdit"})
    select_tools(forced, notebook_policy(), ToolSessions())
    assert "NotebookEdit" in names(forced)

    called = make_ctx([user("Fix the parser"), *tool_round("NotebookEdit", "toolu_1", {"cell": 1}, "done")], list(TOOLS))
    decision = select_tools(called, notebook_policy(), ToolSessions())
    assert "NotebookEdit" in names(called)
    assert decision["needed_groups"] == {}


def test_tool_in_needed_and_held_group_is_kept():
    policy = make_policy({
        "notebook": {"tools": ["NotebookEdit", "Shared"], "needed_when": {"user_text": "ipynb"}},
        "background": {"tools": ["BashOutput", "Shared"], "needed_when": {"user_text": "background"}},
    })
    ctx = make_ctx([user("Open eda.ipynb")], [tool("NotebookEdit"), tool("Shared"), tool("BashOutput")])
    decision = select_tools(ctx, policy, ToolSessions())
    assert names(ctx) == ["NotebookEdit", "Shared"]
    assert decision["held_back"] == ["BashOutput"]


def test_group_without_offered_tools_is_skipped():
    # Its triggers are not evaluated, so the decision names no needed group.
    ctx = make_ctx([user("Explain cell 3 of eda.ipynb")], [tool("Read"), tool("Edit")])
    decision = select_tools(ctx, notebook_policy(), ToolSessions())
    assert decision["needed_groups"] == {}
    assert decision["held_back"] == []
    assert names(ctx) == ["Read"]


def test_header_session_grows_once_at_trigger():
    policy, sessions = notebook_policy(), ToolSessions()
    history = [user("Fix the parser")]
    first = make_ctx(list(history), list(TOOLS), session_id="s", session_source="header")
    assert select_tools(first, policy, sessions)["session"] == "first"
    assert names(first) == ["Read", "Edit", "Unlisted"]

    history += tool_round("Glob", "toolu_1", {"pattern": "*"}, "eda.ipynb")
    second = make_ctx(list(history), list(TOOLS), session_id="s", session_source="header")
    decision = select_tools(second, policy, sessions)
    assert decision["session"] == "widened"
    assert names(second) == ["Read", "Edit", "NotebookEdit", "Unlisted"]

    # Session memory keeps the group even when a later conversation names no notebook.
    third = make_ctx([user("Fix the lexer")], list(TOOLS), session_id="s", session_source="header")
    decision = select_tools(third, policy, sessions)
    assert decision["session"] == "unchanged"
    assert names(third) == ["Read", "Edit", "NotebookEdit", "Unlisted"]


def test_widening_leaves_held_groups_out():
    policy, sessions = notebook_policy(), ToolSessions()
    first = make_ctx([user("Explain the parser")], list(TOOLS), session_id="d", session_source="derived")
    select_tools(first, policy, sessions)
    assert names(first) == ["Read", "Unlisted"]

    second = make_ctx([user("Fix the parser")], list(TOOLS), session_id="d", session_source="derived")
    decision = select_tools(second, policy, sessions)
    assert decision["session"] == "widened"
    assert names(second) == ["Read", "Edit", "Unlisted"]
    assert decision["held_back"] == ["NotebookEdit"]


def test_request_without_session_rechecks_triggers():
    policy = notebook_policy()
    plain = make_ctx([user("Fix the parser")], list(TOOLS))
    select_tools(plain, policy, ToolSessions())
    triggered = make_ctx([user("Fix the parser"), *tool_round("Glob", "toolu_1", {}, "eda.ipynb"), user("And the lexer")], list(TOOLS))
    select_tools(triggered, policy, ToolSessions())
    assert "NotebookEdit" not in names(plain)
    assert "NotebookEdit" in names(triggered)


def test_default_policy_conditional_groups():
    groups = {group.name: group for group in conditional_groups(load_policy_set(POLICIES).base.tool_groups)}
    assert set(groups) == {"notebook", "background_shell", "plan_mode"}
    assert groups["notebook"].matcher.matches("edit_notebook")
    assert groups["background_shell"].matcher.matches("KillShell")
    assert groups["plan_mode"].matcher.matches("ExitPlanMode")


def test_default_policy_session_start_holds_back_conditional_tools():
    policy = load_policy_set(POLICIES).base
    ctx = make_ctx([user("Explain the pricing module")], list(CLAUDE_CODE), headers=CLAUDE_UA,
                   session_id="cc", session_source="header")
    decision = select_tools(ctx, policy, ToolSessions())
    assert decision["session_start"] is True
    assert sorted(decision["held_back"]) == ["BashOutput", "ExitPlanMode", "KillBash", "NotebookEdit"]
    assert decision["tokens_after"] < decision["tokens_before"]


# --- load errors with positions ---------------------------------------------------------------------


def copy_policies(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(POLICIES, target, ignore=shutil.ignore_patterns("teams", "tests"))
    return target


def replace_once(path: Path, old: str, new: str) -> str:
    text = path.read_text()
    assert text.count(old) == 1, old
    changed = text.replace(old, new)
    path.write_text(changed)
    return changed


def line_of(text: str, needle: str) -> int:
    return next(number for number, content in enumerate(text.splitlines(), 1) if needle in content)


@pytest.mark.parametrize("old, new, key_path, message", [
    (r"- conversation_text: '(?i)\.ipynb\b'", r"- conversation_text: '(?i)\.ipynb(\b'",
     "tool_groups.notebook.needed_when[0].conversation_text", "invalid regular expression"),
    (r"- system_text: 'Plan mode is active'", r"- system_txt: 'Plan mode is active'",
     "tool_groups.plan_mode.needed_when[0].system_txt", "unknown key"),
    (r"""- tool_input: {Bash: '"run_in_background":\s*true'}""", r"""- tool_input: {Bash: '"run_in_background":\s*(true'}""",
     "tool_groups.background_shell.needed_when[0].tool_input", "invalid regular expression"),
])
def test_bad_trigger_reports_file_line_column(tmp_path, old, new, key_path, message):
    folder = copy_policies(tmp_path)
    text = replace_once(folder / "default.yaml", old, new)

    with pytest.raises(PolicyError) as caught:
        load_policy_set(folder)
    issues = [issue for issue in caught.value.issues if issue.key_path == key_path]
    assert len(issues) == 1, [str(issue) for issue in caught.value.issues]
    assert issues[0].file.endswith("default.yaml")
    assert issues[0].line == line_of(text, new)
    assert issues[0].column > 1
    assert message in issues[0].message


def test_empty_needed_when_reports_its_line(tmp_path):
    folder = copy_policies(tmp_path)
    old = "    needed_when:\n      - system_text: 'Plan mode is active'\n      - called_tool: EnterPlanMode\n"
    text = replace_once(folder / "default.yaml", old, "    needed_when: []\n")

    with pytest.raises(PolicyError) as caught:
        load_policy_set(folder)
    issue, = [issue for issue in caught.value.issues if issue.key_path == "tool_groups.plan_mode.needed_when"]
    assert issue.line == line_of(text, "needed_when: []")
    assert "lists no trigger" in issue.message


def test_leangate_check_prints_trigger_error(tmp_path):
    folder = copy_policies(tmp_path)
    text = replace_once(folder / "default.yaml", "      - called_tool: EnterPlanMode\n", "      - {}\n")
    result = subprocess.run([sys.executable, "-m", "engine", "check", str(folder)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    line = line_of(text, "      - {}")
    assert f"default.yaml:{line}:" in result.stdout + result.stderr
    assert "needs at least one condition" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_team_file_turns_group_plain_or_conditional(tmp_path):
    folder = copy_policies(tmp_path)
    (folder / "teams").mkdir()
    (folder / "teams" / "data.yaml").write_text(
        "extends: default\n"
        "tool_groups:\n"
        "  notebook: {needed_when: null}\n"
        "  web:\n"
        "    tools: [WebFetch, WebSearch]\n"
        "    needed_when: {user_text: 'https?://'}\n", encoding="utf-8")
    policy_set = load_policy_set(folder)
    team = {group.name for group in conditional_groups(policy_set.teams["data"].tool_groups)}
    base = {group.name for group in conditional_groups(policy_set.base.tool_groups)}
    assert team == {"web", "background_shell", "plan_mode"}
    assert base == {"notebook", "background_shell", "plan_mode"}
