"""Policy loading: file:line:col errors, team overrides, environment variables, includes, limits."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli.schema import render as render_schema
from engine.policy.errors import PolicyError
from engine.policy.loader import deep_merge, load_policy_set

ROOT = Path(__file__).resolve().parent.parent

MINIMAL = """\
version: 1
auth: none
providers:
  main:
    kind: anthropic
    base_url: ${STUB_URL:-http://127.0.0.1:9}
    api_key: ${TEST_PROVIDER_KEY}
tiers:
  - name: fast
    provider: main
    model: small-model
    below: 0.4
  - name: strong
    provider: main
    model: big-model
aliases:
  "*": auto
decision_log: {path: null}
"""


def write_policy(directory: Path, text: str = MINIMAL, teams: dict[str, str] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "default.yaml").write_text(text, encoding="utf-8")
    for name, body in (teams or {}).items():
        (directory / "teams").mkdir(exist_ok=True)
        (directory / "teams" / f"{name}.yaml").write_text(body, encoding="utf-8")
    return directory


def issues_of(directory: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_policy_set(directory, environ or {})
    return [str(issue) for issue in caught.value.issues]


def test_shipped_policies_are_valid():
    policies = load_policy_set(ROOT / "policies", {})
    assert policies.base.auth == "none"
    assert [tier.name for tier in policies.base.tiers][-1] == "strong"


def test_minimal_policy_loads(tmp_path):
    policies = load_policy_set(write_policy(tmp_path), {"TEST_PROVIDER_KEY": "k"})
    assert policies.base.providers["main"].base_url == "http://127.0.0.1:9"
    assert policies.base.providers["main"].api_key.get_secret_value() == "k"
    assert len(policies.version) == 12


def test_env_default_and_override(tmp_path):
    policies = load_policy_set(write_policy(tmp_path), {"STUB_URL": "http://127.0.0.1:5555"})
    assert policies.base.providers["main"].base_url == "http://127.0.0.1:5555"


def test_missing_env_without_default_is_a_warning(tmp_path):
    policies = load_policy_set(write_policy(tmp_path), {})
    assert any("TEST_PROVIDER_KEY is not set" in warning for warning in policies.warnings)
    assert policies.base.providers["main"].api_key.get_secret_value() == ""


def test_type_error_names_file_line_column(tmp_path):
    text = MINIMAL.replace("    below: 0.4", "    below: 1.7")
    issues = issues_of(write_policy(tmp_path, text))
    assert len(issues) == 1
    assert issues[0].startswith(f"{tmp_path / 'default.yaml'}:12:5: tiers[0].below: ")
    assert issues[0].endswith("got 1.7")


def test_unknown_key_is_reported_at_its_position(tmp_path):
    issues = issues_of(write_policy(tmp_path, MINIMAL + "cahce: {enabled: true}\n"))
    assert len(issues) == 1
    assert ":19:1: cahce: unknown key" in issues[0]


def test_invalid_yaml_reports_position(tmp_path):
    issues = issues_of(write_policy(tmp_path, MINIMAL + "tiers: [unclosed\n"))
    assert "invalid YAML" in issues[0]
    assert ":21:" in issues[0] or ":20:" in issues[0]


def test_duplicate_keys_are_rejected(tmp_path):
    issues = issues_of(write_policy(tmp_path, MINIMAL + "auth: keys\n"))
    assert "invalid YAML" in issues[0]
    assert "auth" in issues[0]


def test_unknown_provider_in_tier_points_at_the_key(tmp_path):
    text = MINIMAL.replace("    provider: main\n    model: big-model", "    provider: missing\n    model: big-model")
    issues = issues_of(write_policy(tmp_path, text))
    assert len(issues) == 1
    assert ":14:5: tiers[1].provider: unknown provider 'missing'" in issues[0]


def test_inline_provider_key_is_rejected(tmp_path):
    text = MINIMAL.replace("${TEST_PROVIDER_KEY}", "sk-ant-inline-secret-123")
    issues = issues_of(write_policy(tmp_path, text))
    assert len(issues) == 1
    assert ":7:5: providers.main.api_key: provider keys must come from an environment variable" in issues[0]
    assert "sk-ant-inline-secret-123" not in issues[0]


def test_team_override_merges_mappings_and_replaces_lists(tmp_path):
    team = """\
extends: default
tiers:
  - {name: only, provider: main, model: team-model}
aliases: {"*": only}
providers:
  main: {base_url: "http://127.0.0.1:7777"}
"""
    policies = load_policy_set(write_policy(tmp_path, teams={"web": team}), {})
    web = policies.for_team("web")
    assert [tier.name for tier in web.tiers] == ["only"]
    assert web.providers["main"].base_url == "http://127.0.0.1:7777"
    assert web.providers["main"].kind == "anthropic"  # merged from the base
    assert policies.for_team("unknown-team") is policies.base


def test_team_error_names_the_team_file(tmp_path):
    team = "extends: default\ntiers:\n  - {name: fast, provider: nope, model: x}\n"
    issues = issues_of(write_policy(tmp_path, teams={"web": team}))
    assert len(issues) == 1
    assert "teams/web.yaml:3:18: tiers[0].provider: unknown provider 'nope'" in issues[0]


def test_team_cannot_change_auth(tmp_path):
    issues = issues_of(write_policy(tmp_path, teams={"web": "extends: default\nauth: keys\n"}))
    assert "teams/web.yaml:2:1: auth:" in issues[0]


def test_extends_unknown_policy(tmp_path):
    issues = issues_of(write_policy(tmp_path, teams={"web": "extends: nothere\n"}))
    assert "teams/web.yaml:1:1: extends: unknown policy 'nothere'" in issues[0]


def test_extends_cycle_is_reported(tmp_path):
    issues = issues_of(write_policy(tmp_path, teams={"a": "extends: b\n", "b": "extends: a\n"}))
    assert any("extends cycle" in issue for issue in issues)


def test_include_inserts_another_file(tmp_path):
    text = MINIMAL.replace('aliases:\n  "*": auto\n', "aliases: !include aliases.yaml\n")
    directory = write_policy(tmp_path, text)
    (directory / "aliases.yaml").write_text('"*haiku*": fast\n"*": auto\n', encoding="utf-8")
    policies = load_policy_set(directory, {})
    assert policies.base.aliases == {"*haiku*": "fast", "*": "auto"}
    assert any(name.endswith("aliases.yaml") for name in policies.files)


def test_include_errors_point_into_the_included_file(tmp_path):
    text = MINIMAL.replace('aliases:\n  "*": auto\n', "aliases: !include aliases.yaml\n")
    directory = write_policy(tmp_path, text)
    (directory / "aliases.yaml").write_text('"*": auto\n"x": nosuchtier\n', encoding="utf-8")
    issues = issues_of(directory)
    assert "aliases.yaml:2:1: aliases.x: unknown tier 'nosuchtier'" in issues[0]


def test_missing_include_points_at_include_line(tmp_path):
    text = MINIMAL.replace('aliases:\n  "*": auto\n', "aliases: !include missing.yaml\n")
    directory = write_policy(tmp_path, text)
    line = text.splitlines().index("aliases: !include missing.yaml") + 1

    issues = issues_of(directory)

    assert len(issues) == 1
    assert f"default.yaml:{line}:10: aliases: !include missing.yaml: file " in issues[0]
    assert issues[0].endswith("missing.yaml not found")


def test_alias_expansion_is_bounded(tmp_path):
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    for level in range(1, 9):
        previous = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([previous] * 10)}]")
    bomb = MINIMAL + "description: " + "\n".join(lines[:1]) + "\n"
    directory = write_policy(tmp_path, MINIMAL)
    (directory / "bomb.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (directory / "default.yaml").write_text(MINIMAL.replace("version: 1", "version: 1\ntests: !include bomb.yaml"))
    issues = issues_of(directory)
    assert "alias expansion is bounded" in issues[0]
    assert bomb  # the document itself is small


def test_content_version_changes_with_content(tmp_path):
    directory = write_policy(tmp_path)
    first = load_policy_set(directory, {}).version
    (directory / "default.yaml").write_text(MINIMAL.replace("big-model", "bigger-model"), encoding="utf-8")
    assert load_policy_set(directory, {}).version != first


def test_deep_merge_rules():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    merged = deep_merge(base, {"a": {"c": [3]}, "e": 2})
    assert merged == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}
    assert base["a"]["c"] == [1, 2]


def test_checked_in_schema_is_current():
    checked_in = (ROOT / "schemas" / "policy.schema.json").read_text(encoding="utf-8")
    assert json.loads(checked_in) == json.loads(render_schema()), "run `leangate schema` to regenerate it"


def test_check_command_exit_codes(tmp_path):
    good = write_policy(tmp_path / "good")
    bad = write_policy(tmp_path / "bad", MINIMAL.replace("below: 0.4", "below: -1"))
    ok = subprocess.run([sys.executable, "-m", "engine", "check", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ok:")
    failed = subprocess.run([sys.executable, "-m", "engine", "check", str(bad)], capture_output=True, text=True)
    assert failed.returncode == 1
    assert "default.yaml:12:5: tiers[0].below" in failed.stderr


def test_check_rejects_folder_without_default(tmp_path):
    shutil.rmtree(tmp_path, ignore_errors=True)
    tmp_path.mkdir()
    failed = subprocess.run([sys.executable, "-m", "engine", "check", str(tmp_path)], capture_output=True, text=True)
    assert failed.returncode == 1
    assert "default.yaml" in failed.stderr
    assert "not found" in failed.stderr


def test_python_tags_are_not_executed(tmp_path):
    marker = tmp_path / "executed"
    text = MINIMAL + f'description: !!python/object/apply:os.system ["touch {marker}"]\n'
    issues = issues_of(write_policy(tmp_path / "policy", text))
    assert not marker.exists()
    assert ":19:1: description:" in issues[0]


def test_unknown_group_in_session_keep_is_rejected(tmp_path):
    text = MINIMAL + "tool_groups: {read: [Read]}\nclasses:\n  - {name: explain, keep: [read], session_keep: [read, nope]}\n"
    issues = issues_of(write_policy(tmp_path, text))
    assert len(issues) == 1
    assert "classes[0]" in issues[0]
    assert "session_keep: unknown tool group(s) ['nope']" in issues[0]


def test_team_tier_model_replaces_the_base_model(tmp_path):
    root = Path(__file__).resolve().parent.parent / "policies"
    directory = tmp_path / "policies"
    shutil.copytree(root, directory)
    (directory / "teams").mkdir(exist_ok=True)
    (directory / "teams" / "lexical.yaml").write_text(
        "extends: default\ntier_model: !include ../presets/tier-model-lexical.yaml\n", encoding="utf-8")
    policies = load_policy_set(directory, {})
    assert policies.base.tier_model.centroids is not None
    assert policies.for_team("lexical").tier_model.centroids is None
    assert policies.for_team("lexical").tier_model.coefficients[-1] == 0.0
