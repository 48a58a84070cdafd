"""Compression targets in policy files: what loads, what is rejected, and where the error points."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError
from ruamel.yaml import YAML

from engine.policy.errors import PolicyError
from engine.policy.loader import load_policy_set
from engine.stages.compress.policy import CompressionTarget

ROOT = Path(__file__).resolve().parent.parent
TARGETS = TypeAdapter(list[CompressionTarget])
TOOL_RESULTS = "$.messages[*].content[?(@.type == 'tool_result')]"


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A copy of the shipped policies folder, to add team files to."""
    target = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", target, ignore=shutil.ignore_patterns("teams"))
    (target / "teams").mkdir()
    return target


def write_team(policy_dir: Path, name: str, text: str) -> Path:
    path = policy_dir / "teams" / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load_issues(policy_dir: Path) -> list:
    with pytest.raises(PolicyError) as caught:
        load_policy_set(policy_dir)
    return caught.value.issues


def test_default_policy_ships_lossless_targets() -> None:
    policy = load_policy_set(ROOT / "policies").base
    names = [target.name for target in policy.compression]
    assert names == ["search-results", "file-listings", "json-documents", "numbered-file-lines"]
    for target in policy.compression[:3]:
        assert [action.name for action in target.actions] == ["toon", "minify"]
        assert target.steps == ()
    assert [action.name for action in policy.compression[3].actions] == ["line_numbers"]


def test_lossy_preset_validates() -> None:
    data = YAML(typ="safe").load((ROOT / "policies" / "presets" / "lossy-search.yaml").read_text())
    targets = TARGETS.validate_python(data)
    search = targets[0]
    assert search.name == "search-results-lossy"
    assert [action.name for action in search.steps] == ["project", "dedupe"]
    assert [action.name for action in search.encoders] == ["render", "toon", "minify"]


def test_team_includes_lossy_preset(policy_dir: Path) -> None:
    write_team(policy_dir, "web", "extends: default\ncompression: !include ../presets/lossy-search.yaml\n")
    policies = load_policy_set(policy_dir)
    assert policies.teams["web"].compression[0].name == "search-results-lossy"
    assert policies.base.compression[0].name == "search-results"


def test_bad_jsonpath_reports_file_line_column(policy_dir: Path) -> None:
    write_team(
        policy_dir,
        "bad",
        "extends: default\n"
        "compression:\n"
        "  - name: broken\n"
        "    path: \"$.messages[*.content\"\n"
        "    actions: [toon]\n",
    )
    issues = load_issues(policy_dir)
    assert len(issues) == 1
    issue = issues[0]
    assert issue.file.endswith("teams/bad.yaml")
    assert issue.line == 4
    assert issue.key_path == "compression[0].path"
    assert "invalid JSONPath" in issue.message


def test_bad_action_option_points_at_its_key(policy_dir: Path) -> None:
    write_team(
        policy_dir,
        "bad",
        "extends: default\n"
        "compression:\n"
        "  - name: cut\n"
        f"    path: \"{TOOL_RESULTS}\"\n"
        "    actions:\n"
        "      - {truncate: {items: 0}}\n",
    )
    issues = load_issues(policy_dir)
    assert [issue.key_path for issue in issues] == ["compression[0].actions[0].truncate.items"]
    assert issues[0].line == 6


def test_unknown_action_name_rejected(policy_dir: Path) -> None:
    write_team(
        policy_dir,
        "bad",
        "extends: default\n"
        "compression:\n"
        "  - name: zipped\n"
        f"    path: \"{TOOL_RESULTS}\"\n"
        "    actions: [gzip]\n",
    )
    issues = load_issues(policy_dir)
    assert issues[0].key_path.startswith("compression[0].actions[0]")
    assert "unknown action 'gzip'" in issues[0].message


@pytest.mark.parametrize(
    ("entry", "location", "message"),
    [
        ({"name": "t", "path": "", "actions": ["toon"]}, ("path",), "empty string"),
        ({"name": "t", "path": "$..[[", "actions": ["toon"]}, ("path",), "invalid JSONPath"),
        ({"name": "t", "path": "$", "actions": []}, ("actions",), "at least 1 item"),
        ({"name": "t", "path": "$", "actions": ["toon", {"project": ["a"]}]}, ("actions",), "list them last"),
        ({"name": "t", "path": "$", "actions": ["toon", "toon"]}, ("actions",), "listed once"),
        ({"name": "t", "path": "$", "actions": [{"toon": {}, "minify": {}}]}, ("actions", 0), "exactly one key"),
        ({"name": "t", "path": "$", "actions": [{"truncate": {"items": 3, "lines": 2}}]}, ("actions", 0, "truncate"), "exactly one of"),
        ({"name": "t", "path": "$", "actions": [{"truncate": {"keep": "head"}}]}, ("actions", 0, "truncate"), "exactly one of"),
        ({"name": "t", "path": "$", "actions": [{"truncate": {"items": 3, "keep": "middle"}}]}, ("actions", 0, "truncate", "keep"), "head"),
        ({"name": "t", "path": "$", "actions": [{"drop": ["$..[["]}]}, ("actions", 0, "drop"), "invalid JSONPath"),
        ({"name": "t", "path": "$", "actions": [{"project": []}]}, ("actions", 0, "project"), "at least 1 item"),
        ({"name": "t", "path": "$", "actions": [{"render": {"row": "no fields"}}]}, ("actions", 0, "render", "row"), "at least one field"),
        ({"name": "t", "path": "$", "actions": [{"render": {"row": "{a.__class__}"}}]}, ("actions", 0, "render", "row"), "at least one field"),
        ({"name": "t", "path": "$", "actions": [{"render": {"row": "{a} {"}}]}, ("actions", 0, "render", "row"), "placeholders"),
        ({"name": "t", "path": "$", "actions": [{"dedupe": {"by": []}}]}, ("actions", 0, "dedupe", "by"), "at least 1 item"),
        ({"name": "t", "path": "$", "tool": [], "actions": ["toon"]}, ("tool",), "at least one tool"),
        ({"name": "t", "path": "$", "min_tokens": -1, "actions": ["toon"]}, ("min_tokens",), "greater than or equal"),
        ({"name": "t", "path": "$", "records": "$.[", "actions": ["toon"]}, ("records",), "invalid JSONPath"),
        ({"name": "has space", "path": "$", "actions": ["toon"]}, ("name",), "pattern"),
        ({"name": "t", "path": "$", "actions": ["toon"], "typo": 1}, ("typo",), "Extra inputs"),
        ({"name": "t", "path": "$", "actions": [5]}, ("actions", 0), "valid dictionary"),
    ],
)
def test_invalid_target_rejected_at_key(entry: dict, location: tuple, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TARGETS.validate_python([entry])
    errors = caught.value.errors()
    assert errors[0]["loc"] == (0, *location), errors
    assert message in errors[0]["msg"], errors


def test_short_action_forms_expand() -> None:
    target = TARGETS.validate_python(
        [{"name": "t", "path": "$", "actions": ["dedupe", {"toon": None}, {"minify": None}]}]
    )[0]
    assert target.actions[0].dedupe is not None and target.actions[0].dedupe.by is None
    assert target.actions[1].toon is not None and target.actions[1].toon.delimiter == "comma"
    assert target.actions[2].minify is not None


def test_jsonpath_compiled_once_at_load() -> None:
    target = TARGETS.validate_python([{"name": "t", "path": TOOL_RESULTS, "actions": ["toon"]}])[0]
    compiled = target.plan.compiled_path
    assert compiled is not None
    assert target.plan.fast_steps is not None
    assert target.plan.compiled_path is compiled


def test_tool_globs_match_case_sensitively() -> None:
    target = TARGETS.validate_python(
        [{"name": "t", "path": "$", "tool": ["Grep", "mcp__*search*"], "actions": ["toon"]}]
    )[0]
    assert target.matches_tool("Grep")
    assert target.matches_tool("mcp__github__search_code")
    assert not target.matches_tool("grep")
    assert not target.matches_tool("GrepTool")
    assert not target.matches_tool(None)


def test_schema_accepts_short_action_forms() -> None:
    from engine.policy.models import Policy

    schema = Policy.model_json_schema()
    items = schema["$defs"]["CompressionTarget"]["properties"]["actions"]["items"]
    variants = items["anyOf"]
    assert {"enum": ["toon", "minify", "dedupe", "line_numbers"], "type": "string"} in variants
    assert {"$ref": "#/$defs/ActionSpec"} in variants
