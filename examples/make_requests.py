"""Write the example request bodies in examples/requests/ (run from the repository root).

The tool arrays and the system prompt are real captures of Claude Code and Codex (tests/data/);
the conversations are made up but shaped like real agent traffic.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
OUT = ROOT / "examples" / "requests"


def load(name: str):
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def claude_code_system() -> list[dict]:
    blocks = load("claude_code_1.0.123_system.json")["blocks"]
    env = "\n<env>\nWorking directory: /home/dev/shop\nIs directory a git repo: Yes\nPlatform: linux\n</env>"
    texts = [*blocks[:-1], blocks[-1] + env]
    return [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}} for text in texts]


def grep_matches(count: int) -> list[dict]:
    files = ["src/cart/checkout.py", "src/cart/totals.py", "src/payments/stripe_client.py", "src/orders/models.py",
             "tests/test_checkout.py", "src/api/routes.py"]
    matches = []
    for index in range(count):
        path = files[index % len(files)]
        line = 12 + (index * 37) % 400
        matches.append({
            "file": path,
            "line": line,
            "match": f"    total = compute_total(cart, currency=currency)  # call site {index}",
            "context": f"def step_{index}(cart, currency):\n    total = compute_total(cart, currency=currency)\n    return total",
        })
    return matches


def write(name: str, body: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / name).write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    tools = load("tool-sets/claude_code_16tools.json")
    system = claude_code_system()
    write("01-short-question.anthropic.json", {
        "model": "claude-sonnet-4-5", "max_tokens": 1024,
        "messages": [{"role": "user", "content": "What is the syntax for a list comprehension in Python?"}],
    })
    write("02-read-only-question.anthropic.json", {
        "model": "claude-sonnet-4-5", "max_tokens": 32000, "system": system, "tools": tools,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Explain how the checkout total is computed in src/cart/totals.py."}]}],
    })
    write("03-edit-task.anthropic.json", {
        "model": "claude-sonnet-4-5", "max_tokens": 32000, "system": system, "tools": tools,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Rename compute_total to calculate_total everywhere and update the tests."}]}],
    })
    write("04-grep-results.anthropic.json", {
        "model": "claude-sonnet-4-5", "max_tokens": 32000, "system": system, "tools": tools,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Find every call site of compute_total."}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "I'll search for the call sites."},
                {"type": "tool_use", "id": "toolu_01GrepCallSites", "name": "Grep", "input": {"pattern": "compute_total\\(", "output_mode": "content"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01GrepCallSites", "content": json.dumps(grep_matches(60), indent=2)},
            ]},
        ],
    })
    write("05-aider-question.openai.json", {
        "model": "leangate-auto", "max_tokens": 2048, "stream": True, "stream_options": {"include_usage": True},
        "messages": [
            {"role": "system", "content": "Act as an expert software developer. Always use best practices when coding."},
            {"role": "user", "content": "How do I read a file line by line in Go?"},
        ],
    })
    write("06-cline-tool-call.openai.json", {
        "model": "leangate-auto", "max_tokens": 4096,
        "messages": [
            {"role": "system", "content": "You are Cline, a highly skilled software engineer."},
            {"role": "user", "content": "List the files in the src directory. <<call list_files {\"path\": \"src\"}>>"},
        ],
        "tools": [{"type": "function", "function": {"name": "list_files", "description": "List files in a directory.",
                   "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}],
    })
    write("07-codex-turn.responses.json", {
        "model": "leangate-auto", "instructions": "You are Codex, a coding agent running in a terminal.",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Show the git log of the last three commits."}]}],
        "tools": load("codex_cli.openai_responses_format.json"), "store": False, "stream": True,
    })
    write("08-hard-design.anthropic.json", {
        "model": "claude-sonnet-4-5", "max_tokens": 32000, "system": system, "tools": tools,
        "messages": [{"role": "user", "content": [{"type": "text", "text": (
            "Our payment service double-charges customers when the Stripe webhook and the checkout request race. "
            "Design a fix across src/payments/stripe_client.py, src/orders/models.py and the webhook handler: "
            "analyse the concurrency bug, propose an idempotency scheme with a database migration, and explain the "
            "trade-offs for production rollout without data loss.")}]}],
    })


if __name__ == "__main__":
    main()
