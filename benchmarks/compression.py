"""Measure the compression stage on generated tool results: tokens before and after, and stage time.

Run from the repository root:

    python benchmarks/compression.py            # prints Markdown tables
    python benchmarks/compression.py --runs 21  # more timing runs

Cases (all data generated deterministically from fixed seeds):
- grep: 60 search matches `{file, line, match, context}` from a Grep tool call;
- manifest: a package.json-style manifest of about 3 KB, read from a file;
- large: a JSON result of about 1 MB (a flat table of file records), read from a file;
- plain: a Claude Code request of about 60 KB whose tool results are numbered source lines (Read
  output in `cat -n` format), not JSON;
- replayed session: the last request of the 30-request Claude Code session that `leangate bench`
  replays (benchmarks/sessions.py, seed 9), with tokens per tool under the default policy.

Each JSON case is measured with its compact and its pretty-printed (indent 2) text as the original,
under the default policy (lossless) and under presets/lossy-search.yaml. Token counts are cl100k
estimates (engine.tokens). Times are medians of per-run wall clock for one `compress` call.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.sessions import MIXED_PROMPTS, agent_session, anthropic_request  # noqa: E402
from engine.pipeline.context import RequestContext  # noqa: E402
from engine.policy.loader import load_policy_set  # noqa: E402
from engine.stages.compress.policy import CompressionTarget  # noqa: E402
from engine.stages.compress.stage import RESULT_CACHE, compress  # noqa: E402
from engine.tokens import count_text  # noqa: E402

SHARED_DATA = ROOT / "tests" / "data" / "compress"

_MODULES = [
    "engine/pipeline/run.py",
    "engine/pipeline/context.py",
    "engine/http/routes.py",
    "engine/http/errors.py",
    "engine/providers/anthropic.py",
    "engine/providers/openai.py",
    "engine/stages/tools/select.py",
    "engine/stages/cache/lookup.py",
    "engine/stages/tier/sessions.py",
    "engine/policy/loader.py",
    "tests/test_pipeline_run.py",
    "tests/test_tier_sessions.py",
]
_MATCH_LINES = [
    '    session_id = headers.get("x-claude-code-session-id")',
    "def sticky_tier(store: SessionStore, session_id: str | None) -> str | None:",
    "        if session_id is None:",
    '    record["session_id"] = ctx.session_id',
    '        log.info("tier stepped down", extra={"session_id": session_id, "tier": tier.name})',
    '    assert ctx.session_id == "sess-42"',
    "    session_id: str | None = None",
    "        key = (ctx.team, ctx.session_id, policy.version)",
    "    sessions.touch(session_id, now=clock())",
    "            return self._tiers.get(session_id)",
]
_CONTEXT_LINES = [
    "    policy = store.snapshot()",
    "    return decision",
    "",
    "    # keep the cached prefix stable",
    '    ctx.scratch["tier"] = tier',
    "    started = time.perf_counter()",
    "        continue",
    "    headers = dict(request.headers)",
    "    if not policy.tier_session.sticky:",
    "        raise KeyError(name)",
    "    now = clock()",
    "    entry = self._entries.pop(key, None)",
    "",
    "",
]


def grep_matches(seed: int = 1204) -> list[dict[str, Any]]:
    """60 matches of `session_id` in 12 files, 5 each, with two lines of context either side."""
    rng = random.Random(seed)
    matches = []
    for module in _MODULES:
        line = rng.randint(10, 40)
        for _ in range(5):
            line += rng.randint(3, 40)
            matches.append(
                {
                    "file": module,
                    "line": line,
                    "match": rng.choice(_MATCH_LINES),
                    "context": {
                        "before": [rng.choice(_CONTEXT_LINES) for _ in range(2)],
                        "after": [rng.choice(_CONTEXT_LINES) for _ in range(2)],
                    },
                }
            )
    return matches


def package_manifest(seed: int = 7) -> dict[str, Any]:
    """A package.json of about 3 KB: scripts, dependencies and devDependencies with version ranges."""
    rng = random.Random(seed)
    names = [
        "react", "react-dom", "next", "zod", "axios", "date-fns", "lodash", "clsx", "zustand", "swr",
        "@tanstack/react-query", "@radix-ui/react-dialog", "@radix-ui/react-popover", "tailwind-merge",
        "framer-motion", "i18next", "react-i18next", "uuid", "nanoid", "immer", "recharts", "dayjs",
        "@sentry/nextjs", "posthog-js", "stripe", "@stripe/stripe-js", "jose", "pino", "sharp", "yaml",
    ]
    dev_names = [
        "typescript", "eslint", "prettier", "vitest", "@types/react", "@types/node", "@vitejs/plugin-react",
        "vite", "tailwindcss", "postcss", "autoprefixer", "husky", "lint-staged", "@testing-library/react",
        "@testing-library/jest-dom", "jsdom", "eslint-config-next", "@playwright/test", "msw",
        "@storybook/react", "@storybook/nextjs", "storybook", "ts-node", "cross-env", "rimraf",
    ]

    def version() -> str:
        return f"^{rng.randint(0, 18)}.{rng.randint(0, 30)}.{rng.randint(0, 20)}"

    return {
        "name": "@acme/dashboard",
        "version": "2.14.3",
        "private": True,
        "description": "Internal dashboard for billing, usage and team administration.",
        "license": "UNLICENSED",
        "type": "module",
        "engines": {"node": ">=20.11", "pnpm": ">=9"},
        "scripts": {
            "dev": "next dev --turbo",
            "build": "next build",
            "start": "next start -p 3000",
            "lint": "eslint . --max-warnings 0",
            "format": "prettier --write .",
            "test": "vitest run",
            "test:watch": "vitest",
            "test:e2e": "playwright test",
            "typecheck": "tsc --noEmit",
            "prepare": "husky",
        },
        "dependencies": {name: version() for name in names},
        "devDependencies": {name: version() for name in dev_names},
        "lint-staged": {"*.{ts,tsx}": ["eslint --fix", "prettier --write"], "*.{json,md}": ["prettier --write"]},
        "browserslist": [">0.3%", "not dead", "not op_mini all"],
        "repository": {"type": "git", "url": "git+ssh://git@git.acme.internal/web/dashboard.git"},
        "keywords": ["dashboard", "billing", "usage", "admin", "nextjs"],
        "files": ["dist", "public", "README.md"],
        "pnpm": {"overrides": {"semver": "^7.6.3", "braces": "^3.0.3", "ws": "^8.18.0"}},
        "packageManager": "pnpm@9.12.1",
    }


def large_result(target_bytes: int = 1_000_000, seed: int = 99) -> dict[str, Any]:
    """About 1 MB of compact JSON: a flat table of file records, as a code-index tool returns."""
    rng = random.Random(seed)
    folders = ["src/components", "src/pages", "src/lib", "src/hooks", "tests/unit", "tests/e2e", "scripts"]
    languages = ["TypeScript", "TSX", "JavaScript", "JSON", "Markdown"]
    rows = []
    size = 0
    index = 0
    while size < target_bytes:
        folder = rng.choice(folders)
        row = {
            "path": f"{folder}/{rng.choice(['use', 'get', 'make', 'parse', 'render'])}{index:05d}.ts",
            "language": rng.choice(languages),
            "bytes": rng.randint(120, 48_000),
            "lines": rng.randint(5, 1400),
            "sha": f"{rng.getrandbits(160):040x}",
            "modified": f"2026-{rng.randint(1, 11):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z",
            "generated": rng.random() < 0.1,
        }
        rows.append(row)
        size += len(json.dumps(row, separators=(",", ":"))) + 1
        index += 1
    return {"repository": "acme/dashboard", "ref": "main", "total": len(rows), "files": rows}


def claude_code_request(tool_result_text: str, tool_name: str) -> dict[str, Any]:
    """A Claude Code request: real system prompt and tools, one tool call and its result."""
    system = json.loads((SHARED_DATA / "claude_code_1.0.123_system.json").read_text())
    tools = json.loads((SHARED_DATA / "claude_code_16tools.json").read_text())
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "system": [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}} for text in system["blocks"]],
        "tools": tools,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Where do we read the session id?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "I'll search for it."},
                    {"type": "tool_use", "id": "toolu_bench_1", "name": tool_name, "input": {"pattern": "session_id"}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_bench_1", "content": tool_result_text}],
            },
        ],
    }


def plain_request() -> dict[str, Any]:
    """About 64 KB: a Claude Code request with three Read results of numbered source lines (not JSON)."""
    body = claude_code_request("placeholder", "Read")
    source = "\n".join(f"{number:>6}\t{line}" for number, line in enumerate(_CONTEXT_LINES * 4, start=1))
    messages = body["messages"][:1]
    for turn in range(3):
        tool_id = f"toolu_read_{turn}"
        messages.append(
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": tool_id, "name": "Read", "input": {"file_path": f"/repo/m{turn}.py"}}],
            }
        )
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": source}]})
    body["messages"] = messages
    return body


def long_session_request(turns: int = 100) -> dict[str, Any]:
    """About 460 KB: the plain request plus `turns` tool rounds; every third is a JSON Grep result."""
    body = plain_request()
    source = tool_result_text(body)
    grep_result = json.dumps(grep_matches()[:20], indent=2)
    messages = body["messages"]
    for turn in range(turns):
        tool_id = f"toolu_turn_{turn}"
        tool = "Grep" if turn % 3 == 0 else "Read"
        messages.append(
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "Checking."}, {"type": "tool_use", "id": tool_id, "name": tool, "input": {"turn": turn}}],
            }
        )
        content = grep_result if tool == "Grep" else source
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": content}]})
    return body


def all_tool_result_tokens(body: dict[str, Any]) -> int:
    total = 0
    for message in body["messages"]:
        if isinstance(message["content"], list):
            for block in message["content"]:
                if block.get("type") == "tool_result":
                    total += count_text(block["content"])
    return total


class _TargetsOnly:
    """The part of a Policy that the stage reads, for the preset file (which is a bare list)."""

    def __init__(self, targets: list[CompressionTarget]):
        self.compression = targets


def load_policies() -> dict[str, Any]:
    default = load_policy_set(ROOT / "policies").base
    preset_data = YAML(typ="safe").load((ROOT / "policies" / "presets" / "lossy-search.yaml").read_text())
    preset = TypeAdapter(list[CompressionTarget]).validate_python(preset_data)
    return {"default (lossless)": default, "lossy-search preset": _TargetsOnly(preset)}


def tool_result_text(body: dict[str, Any]) -> str:
    return body["messages"][-1]["content"][0]["content"]


def run_stage(body: dict[str, Any], policy: Any, runs: int) -> tuple[list[dict], dict[str, Any], float, float]:
    """Return the decisions, the compressed body, and median milliseconds cold and warm (cached)."""
    cold, warm = [], []
    decisions: list[dict] = []
    result: dict[str, Any] = {}
    for _ in range(runs):
        RESULT_CACHE.clear()
        for times in (cold, warm):
            ctx = RequestContext(request_id="bench", protocol="anthropic", body=copy.deepcopy(body), headers={})
            started = time.perf_counter()
            decisions = compress(ctx, policy)
            times.append((time.perf_counter() - started) * 1000)
            result = ctx.body
    return decisions, result, statistics.median(cold), statistics.median(warm)


def describe_action(decisions: list[dict]) -> str:
    if not decisions:
        return "none"
    decision = decisions[0]
    if decision["applied"]:
        return decision["action"]
    return f"kept ({decision['action']} not smaller)"


def measure(runs: int) -> list[dict[str, Any]]:
    policies = load_policies()
    cases = [
        ("grep, 60 matches", "Grep", grep_matches()),
        ("package manifest", "Read", package_manifest()),
        ("1 MB JSON", "Read", large_result()),
    ]
    rows = []
    for case, tool, value in cases:
        for layout, text in (
            ("compact", json.dumps(value, separators=(",", ":"))),
            ("pretty", json.dumps(value, indent=2)),
        ):
            body = claude_code_request(text, tool)
            before = count_text(text)
            for policy_name, policy in policies.items():
                case_runs = max(3, runs // 4) if len(text) > 100_000 else runs
                decisions, result, cold_ms, warm_ms = run_stage(body, policy, case_runs)
                after = count_text(tool_result_text(result))
                rows.append(
                    {
                        "case": case,
                        "original": layout,
                        "bytes": len(text.encode()),
                        "policy": policy_name,
                        "action": describe_action(decisions),
                        "tokens_before": before,
                        "tokens_after": after,
                        "saved": 1 - after / before,
                        "cold_ms": cold_ms,
                        "warm_ms": warm_ms,
                    }
                )
    for case, layout, body in (
        ("Claude Code request, 3 Read results", "-", plain_request()),
        ("Claude Code session, 207 messages, 34 JSON results", "pretty", long_session_request()),
    ):
        before = all_tool_result_tokens(body)
        for policy_name, policy in policies.items():
            decisions, result, cold_ms, warm_ms = run_stage(body, policy, runs)
            after = all_tool_result_tokens(result)
            applied: dict[str, int] = {}
            for decision in decisions:
                if decision["applied"]:
                    applied[decision["action"]] = applied.get(decision["action"], 0) + 1
            rows.append(
                {
                    "case": case,
                    "original": layout,
                    "bytes": len(json.dumps(body).encode()),
                    "policy": policy_name,
                    "action": ", ".join(f"{count} {action}" for action, count in applied.items()) or "none",
                    "tokens_before": before,
                    "tokens_after": after,
                    "saved": 1 - after / before,
                    "cold_ms": cold_ms,
                    "warm_ms": warm_ms,
                }
            )
    return rows


def tool_result_tokens_by_tool(body: dict[str, Any]) -> dict[str, list[int]]:
    """Return [results, tokens] of the tool results in a body, by the name of the tool called."""
    names = {}
    totals: dict[str, list[int]] = {}
    for message in body["messages"]:
        if not isinstance(message["content"], list):
            continue
        for block in message["content"]:
            if block.get("type") == "tool_use":
                names[block["id"]] = block["name"]
            elif block.get("type") == "tool_result":
                content = block["content"]
                text = content if isinstance(content, str) else "".join(part.get("text", "") for part in content)
                entry = totals.setdefault(names.get(block["tool_use_id"], "?"), [0, 0])
                entry[0] += 1
                entry[1] += count_text(text)
    return totals


def measure_replayed_session(runs: int) -> list[dict[str, Any]]:
    """Tokens per tool and stage time on the last request of the replayed bench session.

    The last row runs the default policy without its line_numbers targets, for the stage time before
    that action existed.
    """
    session = agent_session(requests=30, seed=9, prompts=MIXED_PROMPTS)
    body = anthropic_request(session, 29, "claude-sonnet-4-5", max_tokens=32000)
    policy = load_policies()["default (lossless)"]
    without = _TargetsOnly([target for target in policy.compression
                            if not any(action.name == "line_numbers" for action in target.actions)])
    rows = []
    before = tool_result_tokens_by_tool(body)
    for policy_name, candidate in (("default", policy), ("default without line_numbers", without)):
        decisions, result, cold_ms, warm_ms = run_stage(body, candidate, runs)
        after = tool_result_tokens_by_tool(result)
        actions = sorted({decision["action"] for decision in decisions if decision["applied"]})
        tools = sorted(before, key=lambda name: -before[name][1]) if policy_name == "default" else []
        for tool in tools:
            rows.append(_session_row(tool, policy_name, before[tool][0], before[tool][1], after[tool][1]))
        total = _session_row("all", policy_name, sum(entry[0] for entry in before.values()),
                             sum(entry[1] for entry in before.values()), sum(entry[1] for entry in after.values()))
        total.update(action=", ".join(actions) or "none", cold_ms=cold_ms, warm_ms=warm_ms)
        rows.append(total)
    return rows


def _session_row(tool: str, policy_name: str, results: int, tokens_before: int, tokens_after: int) -> dict[str, Any]:
    return {
        "tool": tool,
        "policy": policy_name,
        "results": results,
        "tokens_before": tokens_before,
        "tokens_after": tokens_after,
        "saved": 1 - tokens_after / tokens_before,
        "action": "",
        "cold_ms": None,
        "warm_ms": None,
    }


def print_session_table(rows: list[dict[str, Any]]) -> None:
    print("| replayed session, last of 30 requests | policy | results | tokens before | tokens after | saved | "
          "action | stage ms, cold | stage ms, cached |")
    print("|---|---|---:|---:|---:|---:|---|---:|---:|")
    for row in rows:
        cold = "" if row["cold_ms"] is None else f"{row['cold_ms']:.3f}"
        warm = "" if row["warm_ms"] is None else f"{row['warm_ms']:.3f}"
        print(
            f"| {row['tool']} | {row['policy']} | {row['results']} | {row['tokens_before']:,} | {row['tokens_after']:,} | "
            f"{row['saved']:.1%} | {row['action']} | {cold} | {warm} |"
        )


def print_table(rows: list[dict[str, Any]]) -> None:
    print("| case | original | bytes | policy | action | tokens before | tokens after | saved | stage ms, cold | stage ms, cached |")
    print("|---|---|---:|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        tokens_before = "-" if row["tokens_before"] is None else f"{row['tokens_before']:,}"
        tokens_after = "-" if row["tokens_after"] is None else f"{row['tokens_after']:,}"
        saved = "-" if row["saved"] is None else f"{row['saved']:.1%}"
        print(
            f"| {row['case']} | {row['original']} | {row['bytes']:,} | {row['policy']} | {row['action']} | "
            f"{tokens_before} | {tokens_after} | {saved} | {row['cold_ms']:.3f} | {row['warm_ms']:.3f} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11, help="Timing runs per case (default 11); the median is reported.")
    parser.add_argument("--show", choices=["grep"], help="Print the lossy-search output of a case and exit.")
    args = parser.parse_args()
    if args.show == "grep":
        policy = load_policies()["lossy-search preset"]
        body = claude_code_request(json.dumps(grep_matches(), separators=(",", ":")), "Grep")
        _decisions, result, _cold, _warm = run_stage(body, policy, 1)
        print(tool_result_text(result))
        return 0
    print_table(measure(args.runs))
    print()
    print_session_table(measure_replayed_session(args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
