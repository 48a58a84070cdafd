"""Request classification: conversation facts from the canonical body, and the first matching rule."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

from engine.stages.tools.policy import ClassRule

# Claude Code adds these blocks to user messages and tool results itself. Its system prompt (1.0.123)
# states that they bear no direct relation to the message around them. They are not what the user
# asked, so they are removed before any rule looks at the text.
_SYSTEM_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.DOTALL)

# Headers that name the client: Claude Code sends `user-agent: claude-cli/...` and `x-app: cli`,
# Codex sends `originator: codex_cli_rs`.
CLIENT_HEADERS = ("user-agent", "x-app", "originator")


def strip_system_reminders(text: str) -> str:
    return _SYSTEM_REMINDER.sub("", text).strip()


def system_reminders(text: str) -> list[str]:
    """Return the `<system-reminder>` blocks in `text`, tags included."""
    return _SYSTEM_REMINDER.findall(text)


@dataclass(slots=True)
class ConversationFacts:
    """Facts about the conversation that class conditions test, computed once per request."""

    last_user_text: str = ""
    message_count: int = 0
    has_tool_results: bool = False
    last_tool: str | None = None
    # Names of every tool called in the conversation (tool_use blocks), in order of first call.
    called_tools: list[str] = field(default_factory=list)
    client_values: tuple[str, ...] = ()
    model: str = ""


def content_blocks(content: Any) -> Iterator[dict]:
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict):
                yield block


def user_text_of(message: dict) -> str:
    """Join the text of one user message, tool results excluded, system reminders removed."""
    content = message.get("content")
    if isinstance(content, str):
        return strip_system_reminders(content)
    parts = []
    for block in content_blocks(content):
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            cleaned = strip_system_reminders(block["text"])
            if cleaned:
                parts.append(cleaned)
    return "\n".join(parts)


def last_user_text(messages: Sequence[Any]) -> str:
    """Return the text of the latest user message that has any, after removing system reminders.

    In an agent loop the last user message holds only tool results, so the search goes back to the
    instruction that started the loop.
    """
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            text = user_text_of(message)
            if text:
                return text
    return ""


def conversation_facts(body: dict, headers: dict[str, str], requested_model: str = "") -> ConversationFacts:
    raw_messages = body.get("messages")
    messages = raw_messages if isinstance(raw_messages, list) else []

    called: dict[str, None] = {}
    last_tool = None
    has_tool_results = False
    for message in messages:
        if not isinstance(message, dict):
            continue
        for block in content_blocks(message.get("content")):
            kind = block.get("type")
            if kind == "tool_use" or kind == "server_tool_use":
                name = block.get("name")
                if isinstance(name, str) and name:
                    called.setdefault(name, None)
                    last_tool = name
            elif kind == "tool_result":
                has_tool_results = True

    model = requested_model or (body.get("model") if isinstance(body.get("model"), str) else "") or ""
    return ConversationFacts(
        last_user_text=last_user_text(messages),
        message_count=len(messages),
        has_tool_results=has_tool_results,
        last_tool=last_tool,
        called_tools=list(called),
        client_values=tuple(headers[name] for name in CLIENT_HEADERS if headers.get(name)),
        model=model,
    )


def rule_matches(rule: ClassRule, facts: ConversationFacts) -> bool:
    when = rule.when.compiled
    if when.tool_results is not None and when.tool_results != facts.has_tool_results:
        return False
    if when.min_messages is not None and facts.message_count < when.min_messages:
        return False
    if when.max_messages is not None and facts.message_count > when.max_messages:
        return False
    if when.last_user_text is not None and when.last_user_text.search(facts.last_user_text) is None:
        return False
    if when.not_last_user_text is not None and when.not_last_user_text.search(facts.last_user_text):
        return False
    if when.last_tool is not None and (facts.last_tool is None or not when.last_tool.matches(facts.last_tool)):
        return False
    if when.client is not None and not any(when.client.search(value) for value in facts.client_values):
        return False
    if when.model is not None and not when.model.matches(facts.model):
        return False
    return True


def classify(rules: Iterable[ClassRule], facts: ConversationFacts) -> tuple[int, ClassRule] | None:
    """Return the index and rule of the first rule whose conditions hold, or None when none does."""
    for index, rule in enumerate(rules):
        if rule_matches(rule, facts):
            return index, rule
    return None
