"""Tier routing: requested-model aliases, the logistic tier model, tier rules, session stickiness.

`route_tier` returns the decision that the pipeline stores under `tier` in the decision record;
`leangate train-tier` later reads `tier.features` back from the decision log.
"""

from __future__ import annotations

import fnmatch
import logging
import math
from typing import Any

import numpy as np

from engine.embedding.base import Embedder
from engine.pipeline.context import RequestContext
from engine.policy.models import Policy
from engine.stages.tier.features import extract_features, last_user_text
from engine.stages.tier.policy import FEATURE_NAMES, TierModel, TierRule
from engine.stages.tier.sessions import TierSessions, should_step_down, step_down_estimate

logger = logging.getLogger(__name__)

# Values of the decision's `semantic` field: how feature 15 was obtained.
SEMANTIC_COMPUTED = "computed"
SEMANTIC_SHARED = "shared"  # the embedding the cache lookup had already computed
SEMANTIC_UNAVAILABLE = "unavailable"  # the training mean was used, so the feature adds nothing
SEMANTIC_SKIPPED = "skipped"  # no tier model, or the tier was fixed by an alias


def route_tier(ctx: RequestContext, policy: Policy, sessions: TierSessions, embedder: Embedder | None) -> dict[str, Any]:
    """Choose the tier, provider and model of a request, and return the decision for its record.

    Order: an alias of the requested model (unless `auto`), else the tier model's probability; then
    the tier rules; then the session's sticky tier. Alias and `force` rule decisions bypass the
    session, so that side requests (an agent's small title or summary calls) neither follow nor move it.
    """
    body = ctx.body
    features = extract_features(body, policy.markers)
    text = last_user_text([message for message in body.get("messages") or () if isinstance(message, dict)])
    tier_names = [tier.name for tier in policy.tiers]

    alias_pattern, alias_target = resolve_alias(policy.aliases, ctx.requested_model or str(body.get("model") or ""))
    use_model = alias_target in (None, "auto")
    model = policy.tier_model

    semantic_status = SEMANTIC_SKIPPED
    semantic_error = None
    if model is None:
        features["semantic_difficulty"] = 0.0
        probability = None
    else:
        if use_model:
            features["semantic_difficulty"], semantic_status, semantic_error = _semantic_difficulty(ctx, model, embedder, text)
        else:
            features["semantic_difficulty"] = model.semantic_fallback()
        probability = model.probability(np.fromiter((features[name] for name in FEATURE_NAMES), dtype=np.float64))

    decision: dict[str, Any] = {
        "features": {name: _round(features[name]) for name in FEATURE_NAMES},
        "probability": None if probability is None else round(probability, 4),
        "tier": None,
        "rule": None,
        "decided_by": "model",
        "provider": None,
        "model": None,
        "semantic": semantic_status,
    }
    if semantic_error:
        decision["semantic_error"] = semantic_error

    if not use_model:
        decision["tier"] = alias_target
        decision["decided_by"] = "alias"
        decision["alias"] = alias_pattern
        return _finish(decision, policy)

    tier = tier_for_probability(policy, probability)
    tier, rule_name, forced = apply_rules(ctx, policy, features, text, tier)
    if rule_name is not None:
        decision["rule"] = rule_name
        decision["decided_by"] = "rule"
    decision["tier"] = tier

    if not forced and ctx.session_id and policy.tier_session.enabled:
        _apply_session(ctx, policy, sessions, decision, tier_names, features["log_input_tokens"])
    return _finish(decision, policy)


def resolve_alias(aliases: dict[str, str], requested_model: str) -> tuple[str | None, str | None]:
    """Return (pattern, target) of the first alias, in mapping order, whose name or glob matches."""
    for pattern, target in aliases.items():
        # Equality first: a model name may contain glob characters such as `[1m]`.
        if pattern == requested_model or fnmatch.fnmatchcase(requested_model, pattern):
            return pattern, target
    return None, None


def tier_for_probability(policy: Policy, probability: float | None) -> str:
    """Return the first tier whose `below` bound is above the probability; the last tier takes the rest.

    Without a tier model (probability None) the strongest tier serves, because a wrong response from
    the cheap tier costs more than the saving.
    """
    if probability is not None:
        for tier in policy.tiers[:-1]:
            if tier.below is not None and probability < tier.below:
                return tier.name
    return policy.tiers[-1].name


def apply_rules(
    ctx: RequestContext, policy: Policy, features: dict[str, float], text: str, tier: str
) -> tuple[str, str | None, bool]:
    """Apply tier rules in order and return (tier, deciding rule name or None, forced).

    The first matching `force` rule ends the walk. Matching `floor` rules raise the tier to at least
    their tier; the rule that raised it last is the deciding one.
    """
    tier_names = [item.name for item in policy.tiers]
    deciding_rule = None
    for index, rule in enumerate(policy.tier_rules):
        if rule.target not in tier_names:
            logger.warning("tier rule %s names unknown tier %r; skipped", _rule_name(rule, index), rule.target)
            continue
        if not rule_matches(rule, ctx, features, text):
            continue
        if rule.force is not None:
            return rule.force, _rule_name(rule, index), True
        if tier_names.index(rule.target) > tier_names.index(tier):
            tier = rule.target
            deciding_rule = _rule_name(rule, index)
    return tier, deciding_rule, False


def rule_matches(rule: TierRule, ctx: RequestContext, features: dict[str, float], text: str) -> bool:
    condition = rule.when
    if condition.request_class is not None:
        classes = [condition.request_class] if isinstance(condition.request_class, str) else condition.request_class
        if ctx.scratch.get("class") not in classes:
            return False
    if condition.pattern is not None and not condition.pattern.search(text):
        return False
    if condition.thinking is not None and thinking_requested(ctx.body) != condition.thinking:
        return False
    for name, bound in condition.features.items():
        if not bound.holds(features[name]):
            return False
    return True


def thinking_requested(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _semantic_difficulty(
    ctx: RequestContext, model: TierModel, embedder: Embedder | None, text: str
) -> tuple[float, str, str | None]:
    """Return (feature 15, how it was obtained, why it is unavailable)."""
    if model.centroids is None:
        return model.semantic_fallback(), SEMANTIC_UNAVAILABLE, "the tier model has no centroids"
    if not text:
        return model.semantic_fallback(), SEMANTIC_UNAVAILABLE, "no user text"

    # The cache lookup stores its vector with the embedder's name; a vector from another embedder
    # would be compared with centroids it does not belong to.
    shared = ctx.scratch.get("embedding")
    shared_model = ctx.scratch.get("embedding_model")
    if shared is not None and shared_model in (None, model.embedder):
        try:
            return model.semantic_difficulty(np.asarray(shared)), SEMANTIC_SHARED, None
        except ValueError as error:
            logger.warning("request %s: shared embedding not usable for the tier model: %s", ctx.request_id, error)

    if embedder is None:
        return model.semantic_fallback(), SEMANTIC_UNAVAILABLE, "no embedder loaded"
    if embedder.name != model.embedder:
        return (
            model.semantic_fallback(),
            SEMANTIC_UNAVAILABLE,
            f"embedder {embedder.name!r} differs from the model's {model.embedder!r}; retrain the tier model",
        )
    try:
        embedding = embedder.embed([text])[0]
    except Exception as error:  # noqa: BLE001 -- any embedder failure must leave routing working
        logger.warning("request %s: embedding for the tier model failed: %s", ctx.request_id, error)
        return model.semantic_fallback(), SEMANTIC_UNAVAILABLE, f"embedding failed: {type(error).__name__}"
    ctx.scratch["embedding"] = embedding
    ctx.scratch["embedding_model"] = embedder.name
    return model.semantic_difficulty(embedding), SEMANTIC_COMPUTED, None


def _apply_session(
    ctx: RequestContext,
    policy: Policy,
    sessions: TierSessions,
    decision: dict[str, Any],
    tier_names: list[str],
    log_input_tokens: float,
) -> None:
    # NOTE: one TierSessions serves every team. A team file with other `sessions` bounds makes the
    # bounds follow the latest request's policy, and a smaller max_sessions evicts other teams' sessions.
    if sessions.max_sessions != policy.sessions.max_sessions or sessions.idle_ttl != policy.sessions.idle_ttl:
        sessions.configure(policy.sessions.max_sessions, policy.sessions.idle_ttl)

    proposed = decision["tier"]
    state = sessions.get(ctx.team, ctx.session_id)
    escalated = False
    if state is not None and state.tier in tier_names and state.tier != proposed:
        session: dict[str, Any] = {"previous": state.tier, "turns": state.turns}
        if tier_names.index(proposed) < tier_names.index(state.tier):
            # A session that escalated before is likely to do it again, and each move re-writes the
            # whole cached prefix, so it pays for the way back in full.
            risk = 1.0 if state.escalated else policy.tier_session.return_risk
            estimate = step_down_estimate(
                policy.tier_session, tier_names, state.tier, proposed, math.expm1(log_input_tokens), risk
            )
            session["step_down_saving"] = round(estimate.saving, 2)
            session["return_risk"] = risk
            if not should_step_down(estimate, policy.tier_session):
                decision["tier"] = state.tier
                decision["decided_by"] = "session"
                session["kept"] = True
        else:
            escalated = True
        decision["session"] = session
    sessions.record(ctx.team, ctx.session_id, decision["tier"], escalated=escalated)


def _finish(decision: dict[str, Any], policy: Policy) -> dict[str, Any]:
    tier = policy.tier(decision["tier"])
    decision["provider"] = tier.provider
    decision["model"] = tier.model
    return decision


def _rule_name(rule: TierRule, index: int) -> str:
    return rule.name or f"tier_rules[{index}]"


def _round(value: float) -> float:
    return float(f"{value:.6g}")
