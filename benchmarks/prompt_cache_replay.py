"""Measure what provider prompt caching saves when leangate forwards agent sessions to Anthropic.

Run from the repository root:

    python benchmarks/prompt_cache_replay.py [--sessions 3] [--requests 24] [--json benchmarks/out/prompt_cache_replay.json]

For every client format and prompt-caching mode, the script starts a fresh
`leangate stub-upstream --prompt-cache`, which simulates the Anthropic caching rules of
`engine.stub.prompt_cache`, and a `leangate serve` on a copy of the shipped policies. It then replays
generated Claude Code sessions (`benchmarks/sessions.py`: Claude Code's system prompt and 16 tools,
a history that grows by a tool call and its result on every request) over HTTP on loopback. Each
configuration gets its own stub, so no configuration reads prefixes that another one wrote; the
sessions of one configuration share the tool list and system prompt, as one team's sessions do.

Billed input is read from the decision log (the upstream's usage, in Anthropic's split into
uncached input, cache writes and cache reads) and priced at Anthropic list prices for Claude
Sonnet 4.5. The requests name `leangate-strong`, so every request goes to the strong tier
(`claude-sonnet-4-5`) and tier routing does not mix models into the comparison.

Token counts are the stub's cl100k estimates (`engine.tokens`), not Anthropic's tokenizer, and the
output tokens are the stub's generated replies, the same in every configuration.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.sessions import MIXED_PROMPTS, agent_session, anthropic_request, chat_request, responses_request  # noqa: E402
from engine.localrun import start_gateway, start_stub  # noqa: E402

# Anthropic list prices for Claude Sonnet 4.5 in dollars per million tokens: $3 input and $15 output
# as listed on Anthropic's Sonnet 4.5 model page, read 2026-12-04. That page gives 2026-11-30 as the
# model's retirement date. A 5-minute cache write costs 1.25x input and a cache read 0.1x.
PRICE_DATE = "2026-12-04"
PRICES = {"input": 3.00, "cache_write": 3.75, "cache_read": 0.30, "output": 15.00}
MODEL = "leangate-strong"
TEAM = "prompt-cache-bench"
PATHS = {"anthropic": "/v1/messages", "openai-chat": "/v1/chat/completions", "openai-responses": "/v1/responses"}


@dataclass(frozen=True)
class Configuration:
    client: str  # a key of CLIENTS
    mode: str  # preserve, inject or off


# client name -> (protocol, request renderer, session header name)
CLIENTS: dict[str, tuple[str, Any, str]] = {
    "anthropic (Claude Code markers)": ("anthropic", anthropic_request, "x-claude-code-session-id"),
    "anthropic (no markers)": (
        "anthropic",
        lambda session, index, model: anthropic_request(session, index, model, claude_code_markers=False),
        "x-claude-code-session-id",
    ),
    "openai-chat": ("openai-chat", chat_request, "session_id"),
    "openai-responses": ("openai-responses", responses_request, "session_id"),
}

CONFIGURATIONS = [
    Configuration("anthropic (Claude Code markers)", "preserve"),
    Configuration("anthropic (Claude Code markers)", "inject"),
    Configuration("anthropic (Claude Code markers)", "off"),
    Configuration("anthropic (no markers)", "preserve"),
    Configuration("anthropic (no markers)", "inject"),
    Configuration("openai-chat", "inject"),
    Configuration("openai-chat", "off"),
    Configuration("openai-responses", "inject"),
    Configuration("openai-responses", "off"),
]


def write_team(policy_dir: Path, mode: str) -> None:
    teams = policy_dir / "teams"
    teams.mkdir(exist_ok=True)
    (teams / f"{TEAM}.yaml").write_text(f"extends: default\nprompt_caching:\n  default: {{mode: {mode}}}\n", encoding="utf-8")


def replay_configuration(config: Configuration, sessions: int, requests: int, workdir: Path) -> dict[str, Any]:
    protocol, render, session_header = CLIENTS[config.client]
    stub = start_stub(workdir / "stub", "--prompt-cache")
    gateway = None
    try:
        policy_dir = workdir / "policies"
        shutil.copytree(ROOT / "policies", policy_dir, ignore=shutil.ignore_patterns("teams"))
        write_team(policy_dir, config.mode)
        gateway = start_gateway(workdir / "gateway", policy_dir, stub.url)
        request_ids: list[str] = []
        latencies: list[float] = []
        with httpx.Client(base_url=gateway.url, timeout=60.0) as client:
            for seed in range(sessions):
                session = agent_session(requests, seed=seed, prompts=MIXED_PROMPTS)
                headers = {session_header: session.session_id, "x-leangate-team": TEAM, "content-type": "application/json"}
                for index in range(requests):
                    body = orjson.dumps(render(session, index, MODEL))
                    started = time.perf_counter()
                    response = client.post(PATHS[protocol], content=body, headers=headers)
                    latencies.append((time.perf_counter() - started) * 1000)
                    if response.status_code != 200:
                        raise RuntimeError(f"{config}: request {index} of session {seed} failed with {response.status_code}: {response.text[:300]}")
                    request_ids.append(response.headers["x-leangate-request-id"])
        records = read_decisions(workdir / "gateway" / "decisions.jsonl", request_ids)
    finally:
        if gateway is not None:
            gateway.stop()
        stub.stop()
    return summarise(config, records, latencies)


def read_decisions(path: Path, request_ids: list[str], timeout: float = 15.0) -> list[dict[str, Any]]:
    wanted = set(request_ids)
    deadline = time.monotonic() + timeout
    while True:
        found = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    record = json.loads(line)
                    if record.get("request_id") in wanted:
                        found[record["request_id"]] = record
        if len(found) == len(wanted):
            return [found[request_id] for request_id in request_ids]
        if time.monotonic() > deadline:
            raise RuntimeError(f"the decision log {path} has {len(found)} of {len(wanted)} records")
        time.sleep(0.1)


def summarise(config: Configuration, records: list[dict[str, Any]], latencies: list[float]) -> dict[str, Any]:
    totals = {"uncached": 0, "cache_write": 0, "cache_read": 0, "output": 0}
    for record in records:
        usage = record.get("usage") or {}
        totals["uncached"] += usage.get("input_tokens", 0)
        totals["cache_write"] += usage.get("cache_creation_input_tokens", 0)
        totals["cache_read"] += usage.get("cache_read_input_tokens", 0)
        totals["output"] += usage.get("output_tokens", 0)
    input_cost = (totals["uncached"] * PRICES["input"] + totals["cache_write"] * PRICES["cache_write"]
                  + totals["cache_read"] * PRICES["cache_read"]) / 1e6
    output_cost = totals["output"] * PRICES["output"] / 1e6
    billed_input = totals["uncached"] + totals["cache_write"] + totals["cache_read"]
    breakpoints_added = [len((record.get("prompt_cache") or {}).get("added") or []) for record in records]
    return {
        "client": config.client,
        "mode": config.mode,
        "requests": len(records),
        "input_tokens": billed_input,
        **totals,
        "cache_read_share": round(totals["cache_read"] / billed_input, 4) if billed_input else 0.0,
        "input_cost_usd": round(input_cost, 4),
        "output_cost_usd": round(output_cost, 4),
        "total_cost_usd": round(input_cost + output_cost, 4),
        "median_breakpoints_added": statistics.median(breakpoints_added) if breakpoints_added else 0,
        "median_latency_ms": round(statistics.median(latencies), 2),
    }


def print_table(results: list[dict[str, Any]]) -> None:
    header = f"{'client':33} {'mode':8} {'input':>9} {'uncached':>9} {'write':>8} {'read':>9} {'read%':>6} {'input $':>8} {'total $':>8} {'vs off':>7}"
    print(header)
    print("-" * len(header))
    baseline = {result["client"]: result["total_cost_usd"] for result in results if result["mode"] == "off"}
    for result in results:
        base = baseline.get(result["client"]) or baseline.get("anthropic (Claude Code markers)")
        change = f"{(result['total_cost_usd'] / base - 1) * 100:+.0f}%" if base else ""
        print(f"{result['client']:33} {result['mode']:8} {result['input_tokens']:>9} {result['uncached']:>9} "
              f"{result['cache_write']:>8} {result['cache_read']:>9} {result['cache_read_share'] * 100:>5.1f}% "
              f"{result['input_cost_usd']:>8.3f} {result['total_cost_usd']:>8.3f} {change:>7}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=3, help="Sessions replayed per configuration. Default: 3.")
    parser.add_argument("--requests", type=int, default=24, help="Requests per session (at least 20 for the docs). Default: 24.")
    parser.add_argument("--json", type=Path, help="Also write the results to this JSON file.")
    args = parser.parse_args()
    if args.sessions < 1 or args.requests < 1:
        parser.error("--sessions and --requests must be at least 1")

    results = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="prompt-cache-bench-") as scratch:
        for number, config in enumerate(CONFIGURATIONS):
            print(f"[{number + 1}/{len(CONFIGURATIONS)}] {config.client}, mode {config.mode}", file=sys.stderr)
            results.append(replay_configuration(config, args.sessions, args.requests, Path(scratch) / f"run{number}"))
    print_table(results)
    print(f"\n{args.sessions} sessions x {args.requests} requests per row; prices of {PRICE_DATE} in $/MTok: {PRICES}; "
          f"{time.perf_counter() - started:.0f}s on {platform.machine()} {platform.python_version()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"sessions": args.sessions, "requests": args.requests, "prices": PRICES, "price_date": PRICE_DATE,
                   "results": results}
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
