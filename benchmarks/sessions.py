"""Generate realistic multi-turn coding-agent sessions and render them in three client formats.

A session is what Claude Code, Codex or Cursor sends over one task: a fixed tool list and system
prompt, then a growing history. Every request adds an assistant tool call and its tool result, and a
new user prompt comes every few rounds. Each request of a session repeats the whole history, so
almost all of its input is the previous request's prompt again.

    from benchmarks.sessions import agent_session, anthropic_request, chat_request, responses_request

    session = agent_session(requests=24, seed=7)
    for index in range(len(session.requests)):
        body = chat_request(session, index, model="leangate-strong")

The content is generated deterministically from the seed: file reads with line numbers (as Claude
Code's Read tool returns them), grep hits, test runs and edits. The tool list and system prompt are
Claude Code's, from `tests/data/` (see `tests/data/tool-sets/README.md` for their origin), so token
counts are those of real traffic. Nothing here talks to a network.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
CLAUDE_CODE_TOOLS = DATA / "claude_code_16tools.json"
CLAUDE_CODE_SYSTEM = DATA / "claude_code_1.0.123_system.json"

# Prompts that keep one request class (`edit` in the default policy), so tool selection forwards
# the same tools on every request of the session.
EDIT_PROMPTS = (
    "Fix the failing test in tests/test_orders.py; the discount is applied twice.",
    "Now update the invoice module so totals are rounded to cents, and fix the callers.",
    "Refactor parse_line in src/shop/importer.py to return a dataclass instead of a tuple.",
    "Add a retry with backoff to the payment client and change its timeout to 10 seconds.",
    "Rename OrderRepo to OrderRepository everywhere and update the imports.",
)
# A mixed session as users run it: a question first, then edits and a test run.
MIXED_PROMPTS = (
    "Explain how src/shop/orders.py computes the order total.",
    "Fix the failing test in tests/test_orders.py; the discount is applied twice.",
    "Run the whole test suite and fix whatever else fails.",
    "Update the changelog entry for this fix.",
)

_WORDS = ("order", "total", "line", "item", "price", "discount", "tax", "invoice", "customer", "cart",
          "payment", "refund", "currency", "amount", "status", "record", "batch", "config", "client", "cache")
_FILES = ("src/shop/orders.py", "src/shop/invoice.py", "src/shop/importer.py", "src/shop/payments.py",
          "src/shop/models.py", "tests/test_orders.py", "tests/test_invoice.py", "src/shop/repository.py")


@dataclass
class AgentSession:
    """One generated session: canonical (Anthropic Messages) history and the request boundaries.

    `requests[i]` is the number of messages sent in request i. Every request ends on a user message.
    """

    session_id: str
    system: list[str]
    tools: list[dict[str, Any]]
    messages: list[dict[str, Any]] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)

    def history(self, index: int) -> list[dict[str, Any]]:
        return self.messages[: self.requests[index]]


def load_claude_code() -> tuple[list[str], list[dict[str, Any]]]:
    """Return Claude Code's system prompt blocks and its 16 built-in tool definitions."""
    system = json.loads(CLAUDE_CODE_SYSTEM.read_text(encoding="utf-8"))["blocks"]
    tools = json.loads(CLAUDE_CODE_TOOLS.read_text(encoding="utf-8"))
    return system, tools


def agent_session(requests: int = 24, seed: int = 0, prompts: tuple[str, ...] = EDIT_PROMPTS,
                  rounds: tuple[int, int] = (3, 6), session_id: str | None = None) -> AgentSession:
    """Generate a session of `requests` requests.

    Each user prompt is followed by a random number of tool rounds within `rounds` (inclusive), then
    a short final answer. Prompts are used in order, and repeat when the session needs more of them.
    """
    if requests < 1:
        raise ValueError(f"requests must be at least 1, got {requests}")
    rng = random.Random(seed)
    system, tools = load_claude_code()
    session = AgentSession(session_id or str(uuid.UUID(int=rng.getrandbits(128))), system, tools)
    prompt_number = 0
    while len(session.requests) < requests:
        prompt = prompts[prompt_number % len(prompts)]
        _add_user_prompt(session, prompt, first=prompt_number == 0, tag=f"{seed}-{prompt_number}")
        prompt_number += 1
        for _ in range(rng.randint(*rounds)):
            if len(session.requests) == requests:
                break
            _add_tool_round(session, rng)
        if len(session.requests) < requests:
            session.messages.append({"role": "assistant", "content": [{"type": "text", "text": _final_answer(rng)}]})
    return session


def _add_user_prompt(session: AgentSession, prompt: str, first: bool, tag: str) -> None:
    content: list[dict[str, Any]] = []
    if first:
        # Claude Code opens a session with reminders about the working directory and the date.
        content.append({"type": "text", "text": "<system-reminder>\nWorking directory: /home/dev/shop\n"
                        "Is directory a git repo: Yes\nPlatform: linux\nToday's date: 2026-12-04\n</system-reminder>"})
    content.append({"type": "text", "text": f"{prompt} (task {tag})"})
    session.messages.append({"role": "user", "content": content})
    session.requests.append(len(session.messages))


def _add_tool_round(session: AgentSession, rng: random.Random) -> None:
    call_id = f"toolu_{rng.getrandbits(64):016x}"
    name, tool_input, result = rng.choice((_read, _read, _grep, _bash, _edit))(rng)
    assistant: list[dict[str, Any]] = []
    if rng.random() < 0.4:
        assistant.append({"type": "text", "text": f"Let me look at the {rng.choice(_WORDS)} handling next."})
    assistant.append({"type": "tool_use", "id": call_id, "name": name, "input": tool_input})
    session.messages.append({"role": "assistant", "content": assistant})
    session.messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": result}]})
    session.requests.append(len(session.messages))


def _identifier(rng: random.Random) -> str:
    return "_".join(rng.sample(_WORDS, 2))


def _code_lines(rng: random.Random, count: int) -> list[str]:
    lines: list[str] = []
    while len(lines) < count:
        name = _identifier(rng)
        lines.append(f"def {name}({rng.choice(_WORDS)}, {rng.choice(_WORDS)}=None):")
        lines.append(f'    """Return the {rng.choice(_WORDS)} {rng.choice(_WORDS)} of one {rng.choice(_WORDS)}."""')
        for _ in range(rng.randint(2, 7)):
            lines.append(f"    {rng.choice(_WORDS)} = {_identifier(rng)}({rng.choice(_WORDS)}) * {rng.randint(1, 99)}")
        lines.append(f"    return {rng.choice(_WORDS)}")
        lines.append("")
    return lines[:count]


def _read(rng: random.Random) -> tuple[str, dict[str, Any], str]:
    path = "/home/dev/shop/" + rng.choice(_FILES)
    lines = _code_lines(rng, rng.randint(60, 260))
    numbered = "\n".join(f"{number:>6}\t{line}" for number, line in enumerate(lines, start=1))
    return "Read", {"file_path": path}, numbered


def _grep(rng: random.Random) -> tuple[str, dict[str, Any], str]:
    pattern = _identifier(rng)
    hits = [f"/home/dev/shop/{rng.choice(_FILES)}:{rng.randint(1, 400)}:    {pattern}({rng.choice(_WORDS)})"
            for _ in range(rng.randint(3, 25))]
    return "Grep", {"pattern": pattern, "output_mode": "content", "-n": True}, "\n".join(hits)


def _bash(rng: random.Random) -> tuple[str, dict[str, Any], str]:
    passed = rng.randint(20, 200)
    failures = [f"FAILED tests/test_{rng.choice(_WORDS)}.py::test_{_identifier(rng)} - AssertionError: "
                f"assert {rng.randint(1, 999)} == {rng.randint(1, 999)}" for _ in range(rng.randint(0, 4))]
    trace = []
    for failure in failures:
        trace += [failure, "Traceback (most recent call last):",
                  f'  File "/home/dev/shop/{rng.choice(_FILES)}", line {rng.randint(1, 300)}, in {_identifier(rng)}',
                  f"    {rng.choice(_WORDS)} = {_identifier(rng)}({rng.choice(_WORDS)})"]
    summary = f"{len(failures)} failed, {passed} passed in {rng.uniform(0.5, 9):.2f}s"
    output = "\n".join(["============================= test session starts ==============================",
                        f"collected {passed + len(failures)} items", *trace, summary])
    return "Bash", {"command": "python -m pytest -q", "description": "Run the test suite"}, output


def _edit(rng: random.Random) -> tuple[str, dict[str, Any], str]:
    path = "/home/dev/shop/" + rng.choice(_FILES)
    old = "\n".join(_code_lines(rng, rng.randint(3, 12)))
    new = old.replace("* ", "+ ", 1) + f"\n    # {rng.choice(_WORDS)} is checked by the caller"
    result = f"The file {path} has been updated. Here's the result of running `cat -n` on a snippet:\n" + "\n".join(
        f"{number:>6}\t{line}" for number, line in enumerate(new.splitlines(), start=rng.randint(10, 200)))
    return "Edit", {"file_path": path, "old_string": old, "new_string": new}, result


def _final_answer(rng: random.Random) -> str:
    return (f"Done. I changed {rng.choice(_FILES)} so the {rng.choice(_WORDS)} is computed once, and the "
            f"tests pass ({rng.randint(20, 200)} passed).")


# --- rendering ---------------------------------------------------------------------------------------


def anthropic_request(session: AgentSession, index: int, model: str, *, claude_code_markers: bool = True,
                      max_tokens: int = 1024) -> dict[str, Any]:
    """Render request `index` as an Anthropic Messages body.

    With `claude_code_markers` the breakpoints Claude Code places are added: the last system block
    and the last block of the last message carry `cache_control`.
    """
    system = [{"type": "text", "text": text} for text in session.system]
    messages = json.loads(json.dumps(session.history(index)))
    if claude_code_markers:
        system[-1]["cache_control"] = {"type": "ephemeral"}
        messages[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
    return {"model": model, "max_tokens": max_tokens, "system": system, "tools": session.tools, "messages": messages}


def chat_request(session: AgentSession, index: int, model: str, *, max_tokens: int = 1024) -> dict[str, Any]:
    """Render request `index` as an OpenAI Chat Completions body, as Cursor, Aider or Cline send it."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "\n\n".join(session.system)}]
    for message in session.history(index):
        if message["role"] == "assistant":
            text = "".join(block["text"] for block in message["content"] if block["type"] == "text")
            calls = [{"id": block["id"], "type": "function",
                      "function": {"name": block["name"], "arguments": json.dumps(block["input"])}}
                     for block in message["content"] if block["type"] == "tool_use"]
            assistant: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                assistant["tool_calls"] = calls
            messages.append(assistant)
            continue
        for block in message["content"]:
            if block["type"] == "tool_result":
                messages.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": block["content"]})
        texts = [{"type": "text", "text": block["text"]} for block in message["content"] if block["type"] == "text"]
        if texts:
            messages.append({"role": "user", "content": texts})
    tools = [{"type": "function", "function": {"name": tool["name"], "description": tool["description"],
                                               "parameters": tool["input_schema"]}} for tool in session.tools]
    return {"model": model, "max_tokens": max_tokens, "messages": messages, "tools": tools}


def responses_request(session: AgentSession, index: int, model: str, *, max_output_tokens: int = 1024) -> dict[str, Any]:
    """Render request `index` as an OpenAI Responses body, as Codex sends it (stateless, full history)."""
    items: list[dict[str, Any]] = []
    for message in session.history(index):
        for block in message["content"]:
            if block["type"] == "text":
                kind = "output_text" if message["role"] == "assistant" else "input_text"
                items.append({"type": "message", "role": message["role"], "content": [{"type": kind, "text": block["text"]}]})
            elif block["type"] == "tool_use":
                items.append({"type": "function_call", "call_id": block["id"], "name": block["name"],
                              "arguments": json.dumps(block["input"])})
            elif block["type"] == "tool_result":
                items.append({"type": "function_call_output", "call_id": block["tool_use_id"], "output": block["content"]})
    tools = [{"type": "function", "name": tool["name"], "description": tool["description"],
              "parameters": tool["input_schema"], "strict": False} for tool in session.tools]
    return {"model": model, "instructions": "\n\n".join(session.system), "input": items, "tools": tools,
            "max_output_tokens": max_output_tokens, "store": False, "stream": False}


RENDERERS = {"anthropic": anthropic_request, "openai-chat": chat_request, "openai-responses": responses_request}
