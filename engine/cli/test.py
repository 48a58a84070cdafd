"""`leangate test`: run a policy folder's test cases and report one line per case.

A case file is YAML in `<policy folder>/<tests>/` (the policy's `tests:` key, `tests` by default):

    cases:
      - name: explain-retry-loop          # unique within the file
        request: requests/explain.json    # relative to the case file; an Anthropic Messages body,
                                          # or an OpenAI Chat body with `protocol: openai-chat`
        team: default                     # optional: the team policy to apply
        headers: {user-agent: claude-cli/1.0.123}   # optional request headers
        expect:
          class: explain                  # the request class
          kept: [Read, Grep]              # tools that must be forwarded
          removed: [Bash, Edit]           # tools that must be removed
          next_call: [Grep]               # tools the agent calls next: each must be forwarded

Case keys are fixed (unknown keys are errors). `expect` also accepts keys that other stages check
(`tier`, `compression`, ...): each key needs an entry in `EXPECTATION_CHECKERS`, and a key without one
is listed as unchecked, never passed silently. Cases of one run share tool-session memory, so cases
with the same session header, in file order, show how a session's kept set grows.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.pipeline.context import RequestContext, session_id_from_headers
from engine.policy.errors import PolicyError
from engine.policy.loader import PolicySet, load_policy_set
from engine.policy.yaml_source import format_key_path, read_policy_file
from engine.stages.tools.select import select_tools
from engine.stages.tools.sessions import ToolSessions

DESCRIPTION = (
    "Run the policy test cases in DIR/tests/*.yaml (DIR defaults to policies/): each case sends a request "
    "file through the policy and checks the expected class and the kept and removed tools. "
    "Exits 1 when a case fails or the policy is invalid."
)


class Expectations(BaseModel):
    """What a case expects. Tool selection checks the named keys; other stages add their own keys."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    class_: str | None = Field(None, alias="class", description="The expected request class.")
    kept: list[str] = Field(default_factory=list, description="Tools that must be forwarded.")
    removed: list[str] = Field(default_factory=list, description="Tools that must be removed.")
    next_call: list[str] = Field(
        default_factory=list,
        description="Tools the agent calls next in the recorded conversation; each must be forwarded.",
    )


class PolicyTestCase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str | None = None
    request: str = Field(description="Request file (JSON), relative to the case file.")
    protocol: Literal["anthropic", "openai-chat"] = "anthropic"
    team: str = "default"
    headers: dict[str, str] = Field(default_factory=dict)
    expect: Expectations = Field(default_factory=Expectations)


class PolicyTestFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cases: list[PolicyTestCase] = Field(min_length=1)


@dataclass
class CaseRun:
    """A case after its request went through the stages: the context and the decision record."""

    case: PolicyTestCase
    original_tools: list[str]
    ctx: RequestContext


@dataclass
class CaseResult:
    label: str
    failures: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    summary: str = ""

    @property
    def passed(self) -> bool:
        return not self.failures


def _check_class(expected: Any, run: CaseRun) -> list[str]:
    actual = run.ctx.record["tools"]["class"]
    return [] if actual == expected else [f"class: expected {expected!r}, got {actual!r}"]


def _check_tool_list(key: str, must_be_kept: bool) -> Callable[[Any, CaseRun], list[str]]:
    def check(expected: Any, run: CaseRun) -> list[str]:
        kept = set(run.ctx.record["tools"]["kept"])
        failures = []
        for name in expected:
            if name not in run.original_tools:
                failures.append(f"{key}: the request offers no tool {name!r}")
            elif must_be_kept and name not in kept:
                failures.append(f"{key}: {name!r} was removed")
            elif not must_be_kept and name in kept:
                failures.append(f"{key}: {name!r} was kept")
        return failures

    return check


# expect key -> function(expected value, run) returning failure messages. A stage that records its
# decision in `run.ctx.record` adds its keys here (e.g. `tier`, `compression`).
EXPECTATION_CHECKERS: dict[str, Callable[[Any, CaseRun], list[str]]] = {
    "class": _check_class,
    "kept": _check_tool_list("kept", must_be_kept=True),
    "removed": _check_tool_list("removed", must_be_kept=False),
    "next_call": _check_tool_list("next_call", must_be_kept=True),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", nargs="?", default="policies", metavar="DIR",
                        help="Policy folder with default.yaml and a tests/ folder (default: policies).")
    parser.add_argument("-k", "--match", metavar="TEXT", default=None,
                        help="Run only the cases whose `file::name` label contains TEXT.")


def run(args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    try:
        policy_set = load_policy_set(directory)
    except PolicyError as error:
        print(f"error: the policy in {directory} is invalid:")
        for issue in error.issues:
            print(f"  {issue}")
        return 1

    tests_dir = directory / (policy_set.base.tests or "tests")
    case_files = sorted(tests_dir.glob("*.yaml")) if tests_dir.is_dir() else []
    if not case_files:
        print(f"error: no test case files (*.yaml) found in {tests_dir}")
        return 1

    sessions = ToolSessions()
    results: list[CaseResult] = []
    for path in case_files:
        results.extend(run_case_file(path, policy_set, sessions, args.match))

    if not results:
        print(f"error: no test case in {tests_dir} matches {args.match!r}")
        return 1
    for result in results:
        print(format_result(result))
    passed = sum(result.passed for result in results)
    failed = len(results) - passed
    unchecked = sorted({key for result in results for key in result.unchecked})
    summary = f"{passed} passed, {failed} failed"
    if unchecked:
        summary += f"; expectations without a checker, not verified: {', '.join(unchecked)}"
    print(summary)
    return 1 if failed else 0


def format_result(result: CaseResult) -> str:
    status = "PASS" if result.passed else "FAIL"
    line = f"{status} {result.label}"
    if result.summary:
        line += f"  {result.summary}"
    if result.unchecked:
        line += f"  (unchecked: {', '.join(result.unchecked)})"
    for failure in result.failures:
        line += f"\n     - {failure}"
    return line


def run_case_file(path: Path, policy_set: PolicySet, sessions: ToolSessions, match: str | None = None) -> list[CaseResult]:
    """Run every case of one file; a file that cannot be read or validated is one failed result."""
    try:
        document = read_policy_file(path)
    except PolicyError as error:
        return [CaseResult(path.name, failures=[str(issue) for issue in error.issues])]
    try:
        case_file = PolicyTestFile.model_validate(document.data)
    except ValidationError as error:
        failures = []
        for detail in error.errors(include_url=False):
            loc = tuple(part for part in detail["loc"] if isinstance(part, (str, int)))
            position = _nearest_position(document.positions, loc)
            where = f"{position.file}:{position.line}:{position.column}" if position else path.name
            failures.append(f"{where}: {format_key_path(loc)}: {detail['msg']}")
        return [CaseResult(path.name, failures=failures)]

    results = []
    seen: set[str] = set()
    for case in case_file.cases:
        label = f"{path.name}::{case.name}"
        if match and match not in label:
            continue
        if case.name in seen:
            results.append(CaseResult(label, failures=[f"duplicate case name {case.name!r} in {path.name}"]))
            continue
        seen.add(case.name)
        results.append(run_case(case, path.parent, label, policy_set, sessions))
    return results


def _nearest_position(positions: dict, loc: tuple) -> Any:
    for length in range(len(loc), -1, -1):
        position = positions.get(tuple(loc[:length]))
        if position is not None:
            return position
    return None


def run_case(case: PolicyTestCase, base_dir: Path, label: str, policy_set: PolicySet, sessions: ToolSessions) -> CaseResult:
    result = CaseResult(label)
    if case.team != "default" and case.team not in policy_set.teams:
        result.failures.append(f"team {case.team!r} has no policy file in teams/")
        return result
    policy = policy_set.for_team(case.team)

    try:
        body = load_request(base_dir / case.request, case.protocol)
    except RequestFileError as error:
        result.failures.append(str(error))
        return result

    headers = {name.lower(): value for name, value in case.headers.items()}
    ctx = RequestContext(
        request_id=f"test:{label}",
        protocol="openai-chat" if case.protocol == "openai-chat" else "anthropic",
        body=body,
        headers=headers,
        team=case.team,
        session_id=session_id_from_headers(headers, policy.sessions.header),
        requested_model=body.get("model") if isinstance(body.get("model"), str) else "",
    )
    original = body.get("tools") if isinstance(body.get("tools"), list) else []
    original_names = [tool["name"] for tool in original if isinstance(tool, dict) and isinstance(tool.get("name"), str)]
    ctx.record["tools"] = select_tools(ctx, policy, sessions)
    run = CaseRun(case, original_names, ctx)

    decision = ctx.record["tools"]
    result.summary = (
        f"class={decision['class']} kept {len(decision['kept'])}/{len(original)} tools, "
        f"tool tokens {decision['tokens_before']} -> {decision['tokens_after']}"
    )
    expectations = case.expect.model_dump(by_alias=True, exclude_unset=True)
    for key, expected in expectations.items():
        checker = EXPECTATION_CHECKERS.get(key)
        if checker is None:
            result.unchecked.append(key)
            continue
        result.failures.extend(checker(expected, run))
    if not expectations:
        result.failures.append("the case expects nothing; add at least `class` under `expect`")
    return result


class RequestFileError(Exception):
    """Raised when a case's request file is missing, is not JSON, or is not a request body."""


def load_request(path: Path, protocol: str) -> dict[str, Any]:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RequestFileError(f"request file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RequestFileError(f"request file {path} cannot be read: {error}") from None
    except json.JSONDecodeError as error:
        raise RequestFileError(f"request file {path} is not valid JSON: line {error.lineno} column {error.colno}: {error.msg}") from None
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        raise RequestFileError(f"request file {path} is not a request body: expected a JSON object with a `messages` list")
    if protocol == "openai-chat":
        return _chat_to_canonical(body, path)
    return body


def _chat_to_canonical(body: dict[str, Any], path: Path) -> dict[str, Any]:
    from engine.protocol.errors import ProtocolError
    from engine.protocol.openai_chat import chat_request_to_canonical

    try:
        canonical, _ = chat_request_to_canonical(body)
    except ProtocolError as error:
        raise RequestFileError(f"request file {path} is not a valid OpenAI Chat request: {error}") from None
    return canonical
