"""Tier routing through the running gateway, and retraining from the decision log it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anthropic
import pytest

from engine.stages.tier.policy import FEATURE_NAMES
from tests.conftest import wait_for_decisions

ROOT = Path(__file__).resolve().parent.parent

EASY_PROMPTS = [
    "What is the default port of PostgreSQL?",
    "How do I reverse a string in Go?",
    "Which flag makes grep search recursively?",
    "Add a trailing newline to README.md.",
    "What's the syntax for a multi-line string in YAML?",
    "How do I exit vim?",
]
HARD_PROMPTS = [
    "Our Java worker pool deadlocks under load when a job enqueues another job. Find the cause and fix it without reducing throughput.",
    "Design a rate limiter for our multi-region API gateway with per-tenant quotas that hold within 5% across regions.",
    "Review backend/app/routes/auth.py for security issues: password reset tokens, session cookies, timing attacks and CSRF.",
    "Migrate the user service from MongoDB to Postgres with zero downtime: dual writes, backfill, verification, then cut over.",
    "We leak memory in the ingest service in production: RSS grows 200 MB an hour. Find the leak and fix it.",
    "Make the payment webhook handler idempotent; retries currently double-charge customers after a rebalance.",
]


@pytest.fixture
def routed(start_gateway):
    """Send the easy and hard prompts through a gateway; return (gateway, {request_id: label}, decisions)."""
    gateway = start_gateway()
    client = anthropic.Anthropic(base_url=gateway.url, api_key="client-key", max_retries=0)
    labels = {}
    for label, prompts in (("easy", EASY_PROMPTS), ("hard", HARD_PROMPTS)):
        for prompt in prompts:
            response = client.messages.with_raw_response.create(
                model="leangate-auto", max_tokens=64, messages=[{"role": "user", "content": prompt}]
            )
            labels[response.headers["x-leangate-request-id"]] = label
    decisions = wait_for_decisions(gateway.extra["decisions"], len(labels))
    return gateway, labels, decisions


def test_gateway_routes_by_tier_model(routed):
    _, labels, decisions = routed
    by_id = {record["request_id"]: record for record in decisions}
    for request_id, label in labels.items():
        tier = by_id[request_id]["tier"]
        assert list(tier["features"]) == list(FEATURE_NAMES)
        assert tier["decided_by"] == "model"
        # The semantic cache embeds eligible requests first; the router then reuses that embedding.
        assert tier["semantic"] in ("computed", "shared")
        expected = ("fast", "claude-haiku-4-5") if label == "easy" else ("strong", "claude-sonnet-4-5")
        assert (tier["tier"], tier["model"]) == expected, (label, tier["probability"])


def test_decision_log_retrains_the_model(routed, tmp_path):
    gateway, labels, _ = routed
    label_file = tmp_path / "labels.jsonl"
    label_file.write_text("".join(json.dumps({"request_id": key, "label": value}) + "\n" for key, value in labels.items()))
    out = tmp_path / "retrained.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "engine", "train-tier", "--logs", str(gateway.extra["decisions"]), "--labels", str(label_file),
         "--out", str(out), "--folds", "3", "--policy", str(gateway.extra["policies"])],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "policy centroids kept" in result.stdout
    assert f"{len(labels)} records with tier features, {len(labels)} labelled" in result.stderr
    assert out.read_text().count("centroids:") == 1
