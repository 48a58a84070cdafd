"""State that outlives a request: session memories, the semantic cache, the embedder, upstream
clients. Stages stay functions of (request, policy); the runtime hands them the state they need."""

from __future__ import annotations

import logging
from typing import Any

from engine.pipeline.context import RequestContext
from engine.policy.models import Policy
from engine.providers.dispatch import Upstreams

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self) -> None:
        self.upstreams = Upstreams()

    def select_tools(self, ctx: RequestContext, policy: Policy) -> dict[str, Any] | None:
        # TODO: wire the tool-selection stage.
        return None

    def compress(self, ctx: RequestContext, policy: Policy) -> list[dict[str, Any]]:
        # TODO: wire the compression stage.
        return []

    async def cache_lookup(self, ctx: RequestContext, policy: Policy, *, dry_run: bool) -> tuple[dict | None, dict | None]:
        # TODO: wire the semantic cache.
        return None, None

    async def cache_store(self, ctx: RequestContext, policy: Policy, message: dict[str, Any]) -> None:
        return None

    def route_tier(self, ctx: RequestContext, policy: Policy) -> dict[str, Any]:
        # TODO: wire the tier router; until then aliases decide and `auto` takes the strongest tier.
        from engine.pipeline.run import alias_target

        target = alias_target(policy, ctx.requested_model)
        tier = policy.tiers[-1] if target == "auto" else policy.tier(target)
        return {"tier": tier.name, "provider": tier.provider, "model": tier.model,
                "decided_by": "alias" if target != "auto" else "default"}

    def apply_prompt_caching(self, ctx: RequestContext, policy: Policy, tier: dict[str, Any]) -> dict[str, Any] | None:
        # TODO: wire the prompt-caching stage.
        return None

    async def aclose(self) -> None:
        await self.upstreams.aclose()
