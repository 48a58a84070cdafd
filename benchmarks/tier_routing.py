"""Benchmark tier routing on the held-out prompts of examples/tier-training/.

Compares, on held-out prompts whose templates training never saw:
- the shipped policy model (all 15 features), run through `route_tier` as the gateway runs it;
- a model on features 1-14 alone, trained here on the training split;
- prompt length alone (log of the last user text's tokens) as the score;
- always the cheap tier.

For each: ROC AUC, and the share of easy requests sent to the cheap tier while at least 95% of hard
requests reach the strong tier (threshold picked on the held-out scores, i.e. the best case), plus
what the threshold chosen in training (the policy's `below`) gives on held-out data.
Then the time of the feature extractor and of the embedding on a Claude Code-sized request.

Run from the repository root: python benchmarks/tier_routing.py [--policy policies] [--repeat 2000]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.embedding import load_embedder  # noqa: E402
from engine.pipeline.context import RequestContext  # noqa: E402
from engine.policy.loader import load_policy_set  # noqa: E402
from engine.stages.tier import training  # noqa: E402
from engine.stages.tier.features import extract_features  # noqa: E402
from engine.stages.tier.route import route_tier  # noqa: E402
from engine.stages.tier.sessions import TierSessions  # noqa: E402
from engine.stages.tier.training_data import Row, load_envelopes, read_prompts, request_for_prompt  # noqa: E402

EXAMPLES = ROOT / "examples" / "tier-training"
TARGET_RECALL = 0.95


def load_rows(path: Path) -> list[Row]:
    prompts = read_prompts(path)
    envelopes = load_envelopes(EXAMPLES / "envelopes", {prompt["envelope"] for prompt in prompts})
    return [
        Row(key=p["id"], label=p["label"], features={}, text=p["text"], body=request_for_prompt(p["text"], envelopes.get(p["envelope"])))
        for p in prompts
    ]


def evaluate(name: str, labels: np.ndarray, scores: np.ndarray, trained_threshold: float | None) -> dict:
    """Score one router on held-out rows; higher score means more likely hard."""
    easy = labels == 0
    result = {"router": name, "auc": training.auc(labels, scores)}
    best = training.threshold_for_recall(labels, scores, TARGET_RECALL)
    result["easy_cheap_at_95"] = float(np.mean(scores[easy] < best))
    result["hard_recall_at_95"] = float(np.mean(scores[labels == 1] >= best))
    if trained_threshold is not None:
        result["easy_cheap_trained"] = float(np.mean(scores[easy] < trained_threshold))
        result["hard_recall_trained"] = float(np.mean(scores[labels == 1] >= trained_threshold))
    return result


def claude_code_request() -> dict:
    """Build a mid-session Claude Code request: system prompt, 16 tools, a task, three tool rounds."""
    envelope = json.loads((EXAMPLES / "envelopes" / "claude-code.json").read_text())
    body = request_for_prompt(
        "The checkout tests fail since the last merge. Find out why `apply_discount()` in "
        "services/billing/invoice.py rounds differently from the frontend, then fix it and run the tests.",
        envelope,
    )
    trace = (
        "FAILED tests/test_invoice.py::test_discount_rounding - AssertionError: 10.01 != 10.0\n"
        + "\n".join(f"tests/test_invoice.py::test_case_{i} PASSED" for i in range(60))
    )
    for index in range(3):
        body["messages"].append(
            {"role": "assistant", "content": [{"type": "tool_use", "id": f"toolu_{index}", "name": "Bash", "input": {"command": "pytest -q"}}]}
        )
        body["messages"].append(
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{index}", "content": trace}]}
        )
    return body


def median_microseconds(function, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1e6)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", type=Path, default=ROOT / "policies")
    parser.add_argument("--repeat", type=int, default=2000, help="Timing repetitions of the extractor (default 2000).")
    args = parser.parse_args()

    policy = load_policy_set(args.policy).base
    if policy.tier_model is None:
        print("error: the policy has no tier_model; train one first (see docs/tier-routing.md)", file=sys.stderr)
        return 1
    embedder = load_embedder(policy.cache.embedder)
    train_rows = load_rows(EXAMPLES / "train.jsonl")
    heldout_rows = load_rows(EXAMPLES / "heldout.jsonl")
    labels = np.array([1 if row.label == "hard" else 0 for row in heldout_rows])
    print(f"held-out prompts: {len(heldout_rows)} ({int(labels.sum())} hard), training prompts: {len(train_rows)}")

    # The shipped model, as the gateway runs it.
    sessions = TierSessions()
    full_scores = []
    for row in heldout_rows:
        ctx = RequestContext(request_id=row.key, protocol="anthropic", body=copy.deepcopy(row.body), headers={}, requested_model="leangate-auto")
        decision = route_tier(ctx, policy, sessions, embedder)
        full_scores.append(decision["probability"])
    shipped_below = policy.tiers[0].below

    # Features 1-14 alone, trained on the training split.
    train_data = training.Dataset(
        lexical=training.lexical_matrix(train_rows, policy.markers),
        labels=np.array([1 if row.label == "hard" else 0 for row in train_rows]),
    )
    lexical_model = training.fit(train_data, "off")
    cv = training.cross_validated_probabilities(train_data, "off", 5)
    lexical_threshold = training.threshold_for_recall(train_data.labels, cv, TARGET_RECALL)
    heldout_lexical = training.lexical_matrix(heldout_rows, policy.markers)
    lexical_scores = lexical_model.probabilities(np.column_stack([heldout_lexical, np.zeros(len(heldout_rows))]))

    # Prompt length alone: the threshold from the training split's lengths.
    length_index = training.LEXICAL_FEATURES.index("log_last_user_tokens")
    train_length = train_data.lexical[:, length_index]
    length_threshold = training.threshold_for_recall(train_data.labels, train_length, TARGET_RECALL)

    results = [
        evaluate("full model (15 features, shipped)", labels, np.array(full_scores), shipped_below),
        evaluate("features 1-14 only", labels, lexical_scores, lexical_threshold),
        evaluate("prompt length only", labels, heldout_lexical[:, length_index], length_threshold),
    ]
    always_cheap = {"router": "always cheap", "auc": 0.5, "easy_cheap_at_95": None, "hard_recall_at_95": None,
                    "easy_cheap_trained": 1.0, "hard_recall_trained": 0.0}
    results.append(always_cheap)

    print()
    print("| router | AUC | easy on cheap at 95% hard recall (best threshold) | easy on cheap / hard recall at the training threshold |")
    print("|---|---|---|---|")
    for result in results:
        best = "unreachable" if result["easy_cheap_at_95"] is None else f"{result['easy_cheap_at_95']:.1%}"
        trained = f"{result['easy_cheap_trained']:.1%} / {result['hard_recall_trained']:.1%}"
        print(f"| {result['router']} | {result['auc']:.3f} | {best} | {trained} |")

    body = claude_code_request()
    extractor = median_microseconds(lambda: extract_features(body, policy.markers), args.repeat)
    text = body["messages"][0]["content"][0]["text"]
    embedding = median_microseconds(lambda: embedder.embed([text]), 200)
    full_route = median_microseconds(
        lambda: route_tier(
            RequestContext(request_id="t", protocol="anthropic", body=body, headers={}, requested_model="leangate-auto"),
            policy, TierSessions(), embedder,
        ),
        200,
    )
    print()
    print(f"request for timing: {len(json.dumps(body))} bytes of JSON, {len(body['tools'])} tools, {len(body['messages'])} messages")
    print(f"feature extraction (features 1-14), median of {args.repeat}: {extractor:.0f} us")
    print(f"embedding of the last user text, median of 200: {embedding / 1000:.1f} ms")
    print(f"route_tier end to end (features, embedding, model, rules), median of 200: {full_route / 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
