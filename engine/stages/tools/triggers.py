"""Trigger evaluation: which conditional tool groups a conversation shows a need for."""

from __future__ import annotations

from functools import cached_property
from typing import Any, Iterable

import orjson

from engine.stages.tools.classify import ConversationFacts, content_blocks, system_reminders, user_text_of
from engine.stages.tools.groups import CompiledTrigger, ConditionalGroup

# The reason recorded for a conditional group that the request's class names in its keep list.
NAMED_BY_CLASS = "class"


class ConversationText:
    """The texts that trigger conditions search, extracted from the canonical body on first use.

    The properties are cached, and `needed_groups` makes one instance per call, so each is built at
    most once per request and only when a trigger reads it.
    """

    def __init__(self, body: dict):
        messages = body.get("messages")
        self._messages = [message for message in messages if isinstance(message, dict)] if isinstance(messages, list) else []
        self._system = body.get("system")

    @cached_property
    def user_texts(self) -> list[str]:
        texts = (user_text_of(message) for message in self._messages if message.get("role") == "user")
        return [text for text in texts if text]

    @cached_property
    def tool_inputs(self) -> list[tuple[str, str]]:
        """(tool name, input as compact JSON) of every tool call, in conversation order."""
        return self._message_scan[1]

    @cached_property
    def message_texts(self) -> list[str]:
        return self._message_scan[0]

    @cached_property
    def _message_scan(self) -> tuple[list[str], list[tuple[str, str]]]:
        # One pass serves both properties, so each tool input is serialised once.
        texts: list[str] = []
        calls: list[tuple[str, str]] = []
        for message in self._messages:
            content = message.get("content")
            if isinstance(content, str):
                texts.append(content)
                continue
            for block in content_blocks(content):
                kind = block.get("type")
                if kind == "text" and isinstance(block.get("text"), str):
                    texts.append(block["text"])
                elif kind in ("tool_use", "server_tool_use"):
                    arguments = _compact_json(block.get("input"))
                    texts.append(arguments)
                    if isinstance(block.get("name"), str):
                        calls.append((block["name"], arguments))
                elif kind == "tool_result":
                    texts.extend(_result_texts(block.get("content")))
        return texts, calls

    @cached_property
    def system_texts(self) -> list[str]:
        texts = []
        if isinstance(self._system, str):
            texts.append(self._system)
        else:
            texts.extend(block["text"] for block in content_blocks(self._system)
                         if block.get("type") == "text" and isinstance(block.get("text"), str))
        for text in self.message_texts:
            if "<system-reminder>" in text:
                texts.extend(system_reminders(text))
        return texts


def _compact_json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        # Not JSON data (only possible for bodies built in code); search its text form.
        return repr(value)


def _result_texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    return [block["text"] for block in content_blocks(content)
            if block.get("type") == "text" and isinstance(block.get("text"), str)]


def _search_any(pattern, texts: Iterable[str]) -> bool:
    return any(pattern.search(text) is not None for text in texts)


def trigger_holds(trigger: CompiledTrigger, text: ConversationText, facts: ConversationFacts) -> bool:
    """Return True if every condition that the trigger sets holds; cheap conditions are tested first."""
    if trigger.client is not None and not _search_any(trigger.client, facts.client_values):
        return False
    if trigger.called_tool is not None and not any(trigger.called_tool.matches(name) for name in facts.called_tools):
        return False
    if trigger.tool_input is not None:
        found = any(
            matcher.matches(name) and regex.search(arguments) is not None
            for name, arguments in text.tool_inputs
            for matcher, regex in trigger.tool_input
        )
        if not found:
            return False
    if trigger.user_text is not None and not _search_any(trigger.user_text, text.user_texts):
        return False
    if trigger.system_text is not None and not _search_any(trigger.system_text, text.system_texts):
        return False
    if trigger.conversation_text is not None and not _search_any(trigger.conversation_text, text.message_texts):
        return False
    return True


def needed_groups(groups: Iterable[ConditionalGroup], body: dict, facts: ConversationFacts,
                  named_by_class: Iterable[str]) -> dict[str, str]:
    """Return the conditional groups that this request needs, each with the reason.

    The reason is `needed_when[N]` for the first trigger that holds, or `class` when the request's class
    names the group in its keep list.
    """
    named = set(named_by_class)
    text = ConversationText(body)
    needed: dict[str, str] = {}
    for group in groups:
        if group.name in named:
            needed[group.name] = NAMED_BY_CLASS
            continue
        for index, trigger in enumerate(group.triggers):
            if trigger_holds(trigger, text, facts):
                needed[group.name] = f"needed_when[{index}]"
                break
    return needed
