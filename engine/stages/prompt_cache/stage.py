"""The prompt-caching stage: keep, add or strip Anthropic `cache_control` breakpoints.

Anthropic bills a cached prefix at a tenth of the input price, but only up to a block that carries
`cache_control`. Claude Code marks its requests. The OpenAI-format agents (Cursor, Aider, Cline,
Codex) mark nothing, so their traffic translated to an Anthropic upstream would be billed in full on
every turn. In `inject` mode this stage places the breakpoints that an agent would: on the last
tool, on the last system block, and on the last block of the latest turn (and of the previous user
turn), so each turn reads the prefix the turn before wrote.

OpenAI, Azure OpenAI and OpenAI-compatible providers cache prefixes automatically and Ollama not at
all. None of them takes `cache_control`, and their translators drop it. For them the stage changes
nothing and its decision lists the client's breakpoints under `removed`.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.pipeline.context import RequestContext
from engine.policy.models import Policy
from engine.stages.prompt_cache.breakpoints import (
    MAX_BREAKPOINTS,
    TOP_LEVEL,
    PrefixBlock,
    cache_control,
    control_ttl,
    has_breakpoint,
    is_markable,
    last_markable,
    normalise_message_strings,
    set_control,
    walk_prefix,
)
from engine.stages.prompt_cache.policy import CachingSettings

log = logging.getLogger(__name__)

_NOT_SENT_REASON = {
    "openai": "OpenAI caches prompt prefixes automatically; the translator does not send cache_control",
    "azure-openai": "Azure OpenAI caches prompt prefixes automatically; the translator does not send cache_control",
    "openai-compatible": "OpenAI-compatible providers cache prefixes automatically or not at all; "
    "the translator does not send cache_control",
    "ollama": "Ollama has no prompt-caching markers; the translator does not send cache_control",
}


def apply_prompt_caching(ctx: RequestContext, policy: Policy, tier: dict) -> dict:
    """Apply the policy's prompt-caching mode to `ctx.body` in place and return the decision.

    `tier` is the tier decision (`tier`, `provider`, `model`). The decision has `mode`, `ttl`,
    `carried` (the client's breakpoints that are sent), `added`, `removed` (locations such as
    `tools[15]`, `system[1]`, `messages[7].content[2]`, or `cache_control` for the top-level
    field) and `cached_prefix_tokens`, the estimated tokens up to the last breakpoint sent.

    NOTE: the decision follows the chosen target only. A fallback to another provider kind gets the
    same body: breakpoints added for an Anthropic target are dropped by an OpenAI translator, and an
    Anthropic fallback behind an OpenAI target gets only the client's own breakpoints.
    """
    provider_name = str(tier.get("provider"))
    model = str(tier.get("model"))
    provider = policy.providers.get(provider_name)
    settings = policy.prompt_caching.resolve(provider_name, tier.get("tier"), ctx.protocol, model)
    body = ctx.body
    blocks = walk_prefix(body)
    client_locations = [block.location for block in blocks if has_breakpoint(block.block)]
    if body.get(TOP_LEVEL) is not None:
        client_locations.append(TOP_LEVEL)

    decision: dict[str, Any] = {
        "mode": settings.mode,
        "provider_kind": provider.kind if provider is not None else None,
        "ttl": settings.ttl,
        "min_tokens": settings.min_tokens,
        "carried": [],
        "added": [],
        "removed": [],
        "cached_prefix_tokens": 0,
    }

    if provider is None:
        # Unreachable with a validated policy: tiers must name a declared provider.
        decision["reason"] = f"unknown provider {provider_name!r}; the request is left unchanged"
        log.warning("prompt caching skipped for request %s: unknown provider %r", ctx.request_id, provider_name)
        return decision

    if provider.kind != "anthropic":
        decision["removed"] = client_locations
        decision["reason"] = _NOT_SENT_REASON.get(provider.kind, "the provider does not take cache_control")
        return decision

    if settings.mode == "off":
        _strip(body)
        decision["removed"] = client_locations
        return decision

    decision["carried"] = client_locations
    if settings.mode == "inject":
        decision["added"] = _inject(body, settings)
        blocks = walk_prefix(body)  # the injection may have changed the body
        beta = policy.prompt_caching.extended_ttl_beta
        if beta and decision["added"] and _has_1h_breakpoint(body) and _add_beta(ctx.headers, beta):
            decision["anthropic_beta_added"] = beta
    elif len(client_locations) > MAX_BREAKPOINTS:
        decision["warning"] = (
            f"the client sent {len(client_locations)} cache_control breakpoints; Anthropic accepts at most {MAX_BREAKPOINTS}"
        )

    decision["cached_prefix_tokens"] = cached_prefix_tokens(body, blocks)
    return decision


def cached_prefix_tokens(body: dict[str, Any], blocks: list[PrefixBlock] | None = None) -> int:
    """Return the estimated tokens from the start of the prompt through its last breakpoint.

    `blocks` is `walk_prefix(body)` when the caller has it already; the walk counts every block."""
    if blocks is None:
        blocks = walk_prefix(body)
    if not blocks:
        return 0
    if body.get(TOP_LEVEL) is not None:
        # A top-level cache_control marks the last block of the request.
        return blocks[-1].tokens_end
    marked = [block.tokens_end for block in blocks if has_breakpoint(block.block)]
    return marked[-1] if marked else 0


def _has_1h_breakpoint(body: dict[str, Any]) -> bool:
    return any(has_breakpoint(block.block) and control_ttl(block.block["cache_control"]) == "1h" for block in walk_prefix(body))


def _add_beta(headers: dict[str, str], beta: str) -> bool:
    """Add `beta` to the request's `anthropic-beta` header, which the Anthropic adapter forwards;
    return whether it was missing."""
    present = [value.strip() for value in headers.get("anthropic-beta", "").split(",") if value.strip()]
    if beta in present:
        return False
    headers["anthropic-beta"] = ",".join([*present, beta])
    return True


def _strip(body: dict[str, Any]) -> None:
    body.pop(TOP_LEVEL, None)
    for block in walk_prefix(body):
        if has_breakpoint(block.block) or (isinstance(block.block, dict) and TOP_LEVEL in block.block):
            set_control(body, block, None)


def _inject(body: dict[str, Any], settings: CachingSettings) -> list[str]:
    """Add breakpoints after the client's last one, within the limit of 4; return their locations.

    The client's breakpoints already cover the prefix up to the last of them, so only later places
    are candidates, in order of value: the latest turn, the system prompt, the previous user turn,
    the tool list. A candidate whose prefix is shorter than the model's minimum is skipped.
    """
    if body.get(TOP_LEVEL) is not None:
        # Automatic caching: the API itself marks the last block and moves it forward each turn.
        return []
    normalise_message_strings(body)
    blocks = walk_prefix(body)
    client = [position for position, block in enumerate(blocks) if has_breakpoint(block.block)]
    budget = MAX_BREAKPOINTS - len(client)
    if budget <= 0:
        return []
    start = client[-1] + 1 if client else 0

    ttl = settings.ttl
    if ttl == "1h" and any(control_ttl(blocks[position].block.get("cache_control")) == "5m" for position in client):
        # The API rejects a 1h breakpoint after a 5m one.
        ttl = "5m"

    position_of = {block.location: position for position, block in enumerate(blocks)}
    chosen: list[int] = []
    for candidate in _candidates(body, blocks, settings.previous_turn):
        if len(chosen) == budget:
            break
        if candidate is None:
            continue
        position = position_of[candidate.location]
        if position in chosen or position < start or candidate.tokens_end < settings.min_tokens:
            continue
        chosen.append(position)

    control = cache_control(ttl)
    for position in chosen:
        set_control(body, blocks[position], control)
    # A plain-string system prompt is now a list of one block, so it is reported as `system[0]`.
    return [_location_after_marking(blocks[position]) for position in sorted(chosen)]


def _location_after_marking(block: PrefixBlock) -> str:
    return block.location + "[0]" if block.block_index is None else block.location


def _candidates(body: dict[str, Any], blocks: list[PrefixBlock], previous_turn: bool) -> list[PrefixBlock | None]:
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    last_index = len(messages) - 1

    latest = last_markable(blocks, last_index) if last_index >= 0 else None
    previous = None
    if previous_turn:
        for index in range(last_index - 1, -1, -1):
            message = messages[index]
            if isinstance(message, dict) and message.get("role") == "user":
                previous = last_markable(blocks, index)
                break

    system_blocks = [block for block in blocks if block.section == "system"]
    system = system_blocks[-1] if system_blocks and is_markable(system_blocks[-1].block) else None
    tool_blocks = [block for block in blocks if block.section == "tools"]
    tool = tool_blocks[-1] if tool_blocks and isinstance(tool_blocks[-1].block, dict) else None
    return [latest, system, previous, tool]
