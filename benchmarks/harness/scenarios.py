"""The request scenarios of `leangate bench`, as Anthropic Messages bodies with their headers.

Every gateway gets the same bytes. Single requests come from `examples/requests/` where one fits.
The others are built here from Claude Code's system prompt and 16 tools (`tests/data/`), and the
session replay comes from `benchmarks.sessions`.
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.sessions import MIXED_PROMPTS, agent_session, anthropic_request, load_claude_code

REPOSITORY = Path(__file__).resolve().parents[2]
EXAMPLES = REPOSITORY / "examples" / "requests"

# The model that Claude Code requests by default. The gateways may route elsewhere.
CLIENT_MODEL = "claude-sonnet-4-5"
SESSION_REQUESTS = 30


@dataclass(frozen=True)
class BenchRequest:
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    requests: list[BenchRequest]


def _example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def _claude_code_body(messages: list[dict[str, Any]], max_tokens: int = 32000) -> dict[str, Any]:
    """Wrap `messages` the way Claude Code sends them: its system prompt, its 16 tools, and
    `cache_control` on the last system block and on the last block of the last message."""
    system_texts, tools = load_claude_code()
    system = [{"type": "text", "text": text} for text in system_texts]
    system[-1]["cache_control"] = {"type": "ephemeral"}
    messages = copy.deepcopy(messages)
    messages[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
    return {"model": CLIENT_MODEL, "max_tokens": max_tokens, "system": system, "tools": tools, "messages": messages}


def _text(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": [{"type": "text", "text": text}]}


def _tool_round(call_id: str, name: str, tool_input: dict[str, Any], result: str,
                note: str | None = None) -> list[dict[str, Any]]:
    assistant: list[dict[str, Any]] = [{"type": "text", "text": note}] if note else []
    assistant.append({"type": "tool_use", "id": call_id, "name": name, "input": tool_input})
    return [
        {"role": "assistant", "content": assistant},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": result}]},
    ]


def refactoring_conversation() -> dict[str, Any]:
    """Build a 9-message conversation: a refactoring request, three tool rounds, a reply and a follow-up."""
    rng = random.Random(4)
    source = "\n".join(
        f"{number:>6}\t{line}" for number, line in enumerate(_python_lines(rng, 90), start=1))
    hits = "\n".join(f"src/shop/{name}.py:{rng.randint(5, 300)}:    fields = parse_line(raw_line)"
                     for name in ("importer", "orders", "invoice", "batch", "cli", "sync"))
    messages = [
        _text("user", "Refactor parse_line in src/shop/importer.py: split it into parse_header and parse_row, "
                      "and keep the public behaviour unchanged."),
        *_tool_round("toolu_01RefactorRead", "Read", {"file_path": "/home/dev/shop/src/shop/importer.py"}, source,
                     "I'll read the importer first."),
        *_tool_round("toolu_01RefactorGrep", "Grep", {"pattern": "parse_line\\(", "output_mode": "content", "-n": True},
                     hits),
        *_tool_round("toolu_01RefactorEdit", "Edit",
                     {"file_path": "/home/dev/shop/src/shop/importer.py", "old_string": "def parse_line(raw_line):",
                      "new_string": "def parse_header(raw_line):"},
                     "The file /home/dev/shop/src/shop/importer.py has been updated."),
        _text("assistant", "I split parse_line into parse_header and parse_row and kept parse_line as a thin "
                           "wrapper for the six callers. Should I also update the tests?"),
        _text("user", "Yes, update tests/test_importer.py for the two new functions and run the tests."),
    ]
    return _claude_code_body(messages)


def _python_lines(rng: random.Random, count: int) -> list[str]:
    words = ("row", "header", "field", "value", "record", "line", "column", "batch", "schema", "index")
    lines: list[str] = []
    while len(lines) < count:
        lines.append(f"def {rng.choice(words)}_{rng.choice(words)}({rng.choice(words)}, strict=False):")
        for _ in range(rng.randint(2, 6)):
            lines.append(f"    {rng.choice(words)} = {rng.choice(words)}.split(',')[{rng.randint(0, 9)}].strip()")
        lines.append(f"    return {rng.choice(words)}")
        lines.append("")
    return lines[:count]


def package_manifest() -> str:
    """Return a package.json of about 3 KB, pretty-printed as `cat` shows it."""
    rng = random.Random(5)
    names = ("react", "react-dom", "next", "zod", "axios", "lodash", "date-fns", "clsx", "swr", "immer",
             "zustand", "uuid", "dayjs", "classnames", "nanoid", "slugify", "mime-types", "i18next", "react-i18next", "framer-motion",
             "@tanstack/react-query", "@radix-ui/react-dialog", "@radix-ui/react-popover", "tailwind-merge",
             "react-hook-form", "recharts", "sharp", "pino", "jose")
    dev_names = ("typescript", "eslint", "prettier", "vitest", "@types/react", "@types/node", "playwright",
                 "eslint-config-next", "@testing-library/react", "@testing-library/jest-dom", "tailwindcss",
                 "postcss", "autoprefixer", "husky", "lint-staged", "tsx", "msw", "jsdom")
    manifest = {
        "name": "@acme/storefront",
        "version": "4.12.0",
        "private": True,
        "description": "Customer-facing storefront of the ACME shop: catalogue, cart and checkout.",
        "license": "UNLICENSED",
        "engines": {"node": ">=20.11", "pnpm": ">=9"},
        "packageManager": "pnpm@9.12.3",
        "scripts": {
            "dev": "next dev --turbo", "build": "next build", "start": "next start -p 3000",
            "lint": "eslint . --max-warnings=0", "format": "prettier --write .", "typecheck": "tsc --noEmit",
            "test": "vitest run", "test:watch": "vitest", "e2e": "playwright test",
            "prepare": "husky", "analyze": "ANALYZE=true next build",
        },
        "dependencies": {name: f"^{rng.randint(1, 19)}.{rng.randint(0, 30)}.{rng.randint(0, 12)}" for name in names},
        "devDependencies": {name: f"^{rng.randint(1, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}" for name in dev_names},
        "lint-staged": {"*.{ts,tsx}": ["eslint --fix", "prettier --write"], "*.{json,md,css}": ["prettier --write"]},
        "browserslist": ["> 0.5%", "last 2 versions", "not dead"],
        "repository": {"type": "git", "url": "git@git.acme.internal:web/storefront.git"},
        "keywords": ["storefront", "checkout", "cart", "catalogue", "nextjs"],
        "pnpm": {"overrides": {"semver": "^7.6.3", "postcss": "^8.4.47", "cross-spawn": "^7.0.5"},
                 "onlyBuiltDependencies": ["sharp", "esbuild"]},
        "vitest": {"environment": "jsdom", "coverage": {"provider": "v8", "reporter": ["text", "lcov"],
                                                        "thresholds": {"lines": 80, "branches": 70}}},
    }
    return json.dumps(manifest, indent=2)


def grep_matches(count: int = 60) -> str:
    """`count` grep matches as a JSON array of {file, line, match, context} objects."""
    rng = random.Random(6)
    files = ("src/cart/checkout.py", "src/cart/totals.py", "src/payments/stripe_client.py", "src/orders/models.py",
             "src/orders/service.py", "src/api/routes/cart.py", "tests/test_checkout.py", "tests/test_totals.py")
    matches = []
    for index in range(count):
        matches.append({
            "file": rng.choice(files),
            "line": rng.randint(5, 480),
            "match": f"    total = compute_total(cart, currency, discounts[{index}])",
            "context": f"def apply_step_{index}(cart, currency, discounts):",
        })
    return json.dumps(matches, indent=2)


def _tool_result_request(prompt: str, call_id: str, name: str, tool_input: dict[str, Any], result: str) -> dict[str, Any]:
    messages = [_text("user", prompt), *_tool_round(call_id, name, tool_input, result)]
    return _claude_code_body(messages)


def session_requests(count: int = SESSION_REQUESTS, seed: int = 9) -> list[BenchRequest]:
    """Build a replayed Claude Code session: `count` requests with a growing history and one session id."""
    session = agent_session(requests=count, seed=seed, prompts=MIXED_PROMPTS)
    headers = {"x-claude-code-session-id": str(uuid.UUID(int=random.Random(seed).getrandbits(128)))}
    return [BenchRequest(anthropic_request(session, index, CLIENT_MODEL, max_tokens=32000), headers)
            for index in range(count)]


def build_scenarios(session_length: int = SESSION_REQUESTS) -> list[Scenario]:
    """Return the nine scenarios in order; `session_length` shortens the replayed session."""
    single = BenchRequest
    return [
        Scenario("short", "short question, no tools", [single(_example("01-short-question.anthropic.json"))]),
        Scenario("read-only", "read-only question, 16 Claude Code tools",
                 [single(_example("02-read-only-question.anthropic.json"))]),
        Scenario("edit", "edit task, 16 Claude Code tools", [single(_example("03-edit-task.anthropic.json"))]),
        Scenario("refactor-9", "9-message refactoring conversation", [single(refactoring_conversation())]),
        Scenario("manifest", "tool result: package.json of about 3 KB", [single(_tool_result_request(
            "Which of our dependencies are out of date? Check package.json.", "toolu_01CatManifest", "Bash",
            {"command": "cat package.json", "description": "Show the package manifest"}, package_manifest()))]),
        Scenario("grep-60", "tool result: 60 grep matches as JSON", [single(_tool_result_request(
            "Find every call site of compute_total.", "toolu_01GrepSixty", "Grep",
            {"pattern": "compute_total\\(", "output_mode": "content"}, grep_matches()))]),
        Scenario("cache-pair", "question, then a paraphrase", [
            single(_short_question("How do I remove duplicates from a list in Python and keep the original order?")),
            single(_short_question("In Python, how do I remove duplicates from a list while keeping the original order?")),
        ]),
        Scenario("hard", "hard reasoning prompt", [single(_example("08-hard-design.anthropic.json"))]),
        Scenario("session", f"replayed Claude Code session, {session_length} requests", session_requests(session_length)),
    ]


def _short_question(text: str) -> dict[str, Any]:
    return {"model": CLIENT_MODEL, "max_tokens": 1024, "messages": [{"role": "user", "content": text}]}


# (label, streamed, unique text per request, `Cache-Control: no-cache`). A unique text is leangate's
# worst case: it embeds every new last user text once, for the cache lookup and the tier model. A
# repeated text with the cache bypassed measures the forwarding path with every stage, the embedding
# served from the memo. A repeated text with the cache on measures leangate's response cache.
LOAD_RUNS = (
    ("non-stream", False, True, False),
    ("stream", True, True, False),
    ("non-stream, repeated text, cache bypassed", False, False, True),
    ("non-stream, repeated text", False, False, False),
)
UNIQUE_RUN = LOAD_RUNS[0][0]
FORWARDING_RUN = LOAD_RUNS[2][0]


def load_request(stream: bool, unique: bool = True, run: str = "") -> dict[str, Any]:
    """Return the body of the throughput test: a short question.

    With `unique` the load client makes its text unique per request by replacing `{n}`, and `run`
    keeps it unique across load runs, so that no response cache or embedding memo can serve it.
    Without `unique`, every request is the same."""
    text = "What is the syntax for a dict comprehension in Python?"
    if unique:
        text += f" (load run {run}, request {{n}})"
    return {"model": CLIENT_MODEL, "max_tokens": 256, "stream": stream, "messages": [{"role": "user", "content": text}]}
