"""Tool-selection policy: groups, class rules, compiled conditions, and load errors with positions."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from engine.policy.errors import PolicyError
from engine.policy.loader import load_policy_set
from engine.policy.models import Policy
from engine.stages.tools.policy import ClassRule, NameMatcher

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"


def make_policy(tool_groups: dict, classes: list) -> Policy:
    return Policy.model_validate(
        {
            "providers": {"stub": {"kind": "anthropic", "base_url": "http://127.0.0.1:9"}},
            "tiers": [{"name": "only", "provider": "stub", "model": "stub-model"}],
            "tool_groups": tool_groups,
            "classes": classes,
        }
    )


def error_locations(error: ValidationError) -> list[tuple]:
    return [tuple(part for part in detail["loc"] if isinstance(part, (str, int))) for detail in error.errors()]


def test_default_policy_binds_every_class():
    policy = load_policy_set(POLICIES).base
    names = [rule.name for rule in policy.classes]
    for expected in ("conversational", "explain", "search", "edit", "shell", "git", "web", "plan", "default"):
        assert expected in names
    assert all(rule.is_bound for rule in policy.classes)
    assert policy.classes[-1].keep == "all"
    assert policy.classes[-1].when.model_dump(exclude_none=True) == {}


def test_default_groups_name_old_and_new_kill_tools():
    background = load_policy_set(POLICIES).base.tool_groups["background_shell"]
    assert "KillBash" in background.tools
    assert "KillShell" in background.tools
    assert background.conditional


def test_glob_matches_mcp_tools():
    matcher = NameMatcher(["mcp__github__*", "Read"])
    assert matcher.matches("mcp__github__create_issue")
    assert matcher.matches("Read")
    assert not matcher.matches("mcp__slack__post")
    assert not matcher.matches("ReadMcpResourceTool")
    assert not matcher.matches("read")


def test_empty_matcher_matches_nothing():
    assert not NameMatcher([]).matches("Read")
    assert not NameMatcher([]).matches("")


def test_bad_regex_is_validation_error_at_key_path():
    with pytest.raises(ValidationError) as caught:
        make_policy({"read": ["Read"]}, [{"name": "explain", "when": {"last_user_text": "(?i)(explain"}, "keep": ["read"]}])
    assert ("classes", 0, "when", "last_user_text") in error_locations(caught.value)
    assert "invalid regular expression" in str(caught.value)


def test_bad_negative_and_client_regex_rejected():
    for key in ("not_last_user_text", "client"):
        with pytest.raises(ValidationError) as caught:
            make_policy({}, [{"name": "broken", "when": {key: "[unclosed"}}])
        assert ("classes", 0, "when", key) in error_locations(caught.value)


def test_unknown_group_in_keep_is_error():
    with pytest.raises(ValidationError) as caught:
        make_policy({"read": ["Read"]}, [{"name": "explain", "keep": ["read", "writ"]}])
    message = str(caught.value)
    assert "unknown tool group" in message
    assert "'writ'" in message
    assert ("classes", 0) in error_locations(caught.value)


def test_all_inside_keep_list_is_error():
    with pytest.raises(ValidationError) as caught:
        make_policy({"read": ["Read"]}, [{"name": "x", "keep": ["read", "all"]}])
    assert "keep: all" in str(caught.value)


def test_min_above_max_messages_is_error():
    with pytest.raises(ValidationError) as caught:
        make_policy({}, [{"name": "x", "when": {"min_messages": 5, "max_messages": 2}}])
    assert "min_messages" in str(caught.value)


def test_unknown_condition_key_is_error():
    with pytest.raises(ValidationError) as caught:
        make_policy({}, [{"name": "x", "when": {"last_user_txt": "explain"}}])
    assert ("classes", 0, "when", "last_user_txt") in error_locations(caught.value)


def test_single_glob_accepted_without_list():
    policy = make_policy({}, [{"name": "x", "when": {"last_tool": "Bash", "model": "claude-*"}}])
    conditions = policy.classes[0].when
    assert conditions.last_tool == ["Bash"]
    assert conditions.model == ["claude-*"]


def test_rule_validated_alone_binds_on_request():
    rule = ClassRule.model_validate({"name": "explain", "keep": ["read"]})
    assert not rule.is_bound
    with pytest.raises(RuntimeError):
        rule.keeps("Read")
    rule.bind_groups({"read": ["Read"], "write": ["Edit"]})
    assert rule.keeps("Read")
    assert not rule.keeps("Edit")


def test_bind_groups_rejects_unknown_group():
    rule = ClassRule.model_validate({"name": "explain", "keep": ["read"]})
    with pytest.raises(ValueError, match="unknown tool group"):
        rule.bind_groups({"write": ["Edit"]})


def test_rule_keeps_unknown_tool_names():
    rule = make_policy({"read": ["Read"], "write": ["Edit"]}, [{"name": "explain", "keep": ["read"]}]).classes[0]
    assert rule.keeps("Read")
    assert not rule.keeps("Edit")
    assert rule.keeps("SomeNewTool")


def test_empty_keep_removes_every_grouped_tool():
    rule = make_policy({"read": ["Read"], "write": ["Edit"]}, [{"name": "chat", "keep": []}]).classes[0]
    assert not rule.keeps("Read")
    assert not rule.keeps("Edit")
    assert rule.keeps("NotInAnyGroup")


def _copy_policies(tmp_path: Path) -> Path:
    # The whole folder, because default.yaml may include files beside it.
    target = tmp_path / "policies"
    shutil.copytree(POLICIES, target, ignore=shutil.ignore_patterns("teams", "tests"))
    return target


def test_loader_reports_bad_regex_with_line_and_column(tmp_path):
    folder = _copy_policies(tmp_path)
    path = folder / "default.yaml"
    text = path.read_text()
    broken = text.replace("'(?i)\\b(git|commit|", "'(?i)\\b(git|commit(|", 1)
    assert broken != text
    path.write_text(broken)
    line = next(number for number, content in enumerate(broken.splitlines(), 1) if "(git|commit(|" in content)

    with pytest.raises(PolicyError) as caught:
        load_policy_set(folder)
    issues = [issue for issue in caught.value.issues if issue.key_path.endswith("when.last_user_text")]
    assert len(issues) == 1
    assert issues[0].line == line
    assert issues[0].column > 1
    assert issues[0].key_path.startswith("classes[")
    assert "invalid regular expression" in issues[0].message


def test_loader_reports_unknown_group_at_its_rule(tmp_path):
    folder = _copy_policies(tmp_path)
    path = folder / "default.yaml"
    text = path.read_text()
    broken = text.replace("keep: [read, web, mcp]", "keep: [read, webb, mcp]", 1)
    assert broken != text
    path.write_text(broken)

    with pytest.raises(PolicyError) as caught:
        load_policy_set(folder)
    messages = [str(issue) for issue in caught.value.issues]
    assert any("unknown tool group(s) ['webb']" in message for message in messages)
    assert all("default.yaml:" in message for message in messages)
