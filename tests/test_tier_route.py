"""route_tier on the shipped policy: aliases, the model, rules, the embedder fallback, sessions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.embedding import load_embedder
from engine.embedding.hashing import HashingEmbedder
from engine.pipeline.context import RequestContext
from engine.policy.loader import load_policy_set
from engine.stages.tier.policy import FEATURE_NAMES, TierRule
from engine.stages.tier.route import route_tier
from engine.stages.tier.sessions import TierSessions, should_step_down, step_down_estimate

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"

EASY = "What is the default port of PostgreSQL?"
HARD = (
    "Refactor the payment service so that services/billing/invoice.py no longer talks to the database "
    "directly: introduce a repository layer, then update every caller, keep the public API stable, and make "
    "the retry logic thread-safe because the workers share one connection pool in production."
)


@pytest.fixture(scope="module")
def policy():
    return load_policy_set(ROOT / "policies", {}).base


@pytest.fixture(scope="module")
def minilm():
    return load_embedder()


class FailingEmbedder:
    """An embedder whose every call fails, as a crashed embedding server would."""

    def __init__(self, name: str):
        self.name = name
        self.dim = 384
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        raise RuntimeError("embedding server unreachable")


def make_ctx(text: str, *, model: str = "claude-sonnet-4-5", session: str | None = None, team: str = "default", **body_fields) -> RequestContext:
    body = {"model": model, "max_tokens": 1024, "messages": [{"role": "user", "content": text}], **body_fields}
    return RequestContext(request_id="req-1", protocol="anthropic", body=body, headers={}, team=team, session_id=session, requested_model=model)


def test_decision_has_the_documented_keys(policy):
    decision = route_tier(make_ctx(EASY), policy, TierSessions(), None)
    for key in ("features", "probability", "tier", "rule", "decided_by", "provider", "model"):
        assert key in decision
    assert list(decision["features"]) == list(FEATURE_NAMES)


def test_easy_request_goes_to_fast_tier(policy, minilm):
    decision = route_tier(make_ctx(EASY), policy, TierSessions(), minilm)
    assert decision["semantic"] == "computed"
    assert decision["tier"] == "fast"
    assert decision["decided_by"] == "model"
    assert (decision["provider"], decision["model"]) == ("anthropic", "claude-haiku-4-5")
    assert decision["probability"] < policy.tiers[0].below


def test_hard_request_goes_to_strong_tier(policy, minilm):
    decision = route_tier(make_ctx(HARD), policy, TierSessions(), minilm)
    assert decision["tier"] == "strong"
    assert decision["decided_by"] == "model"
    assert decision["model"] == "claude-sonnet-4-5"


def test_embedding_is_stored_for_the_cache(policy, minilm):
    ctx = make_ctx(EASY)
    route_tier(ctx, policy, TierSessions(), minilm)
    assert ctx.scratch["embedding"].shape == (384,)


def test_shared_embedding_is_reused(policy, minilm):
    ctx = make_ctx(EASY)
    ctx.scratch["embedding"] = minilm.embed([EASY])[0]
    failing = FailingEmbedder(minilm.name)
    decision = route_tier(ctx, policy, TierSessions(), failing)
    assert decision["semantic"] == "shared"
    assert failing.calls == 0
    assert decision["features"]["semantic_difficulty"] == pytest.approx(
        route_tier(make_ctx(EASY), policy, TierSessions(), minilm)["features"]["semantic_difficulty"], abs=1e-5
    )


def test_shared_embedding_of_other_model_is_ignored(policy, minilm):
    ctx = make_ctx(EASY)
    ctx.scratch["embedding"] = HashingEmbedder(384).embed([EASY])[0]
    ctx.scratch["embedding_model"] = "hashing-384"
    decision = route_tier(ctx, policy, TierSessions(), minilm)
    assert decision["semantic"] == "computed"
    assert ctx.scratch["embedding_model"] == minilm.name


def test_missing_embedder_uses_training_mean(policy):
    decision = route_tier(make_ctx(HARD), policy, TierSessions(), None)
    model = policy.tier_model
    assert decision["semantic"] == "unavailable"
    assert decision["semantic_error"] == "no embedder loaded"
    assert decision["features"]["semantic_difficulty"] == pytest.approx(model.mean[-1], rel=1e-5)
    values = np.array([decision["features"][name] for name in FEATURE_NAMES])
    assert decision["probability"] == pytest.approx(model.probability(values), abs=1e-4)


def test_failing_embedder_still_routes(policy):
    failing = FailingEmbedder(policy.tier_model.embedder)
    decision = route_tier(make_ctx(EASY), policy, TierSessions(), failing)
    assert failing.calls == 1
    assert decision["semantic"] == "unavailable"
    assert "RuntimeError" in decision["semantic_error"]
    assert decision["tier"] in ("fast", "strong")


def test_other_embedder_is_not_mixed_with_centroids(policy):
    decision = route_tier(make_ctx(EASY), policy, TierSessions(), HashingEmbedder(384))
    assert decision["semantic"] == "unavailable"
    assert "retrain" in decision["semantic_error"]


def test_non_auto_alias_forces_tier(policy):
    decision = route_tier(make_ctx(HARD, model="claude-3-5-haiku-latest"), policy, TierSessions(), None)
    assert decision["tier"] == "fast"
    assert decision["decided_by"] == "alias"
    assert decision["alias"] == "*haiku*"
    assert decision["semantic"] == "skipped"
    assert decision["probability"] is not None  # still computed, for the decision log


def test_first_matching_alias_wins(policy):
    decision = route_tier(make_ctx(EASY, model="leangate-strong"), policy, TierSessions(), None)
    assert (decision["tier"], decision["decided_by"]) == ("strong", "alias")
    auto = route_tier(make_ctx(EASY, model="leangate-auto"), policy, TierSessions(), None)
    assert auto["decided_by"] == "model"


def test_without_tier_model_auto_takes_strongest(policy):
    bare = policy.model_copy(update={"tier_model": None, "tier_rules": []})
    decision = route_tier(make_ctx(EASY), bare, TierSessions(), None)
    assert decision["tier"] == "strong"
    assert decision["probability"] is None


def test_thinking_request_is_floored_to_strong(policy, minilm):
    ctx = make_ctx(EASY, thinking={"type": "enabled", "budget_tokens": 2048})
    decision = route_tier(ctx, policy, TierSessions(), minilm)
    assert decision["tier"] == "strong"
    assert decision["decided_by"] == "rule"
    assert decision["rule"] == "thinking-requested"


def test_disabled_thinking_is_no_match(policy, minilm):
    decision = route_tier(make_ctx(EASY, thinking={"type": "disabled"}), policy, TierSessions(), minilm)
    assert decision["tier"] == "fast"
    assert decision["rule"] is None


def test_regex_rule_forces_tier(policy, minilm):
    decision = route_tier(make_ctx("ultrathink: " + EASY), policy, TierSessions(), minilm)
    assert (decision["tier"], decision["rule"], decision["decided_by"]) == ("strong", "ultrathink", "rule")


def test_class_rule_reads_scratch(policy, minilm):
    ctx = make_ctx(EASY)
    ctx.scratch["class"] = "plan"
    decision = route_tier(ctx, policy, TierSessions(), minilm)
    assert (decision["tier"], decision["rule"]) == ("strong", "planning")


def test_feature_bound_rule(policy, minilm):
    messages = [{"role": "user", "content": EASY}]
    for index in range(13):
        messages.append({"role": "assistant", "content": [{"type": "tool_use", "id": f"t{index}", "name": "Read", "input": {}}]})
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{index}", "content": "ok"}]})
    ctx = make_ctx(EASY)
    ctx.body["messages"] = messages
    decision = route_tier(ctx, policy, TierSessions(), minilm)
    assert decision["features"]["tool_rounds"] == 13
    assert (decision["tier"], decision["rule"]) == ("strong", "long-agent-loop")


def test_floor_never_lowers_a_tier(policy, minilm):
    rules = [TierRule.model_validate({"name": "floor-fast", "when": {}, "floor": "fast"})]
    decision = route_tier(make_ctx(HARD), policy.model_copy(update={"tier_rules": rules}), TierSessions(), minilm)
    assert decision["tier"] == "strong"
    assert decision["decided_by"] == "model"
    assert decision["rule"] is None


def test_force_can_lower_a_tier(policy, minilm):
    rules = [TierRule.model_validate({"name": "docs-fast", "when": {"last_user_text": "(?i)payment"}, "force": "fast"})]
    decision = route_tier(make_ctx(HARD), policy.model_copy(update={"tier_rules": rules}), TierSessions(), minilm)
    assert (decision["tier"], decision["rule"]) == ("fast", "docs-fast")


def test_rule_with_unknown_tier_is_skipped(policy, minilm):
    rules = [TierRule.model_validate({"when": {}, "force": "medium"})]
    decision = route_tier(make_ctx(EASY), policy.model_copy(update={"tier_rules": rules}), TierSessions(), minilm)
    assert decision["tier"] == "fast"
    assert decision["rule"] is None


# Sessions and the prompt-caching break-even.


def agent_ctx(text: str, session: str, team: str = "default") -> RequestContext:
    """A Claude Code request: its system prompt and 16 tools (about 12k tokens of cached prefix)."""
    ctx = make_ctx(text, session=session, team=team)
    blocks = json.loads((DATA / "claude_code_1.0.123_system.json").read_text())["blocks"]
    ctx.body["system"] = [{"type": "text", "text": block} for block in blocks]
    ctx.body["tools"] = json.loads((DATA / "claude_code_16tools.json").read_text())
    return ctx


def session_policy(policy, **settings):
    return policy.model_copy(update={"tier_session": policy.tier_session.model_copy(update=settings)})


def test_session_escalates_at_once(policy, minilm):
    sessions = TierSessions()
    first = route_tier(agent_ctx(EASY, "s1"), policy, sessions, minilm)
    second = route_tier(agent_ctx(HARD, "s1"), policy, sessions, minilm)
    assert first["tier"] == "fast"
    assert second["tier"] == "strong"
    assert second["decided_by"] == "model"
    assert second["session"]["previous"] == "fast"


def test_session_stays_strong_below_break_even(policy, minilm):
    sessions = TierSessions()
    sticky = session_policy(policy, remaining_turns=1)
    route_tier(agent_ctx(HARD, "s2"), sticky, sessions, minilm)
    decision = route_tier(agent_ctx(EASY, "s2"), sticky, sessions, minilm)
    assert decision["tier"] == "strong"
    assert decision["decided_by"] == "session"
    assert decision["session"]["kept"] is True
    assert decision["session"]["step_down_saving"] < 0


def test_session_steps_down_past_break_even(policy, minilm):
    sessions = TierSessions()
    long_session = session_policy(policy, remaining_turns=50)
    route_tier(agent_ctx(HARD, "s3"), long_session, sessions, minilm)
    decision = route_tier(agent_ctx(EASY, "s3"), long_session, sessions, minilm)
    assert decision["tier"] == "fast"
    assert decision["decided_by"] == "model"
    assert decision["session"]["step_down_saving"] > 0
    assert sessions.get("default", "s3").tier == "fast"


def test_sessions_are_per_team(policy, minilm):
    sessions = TierSessions()
    sticky = session_policy(policy, remaining_turns=1)
    route_tier(agent_ctx(HARD, "shared-id", team="a"), sticky, sessions, minilm)
    decision = route_tier(agent_ctx(EASY, "shared-id", team="b"), sticky, sessions, minilm)
    assert decision["tier"] == "fast"


def test_alias_requests_leave_session_alone(policy, minilm):
    sessions = TierSessions()
    route_tier(make_ctx(HARD, session="s4"), policy, sessions, minilm)
    side = route_tier(make_ctx(EASY, session="s4", model="claude-haiku-4-5"), policy, sessions, minilm)
    assert side["tier"] == "fast"
    assert sessions.get("default", "s4").tier == "strong"


def test_session_stickiness_can_be_disabled(policy, minilm):
    sessions = TierSessions()
    off = session_policy(policy, enabled=False, remaining_turns=1)
    route_tier(agent_ctx(HARD, "s5"), off, sessions, minilm)
    assert route_tier(agent_ctx(EASY, "s5"), off, sessions, minilm)["tier"] == "fast"


def test_break_even_arithmetic(policy):
    settings = policy.tier_session  # fast 1/5, strong 3/15 per million; read 0.1, write 1.25; 400 output tokens
    names = ["fast", "strong"]
    few = step_down_estimate(settings.model_copy(update={"remaining_turns": 2}), names, "strong", "fast", 100_000)
    # stay: 2 * (100k * 3 * 0.1 + 400 * 15) = 72,000; switch: 100k * 1.25 + 1 * 100k * 0.1 + 2 * 400 * 5 = 139,000
    assert few.cost_stay == pytest.approx(72_000)
    assert few.cost_switch == pytest.approx(139_000)
    assert not should_step_down(few, settings)

    many = step_down_estimate(settings.model_copy(update={"remaining_turns": 10}), names, "strong", "fast", 100_000)
    # stay: 10 * 36,000 = 360,000; switch: 125,000 + 9 * 10,000 + 10 * 2,000 = 235,000
    assert many.cost_stay == pytest.approx(360_000)
    assert many.cost_switch == pytest.approx(235_000)
    assert should_step_down(many, settings)
    assert not should_step_down(many, settings.model_copy(update={"min_saving": 0.5}))


def test_price_ratio_without_prices(policy):
    settings = policy.tier_session.model_copy(update={"prices": {}, "price_ratio": 4.0, "remaining_turns": 1})
    estimate = step_down_estimate(settings, ["fast", "strong"], "strong", "fast", 1000)
    # stay: 1000 * 4 * 0.1 + 400 * 20 = 8,400; switch: 1000 * 1 * 1.25 + 400 * 5 = 3,250
    assert estimate.cost_stay == pytest.approx(8_400)
    assert estimate.cost_switch == pytest.approx(3_250)


def test_alias_name_with_glob_characters_matches_exactly(policy):
    aliases = {"claude-sonnet-4-5[1m]": "fast", "*": "auto"}
    decision = route_tier(make_ctx(HARD, model="claude-sonnet-4-5[1m]"), policy.model_copy(update={"aliases": aliases}), TierSessions(), None)
    assert (decision["tier"], decision["decided_by"]) == ("fast", "alias")


def test_return_risk_counts_the_way_back(policy):
    settings = policy.tier_session.model_copy(update={"remaining_turns": 10})
    names = ["fast", "strong"]
    plain = step_down_estimate(settings, names, "strong", "fast", 100_000)
    risky = step_down_estimate(settings, names, "strong", "fast", 100_000, 1.0)
    # The way back writes 100k tokens on strong again: 100k * 3 * 1.25 = 375,000.
    assert risky.cost_switch - plain.cost_switch == pytest.approx(375_000)
    assert should_step_down(plain, settings)
    assert not should_step_down(risky, settings)


def test_escalated_session_prices_the_way_back(policy, minilm):
    sessions = TierSessions()
    assert route_tier(agent_ctx(EASY, "fresh"), policy, sessions, minilm)["tier"] == "fast"
    assert route_tier(agent_ctx(HARD, "esc"), policy, sessions, minilm)["tier"] == "strong"
    assert route_tier(agent_ctx(HARD, "calm"), policy, sessions, minilm)["tier"] == "strong"
    # "esc" started on fast and escalated; "calm" started on strong.
    route_tier(agent_ctx(EASY, "esc2"), policy, sessions, minilm)
    route_tier(agent_ctx(HARD, "esc2"), policy, sessions, minilm)
    after_escalation = route_tier(agent_ctx(EASY, "esc2"), policy, sessions, minilm)
    without_escalation = route_tier(agent_ctx(EASY, "calm"), policy, sessions, minilm)
    assert after_escalation["session"]["return_risk"] == 1.0
    assert without_escalation["session"]["return_risk"] == policy.tier_session.return_risk
