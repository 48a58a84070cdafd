"""Find the strings a compression target may rewrite, and where each one sits in the request.

JSONPath expressions are evaluated by jsonpath-ng, except for the common shape made of `$`, `.name`,
`[*]`, `[N]` and filters of the form `[?(@.field == 'text')]`, which a small evaluator here walks
directly. It returns the same nodes in the same order (a test compares the two on real requests) and
costs a small fraction of jsonpath-ng's time, which matters because the stage runs on every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jsonpath_ng.ext.filter import Expression, Filter
from jsonpath_ng.jsonpath import Child, Fields, Index, Root, Slice, This, Wildcard

# A match inside one of these blocks is never rewritten: tool calls, thinking (signed), media,
# and search results (citations point into their text).
PROTECTED_TYPES = frozenset(
    {"tool_use", "server_tool_use", "mcp_tool_use", "thinking", "redacted_thinking", "image", "document", "search_result"}
)


@dataclass(slots=True)
class Node:
    """A matched value, the key or position it has in its parent, and the parent's node."""

    value: Any
    key: str | int | None
    parent: "Node | None"


@dataclass(slots=True)
class Slot:
    """One string that a target may rewrite: `holder[key]`, where `holder` sits at `parent[index]`."""

    holder: dict[str, Any]
    key: str
    parent: list[Any]
    index: int
    tool_result: dict[str, Any] | None


# Evaluation ------------------------------------------------------------------------------------


def compile_steps(expression: Any) -> tuple[tuple[Any, ...], ...] | None:
    """Translate a parsed JSONPath into simple steps, or return None if it uses anything else."""
    steps: list[tuple[Any, ...]] = []
    node = expression
    while isinstance(node, Child):
        step = _simple_step(node.right)
        if step is None:
            return None
        steps.append(step)
        node = node.left
    if not isinstance(node, Root):
        return None
    steps.reverse()
    return tuple(steps)


def _simple_step(node: Any) -> tuple[Any, ...] | None:
    if isinstance(node, Fields) and len(node.fields) == 1 and node.fields[0] != "*":
        return ("field", node.fields[0])
    if isinstance(node, Wildcard):
        return ("all",)
    if isinstance(node, Slice) and node.start is None and node.end is None and node.step is None:
        return ("elements",)
    if isinstance(node, Index) and len(node.indices) == 1 and isinstance(node.indices[0], int):
        return ("index", node.indices[0])
    if isinstance(node, Filter):
        conditions = []
        for condition in node.expressions:
            if not (
                isinstance(condition, Expression)
                and condition.op == "=="
                and isinstance(condition.value, str)
                and isinstance(condition.target, Child)
                and isinstance(condition.target.left, This)
                and isinstance(condition.target.right, Fields)
                and len(condition.target.right.fields) == 1
                and condition.target.right.fields[0] != "*"
            ):
                return None
            conditions.append((condition.target.right.fields[0], condition.value))
        return ("filter", tuple(conditions))
    return None


def _children(value: Any) -> list[tuple[str | int, Any]]:
    if isinstance(value, list):
        return list(enumerate(value))
    if isinstance(value, dict):
        return list(value.items())
    return []


def _passes(value: Any, conditions: tuple[tuple[str, str], ...]) -> bool:
    if not isinstance(value, dict):
        return False
    for field, expected in conditions:
        found = value.get(field)
        if not isinstance(found, str) or found != expected:
            return False
    return True


def evaluate_steps(steps: tuple[tuple[Any, ...], ...], root: Any) -> list[Node]:
    current = [Node(root, None, None)]
    for step in steps:
        kind = step[0]
        following: list[Node] = []
        for node in current:
            value = node.value
            if kind == "field":
                if isinstance(value, dict) and step[1] in value:
                    following.append(Node(value[step[1]], step[1], node))
            elif kind == "all":
                following.extend(Node(child, key, node) for key, child in _children(value))
            elif kind == "elements":
                if isinstance(value, list):
                    following.extend(Node(child, position, node) for position, child in enumerate(value))
            elif kind == "index":
                if isinstance(value, list) and -len(value) <= step[1] < len(value):
                    position = step[1] % len(value)
                    following.append(Node(value[position], position, node))
            else:
                following.extend(
                    Node(child, key, node) for key, child in _children(value) if _passes(child, step[1])
                )
        current = following
    return current


def _node_from_datum(datum: Any) -> Node:
    """Convert a jsonpath-ng DatumInContext chain into Nodes."""
    chain = []
    while datum is not None:
        chain.append(datum)
        datum = datum.context
    parent: Node | None = None
    for link in reversed(chain):
        key: str | int | None = None
        if parent is not None:
            step = link.path
            if isinstance(step, Fields) and len(step.fields) == 1:
                key = step.fields[0]
            elif isinstance(step, Index) and len(step.indices) == 1 and isinstance(step.indices[0], int):
                key = step.indices[0]
                if isinstance(parent.value, list) and key < 0:
                    key += len(parent.value)
        parent = Node(link.value, key, parent)
    assert parent is not None
    return parent


def find_nodes(compiled: Any, steps: tuple[tuple[Any, ...], ...] | None, root: Any) -> list[Node]:
    """Evaluate a compiled JSONPath on root; `steps` is its `compile_steps` form when it has one."""
    if steps is not None:
        return evaluate_steps(steps, root)
    return [_node_from_datum(datum) for datum in compiled.find(root)]


# Slots -----------------------------------------------------------------------------------------


def _block_type(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    # JSON Schemas inside tool inputs also have "type" keys, with lists or objects as values.
    return kind if isinstance(kind, str) else None


def slots_for(node: Node) -> list[Slot]:
    """Return the rewritable strings of a matched node (see the stage's module docstring)."""
    tool_result = None
    link: Node | None = node
    while link is not None:
        kind = _block_type(link.value)
        if kind in PROTECTED_TYPES:
            return []
        if kind == "tool_result" and tool_result is None:
            tool_result = link.value
        link = link.parent

    value = node.value
    if isinstance(value, str):
        holder_node = node.parent
        if holder_node is None:
            return []
        holder_kind = _block_type(holder_node.value)
        allowed = (holder_kind == "tool_result" and node.key == "content") or (
            holder_kind == "text" and node.key == "text"
        )
        if not allowed:
            return []
        return _slot_of_holder(holder_node, str(node.key), tool_result)

    kind = _block_type(value)
    if kind == "text":
        return _slot_of_holder(node, "text", tool_result)
    if kind != "tool_result":
        return []
    content = value.get("content")
    if isinstance(content, str):
        return _slot_of_holder(node, "content", tool_result)
    if not isinstance(content, list):
        return []
    return [
        Slot(block, "text", content, position, value)
        for position, block in enumerate(content)
        if _block_type(block) == "text" and isinstance(block.get("text"), str)
    ]


def _slot_of_holder(holder_node: Node, key: str, tool_result: dict[str, Any] | None) -> list[Slot]:
    parent_node = holder_node.parent
    position = holder_node.key
    if parent_node is None or not isinstance(parent_node.value, list) or not isinstance(position, int):
        return []
    parent = parent_node.value
    if not (0 <= position < len(parent)) or parent[position] is not holder_node.value:
        return []
    return [Slot(holder_node.value, key, parent, position, tool_result)]
