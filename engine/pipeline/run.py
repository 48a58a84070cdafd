"""Run the pipeline stages on one request, in the order of the request path.

The same function serves live requests and `leangate explain` (with `dry_run=True`, which never
stores anything in the cache and never calls an upstream).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from engine import tokens
from engine.pipeline.context import RequestContext
from engine.pipeline.runtime import Runtime
from engine.policy.models import Policy
from engine.providers.dispatch import Target


# Stages cost time in proportion to the request (a 1 MB JSON tool result takes compression about
# half a second the first time it is seen). Above this size their synchronous work runs in a worker
# thread so that one large request does not stall every other request on the event loop.
LARGE_BODY_BYTES = 256 * 1024


@dataclass
class PipelineOutcome:
    targets: list[Target] = field(default_factory=list)  # the chosen target first, then its fallbacks
    cache_hit: dict[str, Any] | None = None  # a canonical Message served from the semantic cache
    pipeline_ms: float = 0.0


def clamp_max_tokens(body: dict[str, Any], policy: Policy, model: str) -> dict[str, Any] | None:
    """Lower max_tokens to the model's declared output limit; return what changed, or None."""
    limits = policy.model_limits(model)
    requested = body.get("max_tokens")
    if limits is None or limits.max_output_tokens is None or not isinstance(requested, int):
        return None
    if requested <= limits.max_output_tokens:
        return None
    body["max_tokens"] = limits.max_output_tokens
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and isinstance(thinking.get("budget_tokens"), int):
        # The API requires budget_tokens < max_tokens.
        if thinking["budget_tokens"] >= limits.max_output_tokens:
            body["thinking"] = {**thinking, "budget_tokens": max(1024, limits.max_output_tokens // 2)}
    return {"requested": requested, "sent": limits.max_output_tokens}


def targets_for(policy: Policy, tier_name: str) -> list[Target]:
    tier = policy.tier(tier_name)
    return [Target(tier.provider, tier.model), *(Target(f.provider, f.model) for f in tier.fallbacks)]


async def run_pipeline(ctx: RequestContext, policy: Policy, runtime: Runtime, *, dry_run: bool = False) -> PipelineOutcome:
    started = time.perf_counter()
    outcome = PipelineOutcome()
    large = ctx.scratch.get("body_bytes", 0) > LARGE_BODY_BYTES

    def first_stages() -> int:
        before = tokens.count_request(ctx.body)
        ctx.record["tools"] = runtime.select_tools(ctx, policy)
        ctx.record["compression"] = runtime.compress(ctx, policy)
        return before

    before = await asyncio.to_thread(first_stages) if large else first_stages()

    hit, cache_decision = await runtime.cache_lookup(ctx, policy, dry_run=dry_run)
    if cache_decision is not None:
        ctx.record["cache"] = cache_decision
    if hit is not None:
        outcome.cache_hit = hit
        ctx.record["tokens"] = {"before": before, "after": 0}
        ctx.record["tier"] = {"tier": None, "provider": None, "model": None, "decided_by": "cache"}
        outcome.pipeline_ms = ctx.record["pipeline_ms"] = round((time.perf_counter() - started) * 1000, 3)
        return outcome

    tier = runtime.route_tier(ctx, policy)
    ctx.record["tier"] = tier
    outcome.targets = targets_for(policy, tier["tier"])

    clamp = clamp_max_tokens(ctx.body, policy, tier["model"])
    if clamp is not None:
        ctx.record["max_tokens_clamped"] = clamp

    prompt_cache = runtime.apply_prompt_caching(ctx, policy, tier)
    if prompt_cache is not None:
        ctx.record["prompt_cache"] = prompt_cache

    ctx.record["tokens"] = {"before": before, "after": tokens.count_request(ctx.body)}
    outcome.pipeline_ms = ctx.record["pipeline_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return outcome
