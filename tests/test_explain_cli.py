"""`leangate explain`: one decision record per request file, as text or as JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples" / "requests").glob("*.json"))


def explain(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "explain", "--policies", str(ROOT / "policies"), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_json_has_one_record_per_file():
    result = explain("--json", *map(str, EXAMPLES))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [record["file"] for record in records] == [str(path) for path in EXAMPLES]
    for record in records:
        assert len(record["policy_version"]) == 12
        assert record["team"] == "default"
        assert set(record["tier"]) >= {"tier", "provider", "model"}
        assert record["tier"]["tier"] in ("fast", "strong")
        assert 0 < record["tokens"]["after"] <= record["tokens"]["before"]
        for stage in ("tools", "compression", "prompt_cache"):
            assert stage in record, (record["file"], stage)


def test_protocols_are_detected():
    result = explain("--json", *map(str, EXAMPLES))
    protocols = {Path(json.loads(line)["file"]).name: json.loads(line)["protocol"] for line in result.stdout.splitlines()}
    assert protocols["05-aider-question.openai.json"] == "openai-chat"
    assert protocols["07-codex-turn.responses.json"] == "openai-responses"
    assert protocols["02-read-only-question.anthropic.json"] == "anthropic"


def test_text_output_names_tier_and_tokens():
    result = explain(str(EXAMPLES[1]))
    assert result.returncode == 0, result.stderr
    assert "tier fast -> anthropic/claude-haiku-4-5" in result.stdout or "tier strong -> anthropic/" in result.stdout
    assert "tokens 11931 -> " in result.stdout


def test_bad_file_and_unknown_team(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    result = explain("--json", str(broken), str(EXAMPLES[0]))
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["error"].startswith("cannot read request")
    assert "error" not in lines[1]

    unknown = explain("--team", "nosuchteam", str(EXAMPLES[0]))
    assert unknown.returncode == 1
    assert "unknown team 'nosuchteam'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
