"""Measure what tool selection saves: tokens on single requests, billed cost over a Claude Code session.

Run from the repository root:

    python benchmarks/tool_selection.py [--policies policies] [--json benchmarks/out/tool_selection.json]

Part 1 sends read-only and search questions that carry Claude Code's full tool set through the
default policy and compares forwarded input tokens and tool-schema tokens with the original.

Part 2 replays two scripted 30-request Claude Code sessions (a growing history with tool calls): a
mixed one that starts with questions and then edits, tests and commits, and a read-only one. It
prices every request with the project's prompt-cache simulator (`engine.stub.prompt_cache`), as
Anthropic bills it: uncached input at 1x the base input price, cache writes at 1.25x, cache reads at
0.1x. Claude Code's breakpoints are reproduced: both system blocks and the last block of the last
message carry `cache_control`. The scenarios are: tools forwarded unchanged, selection with the
session header (the kept set only grows), the same with the web group made conditional as well
(a team file that the benchmark writes, to show what holding web back costs), and selection without
a session id (the tool list may change from request to request, which is what the session rule
prevents).

Part 3 prices the generated sessions of `benchmarks/sessions.py` in the same way: the 30-request
mixed session that `leangate bench` replays (scenario 9: seed 9, `MIXED_PROMPTS`) and a 30-request
edit session (seed 9, `EDIT_PROMPTS`), each with tools unchanged and with selection under a session
header.

Token counts are cl100k estimates (`engine.tokens`), not a provider's tokenizer. Output prices
are left out because tool selection does not change the output.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.sessions import EDIT_PROMPTS, MIXED_PROMPTS, agent_session, anthropic_request  # noqa: E402
from engine.pipeline.context import RequestContext, conversation_session_id  # noqa: E402
from engine.policy.loader import load_policy_set  # noqa: E402
from engine.policy.models import Policy  # noqa: E402
from engine.stages.tools.select import select_tools  # noqa: E402
from engine.stages.tools.sessions import ToolSessions  # noqa: E402
from engine.stub.prompt_cache import PromptCacheSimulator  # noqa: E402
from engine.tokens import count_request, count_tools  # noqa: E402

TOOL_SETS = ROOT / "tests" / "data" / "tool-sets"
SYSTEM_PROMPT = ROOT / "tests" / "data" / "claude_code_1.0.123_system.json"

CACHE_WRITE_PRICE = 1.25
CACHE_READ_PRICE = 0.1
SECONDS_BETWEEN_REQUESTS = 12.0
SECONDS_BETWEEN_USER_TURNS = 90.0
MODEL = "claude-sonnet-4-5"
HEADERS = {"user-agent": "claude-cli/1.0.123 (external, cli)", "x-app": "cli"}


def load_tools(name: str) -> list[dict]:
    return json.loads((TOOL_SETS / f"{name}.json").read_text())


def claude_code_system() -> list[dict]:
    blocks = json.loads(SYSTEM_PROMPT.read_text())["blocks"]
    env = "\n<env>\nWorking directory: /home/dev/shop-api\nIs directory a git repo: Yes\nPlatform: linux\n</env>"
    texts = [blocks[0], blocks[1] + env]
    return [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}} for text in texts]


def code_listing(path: str, lines: int) -> str:
    """Return a deterministic stand-in for a Read result: numbered Python-like lines."""
    body = []
    for number in range(1, lines + 1):
        body.append(f"{number:>6}\t    value_{number} = compute_{number % 7}(order, rate={number % 13}) if order else None")
    return f"# {path}\n" + "\n".join(body)


# One user turn: the text, then the tool calls the agent makes before its final reply. Each tool call
# adds a request (the call's result goes back to the model), and the first request carries the user text.
SESSION_SCRIPT: list[tuple[str, list[tuple[str, dict, str]]]] = [
    ("How does the order total get computed when a coupon and a gift card are both applied?", [
        ("Grep", {"pattern": "def compute_total", "path": "src"}, "src/shop/orders/pricing.py"),
        ("Read", {"file_path": "src/shop/orders/pricing.py"}, code_listing("pricing.py", 120)),
        ("Read", {"file_path": "src/shop/coupons.py"}, code_listing("coupons.py", 80)),
    ]),
    ("Where else is apply_coupon called?", [
        ("Grep", {"pattern": "apply_coupon\\(", "output_mode": "content"}, "src/shop/orders/pricing.py:7\nsrc/shop/cart.py:41\nsrc/shop/api/checkout.py:88"),
        ("Read", {"file_path": "src/shop/cart.py"}, code_listing("cart.py", 90)),
    ]),
    ("Fix apply_coupon so that percentage coupons are applied before the gift card.", [
        ("Read", {"file_path": "src/shop/coupons.py"}, code_listing("coupons.py", 80)),
        ("Edit", {"file_path": "src/shop/coupons.py", "old_string": "return amount", "new_string": "return amount * (1 - coupon.percent / 100)"}, "The file src/shop/coupons.py has been updated."),
        ("Bash", {"command": "pytest -q tests/test_pricing.py"}, "F..\nE   AssertionError: assert Decimal('91.00') == Decimal('90.00')\n1 failed, 2 passed"),
        ("Read", {"file_path": "tests/test_pricing.py"}, code_listing("test_pricing.py", 60)),
        ("Edit", {"file_path": "src/shop/orders/pricing.py", "old_string": "redeem(subtotal", "new_string": "redeem(apply_coupon(subtotal, order.coupon)"}, "The file src/shop/orders/pricing.py has been updated."),
        ("Bash", {"command": "pytest -q tests/test_pricing.py"}, "...\n3 passed in 0.38s"),
    ]),
    ("Run the full test suite.", [
        ("Bash", {"command": "pytest -q"}, "." * 212 + "\n212 passed in 9.12s"),
    ]),
    ("Commit the changes with a good message.", [
        ("Bash", {"command": "git status --short"}, " M src/shop/coupons.py\n M src/shop/orders/pricing.py"),
        ("Bash", {"command": "git diff"}, "\n".join(f"+    line {index}" for index in range(120))),
        ("Bash", {"command": "git commit -am 'Apply percentage coupons before gift cards'"}, "[main 4f2a9c1] Apply percentage coupons before gift cards\n 2 files changed, 6 insertions(+), 3 deletions(-)"),
    ]),
    ("What does the serializer do with fields it does not know about?", [
        ("Grep", {"pattern": "class OrderSerializer"}, "src/shop/api/serializers.py"),
        ("Read", {"file_path": "src/shop/api/serializers.py"}, code_listing("serializers.py", 140)),
    ]),
    ("Search the web for the changelog of pydantic 2.12 and tell me if model_validate changed.", [
        ("WebSearch", {"query": "pydantic 2.12 changelog model_validate"}, "1. Pydantic 2.12 release notes ...\n2. Migration guide ..."),
        ("WebFetch", {"url": "https://docs.pydantic.dev/latest/changelog/", "prompt": "model_validate changes"}, "No behaviour change to model_validate; new `by_alias` default ..."),
    ]),
    ("Add a test for a coupon of 100 percent.", [
        ("Read", {"file_path": "tests/test_pricing.py"}, code_listing("test_pricing.py", 60)),
        ("Edit", {"file_path": "tests/test_pricing.py", "old_string": "def test_total_with_coupon", "new_string": "def test_full_discount():\n    ...\n\ndef test_total_with_coupon"}, "The file tests/test_pricing.py has been updated."),
    ]),
    ("thanks!", []),
]


# A session that only reads: six questions, each answered after four Grep, Glob or Read calls.
READ_ONLY_QUESTIONS = [
    "Explain how the checkout flow validates the cart before payment.",
    "Where is the tax rate for each country defined?",
    "How does the retry decorator decide when to give up?",
    "Which modules import the legacy pricing helpers?",
    "What does OrderSerializer.to_representation add to the payload?",
    "Walk me through how a refund is recorded in the ledger.",
]
READ_ONLY_SCRIPT: list[tuple[str, list[tuple[str, dict, str]]]] = [
    (question, [
        ("Grep", {"pattern": f"topic_{index}", "path": "src"}, f"src/shop/module_{index}.py\nsrc/shop/helpers_{index}.py"),
        ("Read", {"file_path": f"src/shop/module_{index}.py"}, code_listing(f"module_{index}.py", 70)),
        ("Glob", {"pattern": f"src/shop/**/*_{index}.py"}, f"src/shop/helpers_{index}.py\nsrc/shop/api/view_{index}.py"),
        ("Read", {"file_path": f"src/shop/helpers_{index}.py"}, code_listing(f"helpers_{index}.py", 50)),
    ])
    for index, question in enumerate(READ_ONLY_QUESTIONS)
]

SESSION_SCRIPTS = {
    "mixed: explain, search, fix, test, commit, web, add test, thanks": SESSION_SCRIPT,
    "read-only: six explain and search questions": READ_ONLY_SCRIPT,
}


def build_session_requests(tools: list[dict], script: list[tuple[str, list[tuple[str, dict, str]]]]) -> list[dict]:
    """Return the session's request bodies in order, each with the full history up to that point."""
    system = claude_code_system()
    history: list[dict] = []
    requests: list[dict] = []
    call_number = 0
    for text, calls in script:
        history.append({"role": "user", "content": [{"type": "text", "text": text}]})
        requests.append(_request(system, history, tools))
        for name, tool_input, output in calls:
            call_number += 1
            call_id = f"toolu_bench_{call_number:04d}"
            history.append({"role": "assistant", "content": [{"type": "tool_use", "id": call_id, "name": name, "input": tool_input}]})
            history.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": output}]})
            requests.append(_request(system, history, tools))
        history.append({"role": "assistant", "content": [{"type": "text", "text": f"Done: {text[:60]}"}]})
    return requests


def _request(system: list[dict], history: list[dict], tools: list[dict]) -> dict:
    messages = copy.deepcopy(history)
    # Claude Code marks the last block of the newest message as a cache breakpoint.
    messages[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
    return {"model": MODEL, "max_tokens": 32000, "system": system, "messages": messages, "tools": list(tools), "stream": True}


def run_selection(body: dict, policy: Policy, sessions: ToolSessions, session_id: str | None,
                  session_source: str | None = None) -> tuple[dict, float]:
    """Run the stage as the gateway does; `session_source` is `header` or `derived`, as the gateway sets it."""
    ctx = RequestContext(request_id="bench", protocol="anthropic", body=body, headers=dict(HEADERS),
                         session_id=session_id, requested_model=MODEL, scratch={"session_source": session_source})
    started = time.perf_counter()
    decision = select_tools(ctx, policy, sessions)
    elapsed = time.perf_counter() - started
    return decision, elapsed


def single_requests(policy: Policy) -> list[dict]:
    """Part 1: one question with the full tool set, before and after selection."""
    rows = []
    system = claude_code_system()
    questions = [
        ("read-only", "Can you explain how the retry backoff in src/shop/http/client.py works?"),
        ("search", "Where is parse_config defined, and which modules call it?"),
    ]
    for tool_set in ("claude_code_16tools", "claude_code_1.0.123_with_mcp"):
        tools = load_tools(tool_set)
        for kind, text in questions:
            body = {"model": MODEL, "max_tokens": 32000, "system": system, "tools": list(tools),
                    "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}
            before = count_request(body)
            tools_before = count_tools(body["tools"])
            timings = []
            for _ in range(200):
                copy_body = dict(body, tools=list(tools))
                decision, elapsed = run_selection(copy_body, policy, ToolSessions(), None)
                timings.append(elapsed)
            after = count_request(copy_body)
            tools_after = count_tools(copy_body.get("tools"))
            rows.append({
                "tool_set": tool_set, "request": kind, "class": decision["class"],
                "tools_kept": f"{len(decision['kept'])}/{len(tools)}",
                "input_tokens_before": before, "input_tokens_after": after,
                "tool_tokens_before": tools_before, "tool_tokens_after": tools_after,
                "tool_token_reduction": 1 - tools_after / tools_before,
                "input_token_reduction": 1 - after / before,
                "select_median_us": statistics.median(timings) * 1e6,
            })
    return rows


def long_request_timing(policy: Policy, count: int = 30) -> dict:
    """Time the stage on the last request of the generated mixed session: conditional-group triggers
    search the whole conversation, so their cost grows with its length."""
    session = agent_session(requests=count, seed=9, prompts=MIXED_PROMPTS)
    body = anthropic_request(session, count - 1, MODEL, max_tokens=32000)
    timings = []
    for _ in range(200):
        _, elapsed = run_selection(dict(body, tools=list(body["tools"])), policy, ToolSessions(), None)
        timings.append(elapsed)
    return {"request_kib": len(json.dumps(body)) // 1024, "select_median_us": statistics.median(timings) * 1e6}


def price(usage: Any) -> float:
    return usage.input_tokens + CACHE_WRITE_PRICE * usage.cache_creation_input_tokens + CACHE_READ_PRICE * usage.cache_read_input_tokens


DERIVED = object()
HEADER = "bench-session-1"

# The `web` group made conditional, as a team would write it. The trigger is the regex of the default
# policy's `web` class without the bare word `changelog`, which also matches "Update the changelog".
WEB_HELD_TEAM = """extends: default
tool_groups:
  web:
    tools: [WebFetch, WebSearch, web_search, web_fetch, browser_action]
    needed_when:
      user_text: '(?i)(https?://|\\b(search the web|web search|look (it |this )?up online|google|latest (version|release)|release notes)\\b)'
"""


def web_held_policy(policies: str | Path) -> Policy:
    """Load the policy folder with the team file above added, in a temporary copy."""
    with tempfile.TemporaryDirectory() as folder:
        policy_copy = Path(folder) / "policies"
        shutil.copytree(policies, policy_copy, ignore=shutil.ignore_patterns("tests"))
        (policy_copy / "teams").mkdir(exist_ok=True)
        (policy_copy / "teams" / "bench-web-held.yaml").write_text(WEB_HELD_TEAM, encoding="utf-8")
        return load_policy_set(policy_copy).teams["bench-web-held"]


def session_costs(requests: list[dict], scenarios: list[tuple[str, Policy | None, Any]]) -> list[dict]:
    """Price one session under each scenario with the prompt-cache simulator.

    A scenario is (label, policy or None for tools forwarded unchanged, session id). The session id is
    HEADER for a session header, DERIVED for an id derived from the conversation, or None.
    """
    rows = []
    for label, policy, session_id in scenarios:
        now = [0.0]
        simulator = PromptCacheSimulator(clock=lambda: now[0])
        sessions = ToolSessions()
        totals = {"input": 0, "write": 0, "read": 0, "cost": 0.0, "tool_tokens": 0, "forwarded": 0}
        tool_lists = set()
        for index, original in enumerate(requests):
            body = copy.deepcopy(original)
            if policy is not None and session_id is DERIVED:
                run_selection(body, policy, sessions, conversation_session_id(body), "derived")
            elif policy is not None:
                run_selection(body, policy, sessions, session_id, "header" if session_id else None)
            tool_lists.add(tuple(tool["name"] for tool in body.get("tools", [])))
            usage = simulator.anthropic_usage(body, MODEL)
            totals["input"] += usage.input_tokens
            totals["write"] += usage.cache_creation_input_tokens
            totals["read"] += usage.cache_read_input_tokens
            totals["cost"] += price(usage)
            totals["tool_tokens"] += count_tools(body.get("tools"))
            totals["forwarded"] += usage.total_input_tokens
            now[0] += SECONDS_BETWEEN_USER_TURNS if _next_starts_turn(requests, index) else SECONDS_BETWEEN_REQUESTS
        rows.append({"scenario": label, "distinct_tool_lists": len(tool_lists), **totals})
    return rows


def scripted_sessions(policy: Policy, web_held: Policy) -> dict[str, tuple[list[dict], int]]:
    """Part 2: the scripted sessions under every scenario."""
    tools = load_tools("claude_code_16tools")
    scenarios = [("tools unchanged", None, None), ("selection, session header", policy, HEADER),
                 ("selection, session header, web held back too", web_held, HEADER),
                 ("selection, no header, derived id", policy, DERIVED),
                 ("selection, no session id (derivation off)", policy, None)]
    results = {}
    for name, script in SESSION_SCRIPTS.items():
        requests = build_session_requests(tools, script)
        results[name] = (session_costs(requests, scenarios), len(requests))
    return results


GENERATED_SESSIONS = {
    "generated mixed (leangate bench scenario 9: seed 9, MIXED_PROMPTS)": MIXED_PROMPTS,
    "generated edit (seed 9, EDIT_PROMPTS)": EDIT_PROMPTS,
}


def generated_sessions(policy: Policy, web_held: Policy, count: int = 30) -> dict[str, tuple[list[dict], int]]:
    """Part 3: the generated sessions of `benchmarks/sessions.py`, with and without selection."""
    scenarios = [("tools unchanged", None, None), ("selection, session header", policy, HEADER),
                 ("selection, session header, web held back too", web_held, HEADER)]
    results = {}
    for name, prompts in GENERATED_SESSIONS.items():
        session = agent_session(requests=count, seed=9, prompts=prompts)
        requests = [anthropic_request(session, index, MODEL, max_tokens=32000) for index in range(count)]
        results[name] = (session_costs(requests, scenarios), count)
    return results


def _next_starts_turn(requests: list[dict], index: int) -> bool:
    if index + 1 >= len(requests):
        return False
    return requests[index + 1]["messages"][-1]["content"][0].get("type") == "text"


def print_report(single: list[dict], long_request: dict, sessions: dict[str, tuple[list[dict], int]]) -> None:
    print("Part 1: one request with the full Claude Code tool set (cl100k token estimates)")
    print()
    print("| tool set | request | class | tools kept | input tokens before -> after | tool-schema tokens before -> after | tool-schema reduction | select_tools median |")
    print("|---|---|---|---|---|---|---|---|")
    for row in single:
        print(f"| {row['tool_set']} | {row['request']} | {row['class']} | {row['tools_kept']} | "
              f"{row['input_tokens_before']} -> {row['input_tokens_after']} ({row['input_token_reduction']:.0%} fewer) | "
              f"{row['tool_tokens_before']} -> {row['tool_tokens_after']} | {row['tool_token_reduction']:.0%} | "
              f"{row['select_median_us']:.0f} µs |")
    print()
    print(f"select_tools median on request 30 of the generated mixed session ({long_request['request_kib']} KiB): "
          f"{long_request['select_median_us']:.0f} µs")
    for name, (rows, request_count) in sessions.items():
        print()
        baseline = rows[0]["cost"]
        part = "Part 3" if name.startswith("generated") else "Part 2"
        print(f"{part}: a {request_count}-request Claude Code session (16 tools), {name}; "
              "billed input in base-price token units")
        print()
        print("| scenario | distinct tool lists | uncached input | cache writes (1.25x) | cache reads (0.1x) | billed input | vs unchanged | tool-schema tokens sent |")
        print("|---|---|---|---|---|---|---|---|")
        for row in rows:
            change = row["cost"] / baseline - 1
            print(f"| {row['scenario']} | {row['distinct_tool_lists']} | {row['input']} | {row['write']} | {row['read']} | "
                  f"{row['cost']:.0f} | {change:+.1%} | {row['tool_tokens']} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure the token and billed-cost effect of tool selection.")
    parser.add_argument("--policies", default=str(ROOT / "policies"), help="Policy folder (default: policies/).")
    parser.add_argument("--json", metavar="PATH", help="Also write the results as JSON to PATH.")
    args = parser.parse_args(argv)

    policy = load_policy_set(args.policies).base
    web_held = web_held_policy(args.policies)
    single = single_requests(policy)
    long_request = long_request_timing(policy)
    sessions = {**scripted_sessions(policy, web_held), **generated_sessions(policy, web_held)}
    print_report(single, long_request, sessions)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"single_requests": single, "long_request": long_request,
                   "sessions": {name: {"requests": count, "scenarios": rows} for name, (rows, count) in sessions.items()}}
        path.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
