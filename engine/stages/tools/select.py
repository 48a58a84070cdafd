"""The tool-selection stage: forward only the tools that the request's class needs.

Rules that no policy can switch off, because a missing tool sends agents into loops that make no
progress and a changing tool list breaks provider prompt caching:

- a tool named by `tool_choice` is kept;
- a tool called anywhere earlier in the conversation (a `tool_use` block) is kept;
- a tool in no tool group, or an entry without a name, is kept;
- a tool of a conditional group (`needed_when`) is forwarded exactly when the request needs the group
  (one of its triggers holds, or the class names the group), whatever the class keeps otherwise; the
  three rules above still apply first;
- within one agent session the kept set only grows (union with the session's earlier kept set), and
  when a request needs a tool outside that set, the session widens at once to every offered tool
  that is not held back by a conditional group;
- kept tools keep their order and are the same dict objects, so their bytes do not change;
- when no tool remains, `tools` and `tool_choice` are both removed from the body.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable

import orjson

from engine.pipeline.context import RequestContext
from engine.policy.models import Policy
from engine.stages.tools.classify import ConversationFacts, classify, conversation_facts
from engine.stages.tools.groups import conditional_groups
from engine.stages.tools.sessions import ToolSessions
from engine.stages.tools.triggers import needed_groups
from engine.tokens import count_text

logger = logging.getLogger(__name__)

# The class of a request that no rule matched; such a request keeps every tool.
UNMATCHED_CLASS = "default"


def tool_name(tool: Any) -> str | None:
    """Return a tool definition's name, or None for an entry without a string name."""
    if isinstance(tool, dict):
        name = tool.get("name")
        if isinstance(name, str) and name:
            return name
    return None


def _label(tool: Any) -> str:
    # Decision records list tools by name; an unnamed entry is shown by its type (e.g. `local_shell`).
    name = tool_name(tool)
    if name is not None:
        return name
    if isinstance(tool, dict) and isinstance(tool.get("type"), str):
        return f"<{tool['type']}>"
    return "<malformed>"


def forced_tool_name(tool_choice: Any) -> str | None:
    """Return the tool that `tool_choice` forces (`{"type": "tool", "name": ...}`), if any."""
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "tool":
        name = tool_choice.get("name")
        if isinstance(name, str) and name:
            return name
    return None


# Class lists already checked by `_bind_rules`, by id, with the list itself so the id stays unique.
_bound_class_lists: dict[int, list] = {}


def _bind_rules(policy: Policy) -> None:
    # Rules validated as part of a whole policy are bound at load; this covers rules built otherwise.
    # The check runs once per policy, because reading a rule's private state is slow in pydantic.
    classes = policy.classes
    if _bound_class_lists.get(id(classes)) is classes:
        return
    for rule in classes:
        if not rule.is_bound:
            rule.bind_groups(policy.tool_groups)
    if len(_bound_class_lists) > 256:
        _bound_class_lists.clear()
    _bound_class_lists[id(classes)] = classes


def _configure_sessions(sessions: ToolSessions, policy: Policy) -> None:
    # NOTE: the memory is shared by all teams. If a team file sets other `sessions` bounds, the bounds
    # follow the policy of the latest request, and a smaller max_sessions evicts other teams' sessions.
    bounds = policy.sessions
    if sessions.max_sessions != bounds.max_sessions or sessions.idle_ttl != bounds.idle_ttl:
        sessions.configure(bounds.max_sessions, bounds.idle_ttl)


def select_tools(ctx: RequestContext, policy: Policy, sessions: ToolSessions) -> dict:
    """Classify the request, replace `ctx.body["tools"]` with the kept tools, and return the decision.

    Sets `ctx.scratch["class"]` (the class name) and `ctx.scratch["last_user_text"]` (the last user
    text without system reminders, which later stages reuse).

    Decision keys:
    - `class`: the class name.
    - `rule`: the index of the matching rule in `classes`, or None when no rule matched.
    - `kept`, `removed`: tool names.
    - `tokens_before`, `tokens_after`: estimated tokens of the tool definitions.
    - `session`: None without a session id. Otherwise `first` when the session kept no tools before,
      `unchanged` when the class needed no tool beyond the session's kept set, and `widened` when it
      did, so that every offered tool that is not held back is kept from then on.
    - `needed_groups`: conditional groups this request needs, each with the reason (`needed_when[N]`,
      the first trigger that holds, or `class`).
    - `held_back`: tools removed because their conditional group is not needed (also in `removed`).
    """
    _bind_rules(policy)
    _configure_sessions(sessions, policy)

    facts = conversation_facts(ctx.body, ctx.headers, ctx.requested_model)
    match = classify(policy.classes, facts)
    class_name = match[1].name if match else UNMATCHED_CLASS
    ctx.scratch["class"] = class_name
    ctx.scratch["last_user_text"] = facts.last_user_text

    decision: dict[str, Any] = {
        "class": class_name,
        "rule": match[0] if match else None,
        "kept": [],
        "removed": [],
        "tokens_before": 0,
        "tokens_after": 0,
        "session": None,
        "needed_groups": {},
        "held_back": [],
    }
    tools = ctx.body.get("tools")
    if tools is None:
        return decision
    if not isinstance(tools, list):
        # Validation upstream should have rejected this; leave the value for the provider to judge.
        logger.warning("request %s: `tools` is a %s, not a list; left unchanged", ctx.request_id, type(tools).__name__)
        return decision

    session_key = (ctx.team, ctx.session_id) if ctx.session_id else None
    previous = sessions.get(session_key) if session_key is not None else frozenset()
    protected = _protected_names(ctx.body, facts) | previous
    # The first request of a session whose client names it (Claude Code, Codex) starts a long agent
    # loop over a cached prefix, so the class's broader `session_keep` applies there.
    session_start = session_key is not None and not previous and ctx.scratch.get("session_source") == "header"
    if session_start:
        decision["session_start"] = True

    named_by_class = match[1].named_groups(session_start) if match else []
    candidates = {name for name in map(tool_name, tools) if name is not None and name not in protected}
    conditional, decision["needed_groups"] = _conditional_test(policy, ctx.body, facts, named_by_class, candidates)
    kept = []
    removed = []
    held_names: set[str] = set()
    for tool in tools:
        name = tool_name(tool)
        needed = conditional(name) if conditional is not None and name is not None else None
        if name is None or name in protected or needed is True:
            kept.append(tool)
        elif needed is False:
            removed.append(tool)
            held_names.add(name)
        elif match is None or match[1].keeps(name, session_start):
            kept.append(tool)
        else:
            removed.append(tool)

    if session_key is not None:
        kept_names = {name for name in map(tool_name, kept) if name is not None}
        if previous and not kept_names <= previous:
            # Tools come first in the cached prefix, so any change to the list makes the provider write the
            # whole prefix again, at about the same cost however many tools are added. Widening once to
            # every offered tool limits selection to one such rewrite per session. Held-back tools stay
            # out: each conditional group costs its own rewrite when its trigger shows up, if it ever does.
            kept = [tool for tool in tools if tool_name(tool) not in held_names]
            removed = [tool for tool in tools if tool_name(tool) in held_names]
            kept_names = {name for name in map(tool_name, kept) if name is not None}
            decision["session"] = "widened"
        else:
            decision["session"] = "unchanged" if previous else "first"
        sessions.add(session_key, kept_names)

    if kept:
        ctx.body["tools"] = kept
    else:
        del ctx.body["tools"]
        ctx.body.pop("tool_choice", None)

    decision["kept"] = [_label(tool) for tool in kept]
    decision["removed"] = [_label(tool) for tool in removed]
    decision["held_back"] = [name for name in map(tool_name, removed) if name in held_names]
    decision["tokens_before"] = _count_tools(tools)
    decision["tokens_after"] = _count_tools(kept) if removed else decision["tokens_before"]
    return decision


def _conditional_test(policy: Policy, body: dict, facts: ConversationFacts, named_by_class: list[str],
                      candidates: set[str]) -> tuple[Callable[[str], bool | None] | None, dict[str, str]]:
    """Return a test of tool names against the conditional groups, and the needed groups with reasons.

    The test returns True for a tool of a needed group, False for a tool that is held back, and None
    for a tool in no conditional group. Only groups with a tool in `candidates` (offered and not
    protected) are evaluated, because their triggers search the whole conversation. The test is None
    when no such group exists.
    """
    groups = [group for group in conditional_groups(policy.tool_groups)
              if any(group.matcher.matches(name) for name in candidates)]
    if not groups:
        return None, {}
    needed = needed_groups(groups, body, facts, named_by_class)
    needed_matchers = [group.matcher for group in groups if group.name in needed]
    held_matchers = [group.matcher for group in groups if group.name not in needed]

    def state(name: str) -> bool | None:
        # A tool in both a needed and a held group counts as needed.
        if any(matcher.matches(name) for matcher in needed_matchers):
            return True
        if any(matcher.matches(name) for matcher in held_matchers):
            return False
        return None

    return state, needed


@functools.lru_cache(maxsize=4096)
def _count_serialized(data: bytes) -> int:
    return count_text(data.decode())


def _count_tools(tools: list) -> int:
    """Count tool-definition tokens as `engine.tokens.count_tools` does, memoised per definition.

    Agents send the same definitions on every request, and tokenising a 48 KB tool array costs
    milliseconds, while serialising it to look up the memo costs microseconds.
    """
    total = 0
    for tool in tools:
        if isinstance(tool, str):
            total += count_text(tool)
            continue
        try:
            data = orjson.dumps(tool)
        except TypeError:
            # Not JSON data (only possible for bodies built in code); count its text form.
            total += count_text(repr(tool))
            continue
        total += _count_serialized(data)
    return total


def _protected_names(body: dict, facts: ConversationFacts) -> set[str]:
    names = set(facts.called_tools)
    forced = forced_tool_name(body.get("tool_choice"))
    if forced is not None:
        names.add(forced)
    return names
