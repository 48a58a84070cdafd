"""The direct JSONPath evaluator returns what jsonpath-ng returns, and slots find their parents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.stages.compress.locate import Node, compile_steps, evaluate_steps, find_nodes, slots_for
from engine.stages.compress.policy import compile_jsonpath

DATA = Path(__file__).resolve().parent / "data" / "compress"


def sample_body() -> dict[str, Any]:
    system = json.loads((DATA / "claude_code_1.0.123_system.json").read_text())
    tools = json.loads((DATA / "claude_code_16tools.json").read_text())
    return {
        "system": [{"type": "text", "text": text} for text in system["blocks"]],
        "tools": tools,
        "messages": [
            {"role": "user", "content": "plain string content"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "t", "signature": "s"},
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "a", "name": "Grep", "input": {"type": "tool_result"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "a", "content": "[1, 2]"},
                    {"type": "tool_result", "tool_use_id": "b", "content": [{"type": "text", "text": "{}"}], "is_error": True},
                    {"type": "text", "text": "and then"},
                    {"type": 5, "text": "odd type"},
                    "a bare string",
                ],
            },
            {"role": "assistant", "content": {"not": "a list"}},
        ],
    }


def path_of(node: Node) -> list[Any]:
    keys = []
    while node.parent is not None:
        keys.append(node.key)
        node = node.parent
    return list(reversed(keys))


FAST_PATHS = [
    "$.messages[*].content[?(@.type == 'tool_result')]",
    "$.messages[*].content[?(@.type == 'tool_result')].content",
    "$.messages[*].content[?(@.type == 'tool_result')].content[?(@.type == 'text')]",
    "$.messages[?(@.role == 'user')].content[?(@.type == 'tool_result')]",
    "$.messages[-1].content[*]",
    "$.messages[2].content[0]",
    "$.messages[7].content",
    "$.messages[*].content[*]",
    "$.messages[*]",
    "$.system[*].text",
    "$.messages[:].content",
    "$.messages.content",
    "$.messages[*].content.not",
    "$.tools[?(@.name == 'Grep')].input_schema.properties[*]",
    "$.messages[*].content[?(@.type == 'tool_result' && @.tool_use_id == 'b')]",
    "$.messages[*].*",
]


@pytest.mark.parametrize("expression", FAST_PATHS)
def test_direct_evaluator_matches_jsonpath_ng(expression: str) -> None:
    compiled = compile_jsonpath(expression)
    steps = compile_steps(compiled)
    assert steps is not None, f"{expression} should use the direct evaluator"
    body = sample_body()

    direct = evaluate_steps(steps, body)
    reference = find_nodes(compiled, None, body)

    assert [path_of(node) for node in direct] == [path_of(node) for node in reference]
    assert all(a.value is b.value for a, b in zip(direct, reference))


@pytest.mark.parametrize(
    "expression",
    [
        "$..content",
        "$.messages[*].content[?(@.type != 'tool_result')]",
        "$.messages[*].content[?(@.is_error == true)]",
        "$.messages[0:2]",
        "$.messages[*].content[?(@.type =~ 'tool_.*')]",
    ],
)
def test_other_expressions_use_jsonpath_ng(expression: str) -> None:
    assert compile_steps(compile_jsonpath(expression)) is None


def test_negative_index_resolves_to_position() -> None:
    body = sample_body()
    compiled = compile_jsonpath("$.messages[-2].content[-3]")
    for steps in (compile_steps(compiled), None):
        nodes = find_nodes(compiled, steps, body)
        assert [path_of(node) for node in nodes] == [["messages", 2, "content", 2]]


def test_slots_of_tool_result_list_content() -> None:
    body = sample_body()
    compiled = compile_jsonpath("$.messages[*].content[?(@.type == 'tool_result')]")
    slots = [slot for node in find_nodes(compiled, compile_steps(compiled), body) for slot in slots_for(node)]
    assert len(slots) == 2
    first, second = slots
    assert first.key == "content"
    assert first.parent is body["messages"][2]["content"]
    assert first.index == 0
    assert second.key == "text"
    assert second.parent is body["messages"][2]["content"][1]["content"]
    assert second.tool_result is body["messages"][2]["content"][1]


def test_slots_skip_protected_and_foreign_strings() -> None:
    body = sample_body()
    for expression in ("$.messages[*].content[*].input.type", "$.messages[*].content[*].thinking", "$.tools[*].name"):
        compiled = compile_jsonpath(expression)
        nodes = find_nodes(compiled, compile_steps(compiled), body)
        assert nodes, expression
        assert [slot for node in nodes for slot in slots_for(node)] == [], expression
