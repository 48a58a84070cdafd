"""`leangate train-tier` run as a subprocess on small files, and the label sources it reads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from engine.policy.loader import load_policy_set
from engine.stages.tier.features import extract_features
from engine.stages.tier.policy import FEATURE_NAMES, TierModel
from engine.stages.tier.training_data import LogRecord, outcome_labels, read_prompts

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "tier-training"


def run_train(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "engine", "train-tier", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )


def small_prompt_file(tmp_path: Path, per_label: int = 18) -> Path:
    """Take the first prompts of each label from the shipped training split (bare and agent envelopes)."""
    rows = [json.loads(line) for line in (EXAMPLES / "train.jsonl").read_text().splitlines()]
    chosen = [row for row in rows if row["label"] == "easy"][:per_label] + [row for row in rows if row["label"] == "hard"][:per_label]
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in chosen))
    shutil.copytree(EXAMPLES / "envelopes", tmp_path / "envelopes")
    return path


def policy_copy(tmp_path: Path, embedder: str | None = None) -> Path:
    directory = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", directory)
    if embedder is not None:
        path = directory / "default.yaml"
        text = path.read_text()
        edited = text.replace("  embedder: {kind: onnx-minilm}\n", f"  embedder: {embedder}\n", 1)
        assert edited != text
        path.write_text(edited)
    return directory


def load_fragment(path: Path) -> TierModel:
    return TierModel.model_validate(YAML(typ="safe").load(path.read_text()))


def test_lexical_training_writes_a_valid_model(tmp_path):
    prompts = small_prompt_file(tmp_path)
    out = tmp_path / "model" / "tier-model.yaml"
    result = run_train(["--prompts", str(prompts), "--out", str(out), "--lexical-only", "--folds", "3",
                        "--policy", str(ROOT / "policies")], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "cross-validated AUC" in result.stdout

    model = load_fragment(out)
    assert model.features == list(FEATURE_NAMES)
    assert model.coefficients[-1] == 0.0
    assert model.centroids is None
    assert model.provenance.rows == 36
    assert model.provenance.hard_rows == 18
    assert model.provenance.cv_folds == 3
    assert 0.0 <= model.provenance.threshold <= 1.0
    assert (tmp_path / "model" / "tier-model.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_written_model_loads_through_policy_include(tmp_path):
    prompts = small_prompt_file(tmp_path)
    directory = policy_copy(tmp_path, embedder="{kind: hashing, dim: 384}")
    out = directory / "tier-model.yaml"
    result = run_train(["--prompts", str(prompts), "--out", str(out), "--folds", "3", "--policy", str(directory)], tmp_path)
    assert result.returncode == 0, result.stderr

    policy = load_policy_set(directory, {}).base
    assert policy.tier_model is not None
    assert policy.tier_model.embedder == "hashing-384"
    assert len(policy.tier_model.centroids.hard) == 384
    assert policy.tier_model.provenance.sources == ["prompts.jsonl"]


def test_prompt_file_in_yaml(tmp_path):
    entries = [{"text": f"What is the syntax for thing number {index}?", "label": "easy"} for index in range(6)]
    entries += [{"text": f"Refactor module {index} across services, then migrate the auth tokens safely.", "label": "hard"} for index in range(6)]
    path = tmp_path / "prompts.yaml"
    path.write_text(json.dumps({"prompts": entries}))  # JSON is valid YAML
    out = tmp_path / "m.yaml"
    result = run_train(["--prompts", str(path), "--out", str(out), "--lexical-only", "--folds", "3",
                        "--policy", str(ROOT / "policies")], tmp_path)
    assert result.returncode == 0, result.stderr
    assert load_fragment(out).provenance.rows == 12


def test_logs_joined_with_labels(tmp_path):
    markers = load_policy_set(ROOT / "policies", {}).base.markers
    prompts = read_prompts(small_prompt_file(tmp_path, per_label=10))
    logs = tmp_path / "decisions.jsonl"
    labels = tmp_path / "labels.csv"
    with open(logs, "w") as log_file, open(labels, "w") as label_file:
        label_file.write("request_id,label\n")
        for index, prompt in enumerate(prompts):
            body = {"messages": [{"role": "user", "content": prompt["text"]}]}
            features = extract_features(body, markers)
            log_file.write(json.dumps({"request_id": f"r{index}", "time": index, "tier": {"tier": "fast", "features": features}}) + "\n")
            label_file.write(f"r{index},{prompt['label']}\n")
        log_file.write(json.dumps({"request_id": "cache-hit", "tier": {"tier": None, "decided_by": "cache"}}) + "\n")
        label_file.write("unknown-id,hard\n")

    out = tmp_path / "from-logs.yaml"
    result = run_train(["--logs", str(logs), "--labels", str(labels), "--out", str(out), "--lexical-only",
                        "--folds", "3", "--policy", str(ROOT / "policies")], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "20 records with tier features, 20 labelled" in result.stderr
    assert "1 of 21 labels match no decision record" in result.stderr
    assert load_fragment(out).provenance.rows == 20


def test_logs_without_text_need_centroids_or_lexical_only(tmp_path):
    logs = tmp_path / "decisions.jsonl"
    features = {name: 1.0 for name in FEATURE_NAMES[:14]}
    with open(logs, "w") as handle:
        for index in range(10):
            handle.write(json.dumps({"request_id": f"r{index}", "tier": {"tier": "fast", "features": features},
                                     "outcome": {"label": "hard" if index % 2 else "easy"}}) + "\n")
    directory = policy_copy(tmp_path)
    (directory / "default.yaml").write_text((directory / "default.yaml").read_text().replace("tier_model: !include tier-model.yaml\n", ""))
    result = run_train(["--logs", str(logs), "--out", str(tmp_path / "m.yaml"), "--folds", "3", "--policy", str(directory)], tmp_path)
    assert result.returncode == 1
    assert "no prompt text" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"text": "hi", "label": "medium"}\n', "prompts.jsonl:1: label must be `easy` or `hard`, got 'medium'"),
        ('{"text": "", "label": "easy"}\n', "prompts.jsonl:1: `text` must be a non-empty string"),
        ('{"text": "hi", "label": "easy"}\nnot json\n', "prompts.jsonl:2: invalid JSON"),
        ('{"text": "hi", "label": "easy", "envelope": "emacs"}\n', "envelope 'emacs' not found"),
        ('{"text": "a", "label": "easy"}\n{"text": "b", "label": "hard"}\n', "need at least 5 easy and 5 hard rows"),
    ],
)
def test_bad_prompt_file_gives_clear_error(tmp_path, content, expected):
    path = tmp_path / "prompts.jsonl"
    path.write_text(content)
    result = run_train(["--prompts", str(path), "--out", str(tmp_path / "m.yaml"), "--lexical-only",
                        "--policy", str(ROOT / "policies")], tmp_path)
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "m.yaml").exists()


def test_bad_arguments_are_rejected(tmp_path):
    missing = run_train(["--prompts", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "m.yaml"),
                         "--policy", str(ROOT / "policies")], tmp_path)
    assert missing.returncode == 1
    assert "nope.jsonl: cannot open" in missing.stderr

    no_policy = run_train(["--prompts", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "m.yaml")], tmp_path)
    assert no_policy.returncode == 1
    assert "cannot load the policy folder policies" in no_policy.stderr

    no_logs = run_train(["--labels", "l.csv", "--out", "m.yaml"], tmp_path)
    assert no_logs.returncode == 2
    assert "--labels needs --logs" in no_logs.stderr

    recall = run_train(["--prompts", "p.jsonl", "--out", "m.yaml", "--target-recall", "1.5"], tmp_path)
    assert recall.returncode == 2
    assert "--target-recall must be in (0, 1]" in recall.stderr


def record(request_id: str, tier: str, *, text: str | None = None, session: str | None = None, time: float = 0.0, **outcome) -> LogRecord:
    return LogRecord(request_id=request_id, features={}, tier=tier, text=text, team="t", session=session, time=time, outcome=outcome)


def test_outcome_labels_from_logs():
    records = [
        record("escalated", "fast", escalated=True),
        record("retried", "fast"),
        record("retry", "strong", retry_of="retried"),
        record("strong-retried", "strong"),
        record("retry-2", "strong", retry_of="strong-retried"),
        record("same-1", "fast", text="fix it", session="s", time=1),
        record("same-2", "strong", text="fix it", session="s", time=2),
        record("labelled", "strong", label="easy"),
        record("quiet", "fast"),
    ]
    labels = outcome_labels(records, cheapest_tiers={"fast"}, implicit_easy=False)
    assert labels["escalated"] == "hard"
    assert labels["retried"] == "hard"
    assert "strong-retried" not in labels  # a retry after a strong-tier response is no evidence against the cheap tier
    assert labels["same-1"] == "hard"
    assert labels["labelled"] == "easy"
    assert "quiet" not in labels
    assert "same-2" not in labels

    implicit = outcome_labels(records, cheapest_tiers={"fast"}, implicit_easy=True)
    assert implicit["quiet"] == "easy"
    assert implicit["escalated"] == "hard"


def test_too_few_groups_for_folds_is_a_clear_error(tmp_path):
    rows = [{"text": f"What is option {index}?", "label": "easy", "group": "a"} for index in range(6)]
    rows += [{"text": f"Redesign service {index} across regions.", "label": "hard", "group": "b"} for index in range(6)]
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = run_train(["--prompts", str(path), "--out", str(tmp_path / "m.yaml"), "--lexical-only", "--folds", "3",
                        "--policy", str(ROOT / "policies")], tmp_path)
    assert result.returncode == 1
    assert "cross-validation failed" in result.stderr
    assert "Traceback" not in result.stderr
