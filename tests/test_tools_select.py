"""The tool-selection stage on real tool arrays: default classes, invariants, sessions, `leangate test`."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from engine.pipeline.context import RequestContext
from engine.policy.loader import load_policy_set
from engine.policy.models import Policy
from engine.stages.tools.classify import conversation_facts, last_user_text, strip_system_reminders
from engine.stages.tools.select import select_tools
from engine.stages.tools.sessions import ToolSessions
from engine.tokens import count_tools

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
TOOL_SETS = ROOT / "tests" / "data" / "tool-sets"

CLAUDE_CODE = json.loads((TOOL_SETS / "claude_code_16tools.json").read_text())
CLAUDE_CODE_MCP = json.loads((TOOL_SETS / "claude_code_1.0.123_with_mcp.json").read_text())
CODEX = json.loads((TOOL_SETS / "codex_cli.json").read_text())
CURSOR = json.loads((TOOL_SETS / "cursor_agent_v1.0.json").read_text())

CLAUDE_UA = {"user-agent": "claude-cli/1.0.123 (external, cli)", "x-app": "cli"}
# Tools of the default policy's conditional groups, held back until a trigger shows up.
CONDITIONAL = {"NotebookEdit", "NotebookRead", "edit_notebook", "BashOutput", "KillBash", "KillShell", "ExitPlanMode"}
CODEX_UA = {"user-agent": "codex_cli_rs/0.46.0 (Linux 6.8; x86_64)", "originator": "codex_cli_rs"}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy_set(POLICIES).base


def make_policy(tool_groups: dict, classes: list, **extra) -> Policy:
    return Policy.model_validate(
        {
            "providers": {"stub": {"kind": "anthropic", "base_url": "http://127.0.0.1:9"}},
            "tiers": [{"name": "only", "provider": "stub", "model": "stub-model"}],
            "tool_groups": tool_groups,
            "classes": classes,
            **extra,
        }
    )


def user(text: str) -> dict:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def tool_call(name: str, call_id: str, output: str = "ok") -> list[dict]:
    return [
        {"role": "assistant", "content": [{"type": "tool_use", "id": call_id, "name": name, "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": output}]},
    ]


def make_ctx(messages: list, tools=None, headers=None, session_id=None, team="default", **body_extra) -> RequestContext:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": messages, **body_extra}
    if tools is not None:
        body["tools"] = tools
    return RequestContext(
        request_id="req_test",
        protocol="anthropic",
        body=body,
        headers=dict(headers or {}),
        team=team,
        session_id=session_id,
        requested_model=body["model"],
    )


def names(tools: list) -> list[str]:
    return [tool["name"] for tool in tools]


# --- default classes --------------------------------------------------------------------------

DEFAULT_CLASS_CASES = [
    # (tool set, headers, user text, class, tools that must be kept, tools that must be removed)
    (CLAUDE_CODE, CLAUDE_UA, "thanks!", "conversational", [], ["Read", "Bash", "Edit"]),
    (CLAUDE_CODE, CLAUDE_UA, "Explain how the retry loop in client.py works", "explain",
     ["Read", "Grep", "Glob", "LS"], ["Bash", "Edit", "Write", "TodoWrite", "Task", "WebFetch"]),
    (CLAUDE_CODE, CLAUDE_UA, "Where is parse_config defined?", "search",
     ["Grep", "Glob", "Read"], ["Bash", "Edit", "WebSearch"]),
    (CLAUDE_CODE, CLAUDE_UA, "Fix the bug in paginate()", "edit",
     ["Edit", "MultiEdit", "Write", "Bash", "Read", "TodoWrite"], ["WebFetch", "WebSearch"]),
    (CLAUDE_CODE, CLAUDE_UA, "Run the test suite", "shell",
     ["Bash", "Read"], ["Edit", "Write", "WebSearch", "BashOutput", "KillBash"]),
    (CLAUDE_CODE, CLAUDE_UA, "Commit the staged changes", "git", ["Bash", "Read"], ["Edit", "Task", "WebFetch"]),
    (CLAUDE_CODE, CLAUDE_UA, "Summarise https://docs.python.org/3/whatsnew/3.13.html", "web",
     ["WebFetch", "WebSearch", "Read"], ["Bash", "Edit"]),
    (CLAUDE_CODE, CLAUDE_UA, "Plan the migration to SQLAlchemy 2.0 step by step", "plan",
     ["TodoWrite", "Task", "Edit", "Bash"], ["WebFetch", "WebSearch", "ExitPlanMode"]),
    (CLAUDE_CODE, CLAUDE_UA, "Hmm, interesting.", "default",
     [name for name in names(CLAUDE_CODE) if name not in CONDITIONAL], sorted(CONDITIONAL & set(names(CLAUDE_CODE)))),
    (CLAUDE_CODE_MCP, CLAUDE_UA, "What does useQuery return in react-query v5?", "explain",
     ["mcp__mcp-router__resolve-library-id", "mcp__mcp-router__get-library-docs", "ReadMcpResourceTool", "Read"],
     ["Bash", "KillShell", "SlashCommand", "TodoWrite"]),
    # BashOutput and KillShell come with the first background Bash call, not with the request for one.
    (CLAUDE_CODE_MCP, CLAUDE_UA, "Start the dev server in the background", "shell",
     ["Bash"], ["Edit", "WebFetch", "BashOutput", "KillShell"]),
    (CODEX, CODEX_UA, "Explain how next_token handles escapes", "explain", ["shell", "view_image"], ["apply_patch", "update_plan"]),
    (CODEX, CODEX_UA, "Find every unwrap() in src/", "search", ["shell"], ["apply_patch"]),
    (CODEX, CODEX_UA, "Implement a --verbose flag", "edit", ["shell", "apply_patch", "update_plan"], []),
    (CURSOR, {}, "How does the auth middleware pick public routes?", "explain",
     ["codebase_search", "read_file", "grep_search", "list_dir", "file_search"],
     ["edit_file", "run_terminal_cmd", "web_search", "delete_file"]),
    (CURSOR, {}, "Run the linter", "shell", ["run_terminal_cmd", "read_file"], ["edit_file", "web_search"]),
    (CURSOR, {}, "Add validation to the signup form", "edit", ["edit_file", "search_replace", "run_terminal_cmd"], ["web_search"]),
]


@pytest.mark.parametrize("tools, headers, text, expected_class, kept, removed", DEFAULT_CLASS_CASES,
                         ids=[f"{case[3]}:{case[2][:30]}" for case in DEFAULT_CLASS_CASES])
def test_default_class(policy, tools, headers, text, expected_class, kept, removed):
    ctx = make_ctx([user(text)], tools=list(tools), headers=headers)
    decision = select_tools(ctx, policy, ToolSessions())
    assert decision["class"] == expected_class
    assert ctx.scratch["class"] == expected_class
    forwarded = names(ctx.body.get("tools", []))
    for name in kept:
        assert name in forwarded, f"{name} was removed"
    for name in removed:
        assert name not in forwarded, f"{name} was kept"


def test_ok_counts_as_conversational_only_first(policy):
    ctx = make_ctx([user("ok")], tools=list(CLAUDE_CODE))
    assert select_tools(ctx, policy, ToolSessions())["class"] == "conversational"

    approval = [user("Refactor compute_total; show me the plan first"),
                {"role": "assistant", "content": [{"type": "text", "text": "1. Extract subtotal. Go ahead?"}]},
                user("ok")]
    ctx = make_ctx(approval, tools=list(CLAUDE_CODE))
    assert select_tools(ctx, policy, ToolSessions())["class"] == "default"
    assert names(ctx.body["tools"]) == [name for name in names(CLAUDE_CODE) if name not in CONDITIONAL]


def test_read_only_classes_halve_tool_tokens(policy):
    for text in ("Explain what the settings module loads", "Where is parse_config defined?"):
        ctx = make_ctx([user(text)], tools=list(CLAUDE_CODE), headers=CLAUDE_UA)
        decision = select_tools(ctx, policy, ToolSessions())
        assert decision["tokens_after"] <= decision["tokens_before"] * 0.5


# --- decision and scratch ---------------------------------------------------------------------


def test_decision_has_documented_keys(policy):
    ctx = make_ctx([user("Explain the pricing module")], tools=list(CLAUDE_CODE))
    decision = select_tools(ctx, policy, ToolSessions())
    assert set(decision) == {"class", "rule", "kept", "removed", "tokens_before", "tokens_after", "session",
                             "needed_groups", "held_back"}
    assert decision["session"] is None
    assert decision["needed_groups"] == {}
    assert set(decision["held_back"]) == CONDITIONAL & set(names(CLAUDE_CODE))
    assert policy.classes[decision["rule"]].name == "explain"
    assert decision["kept"] + decision["removed"] != []
    assert sorted(decision["kept"] + decision["removed"]) == sorted(names(CLAUDE_CODE))
    assert decision["tokens_before"] == count_tools(CLAUDE_CODE)
    assert decision["tokens_after"] == count_tools(ctx.body["tools"])


def test_scratch_holds_text_without_reminders(policy):
    message = {"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>\nPlease fix and edit everything.\n</system-reminder>"},
        {"type": "text", "text": "What is Settings.load for?"},
    ]}
    ctx = make_ctx([message], tools=list(CLAUDE_CODE))
    select_tools(ctx, policy, ToolSessions())
    assert ctx.scratch["last_user_text"] == "What is Settings.load for?"
    assert ctx.scratch["class"] == "explain"


def test_last_user_text_skips_tool_result_turns():
    messages = [user("Explain the lexer"), *tool_call("Read", "toolu_1", "fn lex() {}")]
    assert last_user_text(messages) == "Explain the lexer"


def test_last_user_text_accepts_string_content():
    assert last_user_text([{"role": "user", "content": "  hello there  "}]) == "hello there"


def test_unclosed_reminder_is_left_in_text():
    assert strip_system_reminders("<system-reminder>open only") == "<system-reminder>open only"


def test_reminder_removed_inside_one_block():
    text = "before <system-reminder>a\nb</system-reminder> after"
    assert strip_system_reminders(text) == "before  after"


# --- invariants -------------------------------------------------------------------------------


def test_forced_tool_is_never_removed(policy):
    ctx = make_ctx([user("Explain the settings module")], tools=list(CLAUDE_CODE),
                   tool_choice={"type": "tool", "name": "WebSearch"})
    decision = select_tools(ctx, policy, ToolSessions())
    assert decision["class"] == "explain"
    assert "WebSearch" in names(ctx.body["tools"])
    assert "WebFetch" not in names(ctx.body["tools"])
    assert ctx.body["tool_choice"] == {"type": "tool", "name": "WebSearch"}


def test_tool_called_earlier_is_never_removed(policy):
    messages = [user("Explain the pricing module"), *tool_call("Bash", "toolu_1"), *tool_call("Edit", "toolu_2")]
    ctx = make_ctx(messages, tools=list(CLAUDE_CODE))
    select_tools(ctx, policy, ToolSessions())
    forwarded = names(ctx.body["tools"])
    assert "Bash" in forwarded
    assert "Edit" in forwarded
    assert "Write" not in forwarded


def test_called_tool_kept_even_by_conversational_class(policy):
    messages = [user("Rename qty"), *tool_call("MultiEdit", "toolu_1"),
                {"role": "assistant", "content": [{"type": "text", "text": "Done."}]}, user("thanks")]
    ctx = make_ctx(messages, tools=list(CLAUDE_CODE))
    decision = select_tools(ctx, policy, ToolSessions())
    assert decision["class"] == "conversational"
    assert names(ctx.body["tools"]) == ["MultiEdit"]


def test_no_tools_left_removes_tool_choice(policy):
    ctx = make_ctx([user("hello")], tools=list(CLAUDE_CODE), tool_choice={"type": "auto"})
    decision = select_tools(ctx, policy, ToolSessions())
    assert decision["class"] == "conversational"
    assert "tools" not in ctx.body
    assert "tool_choice" not in ctx.body
    assert decision["kept"] == []
    assert decision["tokens_after"] == 0


def test_kept_tools_keep_order_and_identity(policy):
    tools = list(CLAUDE_CODE)
    original_bytes = {tool["name"]: orjson.dumps(tool) for tool in tools}
    ctx = make_ctx([user("Run the test suite")], tools=tools)
    select_tools(ctx, policy, ToolSessions())
    kept = ctx.body["tools"]
    positions = [tools.index(tool) for tool in kept]
    assert positions == sorted(positions)
    for tool in kept:
        assert any(tool is original for original in tools)
        assert orjson.dumps(tool) == original_bytes[tool["name"]]


def test_unknown_tool_is_kept(policy):
    unknown = {"name": "DeployToStaging", "description": "Deploy.", "input_schema": {"type": "object"}}
    tools = [*CLAUDE_CODE, unknown]
    ctx = make_ctx([user("Explain the pricing module")], tools=tools)
    select_tools(ctx, policy, ToolSessions())
    assert ctx.body["tools"][-1] is unknown


def test_server_tool_without_schema_handled_by_name(policy):
    server_search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
    server_editor = {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}
    tools = [*CLAUDE_CODE, server_search, server_editor]

    ctx = make_ctx([user("Explain the pricing module")], tools=list(tools))
    select_tools(ctx, policy, ToolSessions())
    assert server_search not in ctx.body["tools"]
    assert server_editor not in ctx.body["tools"]

    ctx = make_ctx([user("Search the web for the latest release notes of httpx")], tools=list(tools))
    decision = select_tools(ctx, policy, ToolSessions())
    assert decision["class"] == "web"
    assert any(tool is server_search for tool in ctx.body["tools"])


def test_missing_or_empty_tools_do_not_crash(policy):
    ctx = make_ctx([user("Explain the lexer")])
    decision = select_tools(ctx, policy, ToolSessions())
    assert "tools" not in ctx.body
    assert decision["kept"] == []
    assert decision["class"] == "explain"

    ctx = make_ctx([user("Explain the lexer")], tools=[])
    decision = select_tools(ctx, policy, ToolSessions())
    assert decision["tokens_before"] == 0
    assert "tools" not in ctx.body


def test_malformed_entries_are_kept(policy):
    malformed = ["Read", None, {"description": "no name"}, {"type": "local_shell"}, {"name": 42}]
    tools = [*malformed, *CLAUDE_CODE]
    ctx = make_ctx([user("Explain the lexer")], tools=tools)
    decision = select_tools(ctx, policy, ToolSessions())
    assert ctx.body["tools"][: len(malformed)] == malformed
    assert "<local_shell>" in decision["kept"]
    assert "Bash" in decision["removed"]


def test_tools_not_a_list_left_unchanged(policy):
    ctx = make_ctx([user("Explain the lexer")], tools={"name": "Read"})
    decision = select_tools(ctx, policy, ToolSessions())
    assert ctx.body["tools"] == {"name": "Read"}
    assert decision["removed"] == []


def test_malformed_messages_do_not_crash(policy):
    messages = [None, "text", {"role": "user"}, {"role": "user", "content": [None, 3, {"type": "tool_use"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "name": None}]}, user("Explain the lexer")]
    ctx = make_ctx(messages, tools=list(CLAUDE_CODE))
    decision = select_tools(ctx, policy, ToolSessions())
    assert decision["class"] == "explain"


def test_no_matching_rule_keeps_everything():
    policy = make_policy({"read": ["Read"]}, [{"name": "explain", "when": {"last_user_text": "explain"}, "keep": ["read"]}])
    ctx = make_ctx([user("something else")], tools=list(CLAUDE_CODE))
    decision = select_tools(ctx, policy, ToolSessions())
    assert decision["class"] == "default"
    assert decision["rule"] is None
    assert names(ctx.body["tools"]) == names(CLAUDE_CODE)


# --- conditions -------------------------------------------------------------------------------

GROUPS = {"read": ["Read", "Grep", "Glob", "LS"], "shell": ["Bash", "BashOutput", "Kill*"], "write": ["Edit", "Write", "MultiEdit"]}


def classify_with(classes: list, ctx: RequestContext) -> str:
    policy = make_policy(GROUPS, [*classes, {"name": "fallback", "keep": "all"}])
    return select_tools(ctx, policy, ToolSessions())["class"]


def test_condition_tool_results():
    rule = {"name": "loop", "when": {"tool_results": True}, "keep": ["read"]}
    assert classify_with([rule], make_ctx([user("go"), *tool_call("Read", "t1")])) == "loop"
    assert classify_with([rule], make_ctx([user("go")])) == "fallback"


def test_condition_message_bounds():
    rule = {"name": "short", "when": {"min_messages": 2, "max_messages": 3}}
    assert classify_with([rule], make_ctx([user("go")])) == "fallback"
    assert classify_with([rule], make_ctx([user("go"), *tool_call("Read", "t1")])) == "short"
    long = [user("go"), *tool_call("Read", "t1"), *tool_call("Read", "t2")]
    assert classify_with([rule], make_ctx(long)) == "fallback"


def test_condition_last_tool_glob():
    rule = {"name": "after-shell", "when": {"last_tool": ["Bash*"]}}
    assert classify_with([rule], make_ctx([user("go"), *tool_call("Read", "t1"), *tool_call("BashOutput", "t2")])) == "after-shell"
    assert classify_with([rule], make_ctx([user("go"), *tool_call("Bash", "t1"), *tool_call("Read", "t2")])) == "fallback"
    assert classify_with([rule], make_ctx([user("go")])) == "fallback"


def test_condition_client_headers():
    rule = {"name": "codex", "when": {"client": "(?i)codex"}}
    assert classify_with([rule], make_ctx([user("go")], headers={"originator": "codex_cli_rs"})) == "codex"
    assert classify_with([rule], make_ctx([user("go")], headers={"user-agent": "codex_cli_rs/0.46"})) == "codex"
    assert classify_with([rule], make_ctx([user("go")], headers={"user-agent": "claude-cli/1.0"})) == "fallback"
    assert classify_with([rule], make_ctx([user("go")])) == "fallback"


def test_condition_model_glob():
    rule = {"name": "haiku", "when": {"model": "*haiku*"}}
    ctx = make_ctx([user("go")])
    ctx.requested_model = "claude-haiku-4-5"
    assert classify_with([rule], ctx) == "haiku"
    assert classify_with([rule], make_ctx([user("go")])) == "fallback"


def test_condition_negative_regex():
    rule = {"name": "explain", "when": {"last_user_text": "(?i)explain", "not_last_user_text": "(?i)fix"}}
    assert classify_with([rule], make_ctx([user("Explain this")])) == "explain"
    assert classify_with([rule], make_ctx([user("Explain and fix this")])) == "fallback"


def test_first_matching_rule_wins():
    first = {"name": "first", "when": {"last_user_text": "go"}}
    second = {"name": "second", "when": {"last_user_text": "go"}}
    assert classify_with([first, second], make_ctx([user("go")])) == "first"


def test_facts_record_called_tools_in_order():
    messages = [user("go"), *tool_call("Grep", "t1"), *tool_call("Read", "t2"), *tool_call("Grep", "t3")]
    facts = conversation_facts({"messages": messages}, {})
    assert facts.called_tools == ["Grep", "Read"]
    assert facts.last_tool == "Grep"
    assert facts.has_tool_results
    assert facts.message_count == 7


# --- sessions ---------------------------------------------------------------------------------


def test_session_kept_set_only_grows(policy):
    sessions = ToolSessions()
    first = make_ctx([user("Fix the bug in paginate()")], tools=list(CLAUDE_CODE), session_id="s1")
    select_tools(first, policy, sessions)
    first_kept = names(first.body["tools"])

    second = make_ctx([user("What does the serializer do?")], tools=list(CLAUDE_CODE), session_id="s1")
    decision = select_tools(second, policy, sessions)
    assert decision["class"] == "explain"
    assert names(second.body["tools"]) == first_kept


def test_session_union_keeps_original_order(policy):
    sessions = ToolSessions()
    select_tools(make_ctx([user("Search the web for httpx release notes")], tools=list(CLAUDE_CODE), session_id="s"), policy, sessions)
    ctx = make_ctx([user("Run the test suite")], tools=list(CLAUDE_CODE), session_id="s")
    select_tools(ctx, policy, sessions)
    forwarded = names(ctx.body["tools"])
    assert "WebFetch" in forwarded
    assert "Bash" in forwarded
    assert forwarded == [name for name in names(CLAUDE_CODE) if name in forwarded]


def test_session_widens_to_every_offered_tool(policy):
    sessions = ToolSessions()
    first = make_ctx([user("Explain the pricing module")], tools=list(CLAUDE_CODE), session_id="w")
    assert select_tools(first, policy, sessions)["session"] == "first"
    assert "Bash" not in names(first.body["tools"])

    same = make_ctx([user("Where is parse_config defined?")], tools=list(CLAUDE_CODE), session_id="w")
    decision = select_tools(same, policy, sessions)
    assert decision["session"] == "unchanged"
    assert names(same.body["tools"]) == names(first.body["tools"])

    wider = make_ctx([user("Run the test suite")], tools=list(CLAUDE_CODE), session_id="w")
    decision = select_tools(wider, policy, sessions)
    assert decision["class"] == "shell"
    assert decision["session"] == "widened"
    # Widening stops at the conditional groups, which wait for their own triggers.
    not_held = [name for name in names(CLAUDE_CODE) if name not in CONDITIONAL]
    assert sorted(decision["removed"]) == sorted(CONDITIONAL & set(names(CLAUDE_CODE)))
    assert names(wider.body["tools"]) == not_held

    later = make_ctx([user("Explain the lexer")], tools=list(CLAUDE_CODE), session_id="w")
    decision = select_tools(later, policy, sessions)
    assert decision["session"] == "unchanged"
    assert names(later.body["tools"]) == not_held


def test_session_after_empty_set_uses_class(policy):
    sessions = ToolSessions()
    select_tools(make_ctx([user("hi")], tools=list(CLAUDE_CODE), session_id="e"), policy, sessions)
    ctx = make_ctx([user("hi"), {"role": "assistant", "content": "Hello!"}, user("Explain the lexer")],
                   tools=list(CLAUDE_CODE), session_id="e")
    decision = select_tools(ctx, policy, sessions)
    assert decision["session"] == "first"
    assert names(ctx.body["tools"]) == ["Glob", "Grep", "LS", "Read"]


def test_sessions_separate_teams(policy):
    sessions = ToolSessions()
    select_tools(make_ctx([user("Fix the bug")], tools=list(CLAUDE_CODE), session_id="same", team="a"), policy, sessions)
    ctx = make_ctx([user("Explain the lexer")], tools=list(CLAUDE_CODE), session_id="same", team="b")
    select_tools(ctx, policy, sessions)
    assert "Bash" not in names(ctx.body["tools"])


def test_session_lru_evicts_least_recent():
    sessions = ToolSessions(max_sessions=2, idle_ttl=3600)
    sessions.add(("t", "a"), {"Read"})
    sessions.add(("t", "b"), {"Bash"})
    assert sessions.get(("t", "a")) == {"Read"}
    sessions.add(("t", "a"), {"Grep"})  # a is now the most recent
    sessions.add(("t", "c"), {"Edit"})
    assert len(sessions) == 2
    assert sessions.get(("t", "b")) == frozenset()
    assert sessions.get(("t", "a")) == {"Read", "Grep"}
    assert sessions.get(("t", "c")) == {"Edit"}


def test_session_idle_ttl_forgets():
    now = [1000.0]
    sessions = ToolSessions(max_sessions=10, idle_ttl=60, clock=lambda: now[0])
    sessions.add(("t", "a"), {"Read"})
    now[0] += 59
    assert sessions.get(("t", "a")) == {"Read"}
    now[0] += 61
    assert sessions.get(("t", "a")) == frozenset()
    assert sessions.add(("t", "a"), {"Bash"}) == {"Bash"}


def test_expired_sessions_evicted_on_add():
    now = [0.0]
    sessions = ToolSessions(max_sessions=10, idle_ttl=10, clock=lambda: now[0])
    for index in range(5):
        sessions.add(("t", str(index)), {"Read"})
    now[0] = 100.0
    sessions.add(("t", "new"), {"Read"})
    assert len(sessions) == 1


def test_session_bounds_follow_policy(policy):
    sessions = ToolSessions(max_sessions=5, idle_ttl=10)
    small = make_policy(GROUPS, [{"name": "all", "keep": "all"}], sessions={"max_sessions": 1, "idle_ttl": "1h"})
    select_tools(make_ctx([user("a")], tools=list(CLAUDE_CODE), session_id="one"), small, sessions)
    select_tools(make_ctx([user("b")], tools=list(CLAUDE_CODE), session_id="two"), small, sessions)
    assert sessions.max_sessions == 1
    assert sessions.idle_ttl == 3600.0
    assert len(sessions) == 1


def test_session_configure_rejects_bad_bounds():
    with pytest.raises(ValueError):
        ToolSessions(max_sessions=0)
    with pytest.raises(ValueError):
        ToolSessions(idle_ttl=-1)


# --- `leangate test` --------------------------------------------------------------------------


def run_leangate_test(folder: Path) -> subprocess.CompletedProcess:
    # The `leangate` script of the interpreter running the tests, so that the working tree is tested.
    script = Path(sys.executable).parent / "leangate"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "engine"]
    return subprocess.run([*command, "test", str(folder)], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_leangate_test_passes_on_shipped_cases():
    completed = run_leangate_test(POLICIES)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[-1].startswith(f"{sum(line.startswith('PASS') for line in lines)} passed, 0 failed")
    assert sum(line.startswith("PASS") for line in lines) >= 20


def _copy_policy_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    shutil.copytree(POLICIES, folder, ignore=shutil.ignore_patterns("teams"))
    return folder


def test_leangate_test_fails_on_broken_case(tmp_path):
    folder = _copy_policy_folder(tmp_path)
    (folder / "tests" / "zz_broken.yaml").write_text(
        "cases:\n"
        "  - name: explain-must-not-keep-bash\n"
        "    request: requests/cc_explain_retry.json\n"
        "    expect:\n"
        "      class: edit\n"
        "      kept: [Bash]\n"
        "      removed: [Read]\n"
    )
    completed = run_leangate_test(folder)
    assert completed.returncode == 1
    assert "FAIL zz_broken.yaml::explain-must-not-keep-bash" in completed.stdout
    assert "class: expected 'edit', got 'explain'" in completed.stdout
    assert "kept: 'Bash' was removed" in completed.stdout
    assert "removed: 'Read' was kept" in completed.stdout
    assert "Traceback" not in completed.stderr


def test_leangate_test_reports_bad_case_file(tmp_path):
    folder = _copy_policy_folder(tmp_path)
    (folder / "tests" / "zz_bad.yaml").write_text(
        "cases:\n"
        "  - name: missing-request\n"
        "    request: requests/does_not_exist.json\n"
        "    expect: {class: explain}\n"
        "  - name: typo-key\n"
        "    reqest: requests/cc_explain_retry.json\n"
    )
    completed = run_leangate_test(folder)
    assert completed.returncode == 1
    assert "zz_bad.yaml:5:" in completed.stdout
    assert "Traceback" not in completed.stderr


def test_leangate_test_checks_next_call(tmp_path):
    folder = _copy_policy_folder(tmp_path)
    (folder / "tests" / "zz_next.yaml").write_text(
        "cases:\n"
        "  - name: next-call-removed\n"
        "    request: requests/cc_explain_retry.json\n"
        "    expect: {class: explain, next_call: [Edit]}\n"
    )
    completed = run_leangate_test(folder)
    assert completed.returncode == 1
    assert "next_call: 'Edit' was removed" in completed.stdout


def test_leangate_test_lists_unchecked_expectations(tmp_path):
    folder = _copy_policy_folder(tmp_path)
    for path in (folder / "tests").glob("*.yaml"):
        path.unlink()
    (folder / "tests" / "only.yaml").write_text(
        "cases:\n"
        "  - name: with-tier\n"
        "    request: requests/cc_explain_retry.json\n"
        "    expect: {class: explain, tier_not_a_checker: fast}\n"
    )
    completed = run_leangate_test(folder)
    assert "unchecked: tier_not_a_checker" in completed.stdout
    assert "1 passed, 0 failed" in completed.stdout


def test_leangate_test_rejects_invalid_policy(tmp_path):
    folder = _copy_policy_folder(tmp_path)
    path = folder / "default.yaml"
    path.write_text(path.read_text().replace("keep: [read, web, mcp]", "keep: [read, nope]", 1))
    completed = run_leangate_test(folder)
    assert completed.returncode == 1
    assert "unknown tool group(s) ['nope']" in completed.stdout


def test_request_bodies_are_not_mutated_by_copying(policy):
    tools = copy.deepcopy(CLAUDE_CODE)
    ctx = make_ctx([user("Explain the lexer")], tools=tools)
    select_tools(ctx, policy, ToolSessions())
    assert tools == CLAUDE_CODE
