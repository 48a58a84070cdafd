"""The compression stage: re-encode tool results that the policy's JSONPath targets select.

A target's path may select tool_result blocks, text blocks, or the string `content` of a tool_result
or `text` of a text block. Everything else it selects is ignored, and so is anything inside a
tool_use, server_tool_use, thinking, redacted_thinking, image, document or search_result block.
The first target that makes a decision about a block (changed or rejected) handles it; later
targets skip it. Blocks that no target changes stay the same objects.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from typing import Any

from engine.pipeline.context import RequestContext
from engine.policy.models import Policy
from engine.stages.compress import line_numbers
from engine.stages.compress.locate import Slot, find_nodes, slots_for
from engine.stages.compress.policy import CompressionTarget, TargetPlan
from engine.stages.compress.transform import Outcome, compress_text
from engine.tokens import count_text

log = logging.getLogger(__name__)

_TOOL_CALL_TYPES = ("tool_use", "server_tool_use", "mcp_tool_use")
_JSON_START = re.compile(r"\s*[\[{]")


class ResultCache:
    """Outcomes by (target, text), so a tool result re-sent on every later turn is compressed once.

    Bounded by the total characters of the texts it keeps; the least recently used entries go first.
    """

    def __init__(self, max_chars: int = 32_000_000):
        self.max_chars = max_chars
        self._entries: OrderedDict[tuple[str, str], Outcome | None] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> tuple[bool, Outcome | None]:
        with self._lock:
            if key not in self._entries:
                return False, None
            self._entries.move_to_end(key)
            return True, self._entries[key]

    def put(self, key: tuple[str, str], outcome: Outcome | None) -> None:
        size = len(key[1]) + (len(outcome.text) if outcome is not None and outcome.text else 0)
        if size > self.max_chars:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = outcome
            self._chars += size
            while self._chars > self.max_chars:
                old_key, old = self._entries.popitem(last=False)
                self._chars -= len(old_key[1]) + (len(old.text) if old is not None and old.text else 0)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._chars = 0


RESULT_CACHE = ResultCache()


def compress(ctx: RequestContext, policy: Policy) -> list[dict]:
    """Apply the policy's compression targets to `ctx.body`, in place, and return the decisions.

    One decision per block that a target changed or tried and rejected, with the keys target,
    action, tokens_before, tokens_after, lossless, verified (None when nothing could be decoded to
    check, e.g. lossy text actions or render), applied, and rejected (reasons, when there are any).
    """
    targets = policy.compression
    if not targets:
        return []
    body = ctx.body
    decisions: list[dict] = []
    handled: set[int] = set()
    slots_by_path: dict[str, list[Slot]] = {}
    tool_names: dict[str, str] | None = None

    for target in targets:
        plan = target.plan
        slots = slots_by_path.get(plan.path)
        if slots is None:
            slots = _find_slots(plan, body, ctx.request_id)
            slots_by_path[plan.path] = slots
        if not slots:
            continue
        if plan.tool_pattern is not None and tool_names is None:
            tool_names = _tool_names_by_id(body)

        for slot in slots:
            if id(slot.holder) in handled:
                continue
            if plan.tool_pattern is not None and not plan.matches_tool(_tool_name(slot, tool_names)):
                continue
            outcome = _compress_slot(slot, target, plan)
            if outcome is None:
                continue
            handled.add(id(slot.holder))
            decisions.append(_copy_decision(outcome.decision))
            if outcome.text is not None:
                # A later target with another path would find the copy, so it counts as handled too.
                handled.add(id(_replace(slot, outcome.text)))
    return decisions


def _copy_decision(decision: dict[str, Any]) -> dict[str, Any]:
    """Copy a cached decision, so that callers may change theirs without changing the cache."""
    copied = dict(decision)
    if "rejected" in copied:
        copied["rejected"] = [dict(reason) for reason in copied["rejected"]]
    return copied


def _find_slots(plan: TargetPlan, body: dict[str, Any], request_id: str) -> list[Slot]:
    try:
        nodes = find_nodes(plan.compiled_path, plan.fast_steps, body)
    # jsonpath-ng evaluates filters at request time, so a filter such as `@.name =~ '('` (an
    # invalid regular expression) passes the load-time parse and fails here.
    except (re.error, TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError) as error:
        _log_evaluation_error(plan, request_id, error)
        return []
    return [slot for node in nodes for slot in slots_for(node)]


_evaluation_errors: dict[str, int] = {}


def _log_evaluation_error(plan: TargetPlan, request_id: str, error: Exception) -> None:
    """Log the first failure of a target's path, then every 1000th, with the running count."""
    count = _evaluation_errors.get(plan.fingerprint, 0) + 1
    _evaluation_errors[plan.fingerprint] = count
    if count == 1 or count % 1000 == 0:
        log.error(
            "compression target %s skipped: evaluating path %r failed: %s: %s (request %s, %d failures so far)",
            plan.name, plan.path, type(error).__name__, error, request_id, count,
        )


def _tool_name(slot: Slot, tool_names: dict[str, str] | None) -> str | None:
    if slot.tool_result is None or not tool_names:
        return None
    tool_use_id = slot.tool_result.get("tool_use_id")
    return tool_names.get(tool_use_id) if isinstance(tool_use_id, str) else None


def _compress_slot(slot: Slot, target: CompressionTarget, plan: TargetPlan) -> Outcome | None:
    text = slot.holder.get(slot.key)
    if not isinstance(text, str) or not text:
        return None
    is_json_candidate = _JSON_START.match(text) is not None
    if not is_json_candidate and not plan.has_text_actions:
        return None
    if not is_json_candidate and plan.needs_gutter and not line_numbers.may_start_listing(text):
        return None
    # cl100k tokens are at least one byte of UTF-8 each, so the byte length bounds the count.
    upper_bound = len(text) if text.isascii() else len(text.encode("utf-8"))
    if upper_bound < plan.min_tokens:
        return None

    key = (plan.fingerprint, text)
    found, outcome = RESULT_CACHE.get(key)
    if found:
        return outcome
    tokens_before = count_text(text)
    if tokens_before < plan.min_tokens:
        outcome = None
    else:
        outcome = compress_text(text, target, tokens_before, is_json_candidate)
    RESULT_CACHE.put(key, outcome)
    return outcome


def _replace(slot: Slot, text: str) -> dict[str, Any]:
    """Put a copy of the holder, with the new text, where the holder was; return the copy."""
    replacement = dict(slot.holder)
    replacement[slot.key] = text
    slot.parent[slot.index] = replacement
    return replacement


def _tool_names_by_id(body: dict[str, Any]) -> dict[str, str]:
    names: dict[str, str] = {}
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for block in content:
            if isinstance(block, dict) and block.get("type") in _TOOL_CALL_TYPES:
                block_id, name = block.get("id"), block.get("name")
                if isinstance(block_id, str) and isinstance(name, str):
                    names[block_id] = name
    return names
