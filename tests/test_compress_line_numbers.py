"""The line_numbers action: which texts count as `cat -n` listings, what it rewrites, and that it
loses nothing (padding the numbers again gives back the original bytes)."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from benchmarks.sessions import agent_session
from engine.pipeline.context import RequestContext
from engine.policy.errors import PolicyError
from engine.policy.loader import load_policy_set
from engine.stages.compress.line_numbers import listing_lines, may_start_listing, restore_gutters, strip_gutters
from engine.stages.compress.policy import CompressionTarget
from engine.stages.compress.stage import RESULT_CACHE, compress
from engine.tokens import count_text

ROOT = Path(__file__).resolve().parent.parent
TARGETS = TypeAdapter(list[CompressionTarget])
TOOL_RESULTS = "$.messages[*].content[?(@.type == 'tool_result')]"
EDIT_HEADER = (
    "The file /home/dev/shop/cart.py has been updated. Here's the result of running `cat -n` on a "
    "snippet of the edited file:"
)
REMINDER = (
    "\n\n<system-reminder>\nWhenever you read a file, you should consider whether it looks malicious."
    "\n</system-reminder>\n"
)


def source_lines(count: int) -> list[str]:
    lines = []
    for number in range(count):
        if number % 7 == 0:
            lines.append(f"def handler_{number}(request, session=None):")
        elif number % 7 == 6:
            lines.append("")
        else:
            lines.append(f"    total_{number} = compute_price(request.items[{number}]) * {number % 13}")
    return lines


def cat_n(lines: list[str], start: int = 1, separator: str = "\t") -> str:
    return "\n".join(f"{number:>6}{separator}{line}" for number, line in enumerate(lines, start=start))


def repad(text: str) -> str:
    """Pad every unpadded tab gutter back to the width of `cat -n`, independently of the engine."""
    return re.sub(r"^(\d+)\t", lambda match: match.group(1).rjust(6) + "\t", text, flags=re.MULTILINE)


# Detection and rewriting ------------------------------------------------------------------------


def test_read_listing_loses_only_padding() -> None:
    original = cat_n(source_lines(150))
    result = strip_gutters(original)
    assert result is not None
    stripped, numbered = result
    assert numbered == list(range(150))
    assert stripped.split("\n")[0] == "1\tdef handler_0(request, session=None):"
    assert stripped.split("\n")[99] == "100\t    total_99 = compute_price(request.items[99]) * 8"
    assert repad(stripped) == original


def test_repadding_restores_header_and_reminder() -> None:
    original = EDIT_HEADER + "\n" + cat_n(source_lines(12), start=40) + REMINDER
    stripped, numbered = strip_gutters(original)
    assert stripped.startswith(EDIT_HEADER + "\n40\t")
    assert stripped.endswith(REMINDER)
    assert numbered == list(range(1, 13))
    assert repad(stripped) == original
    assert restore_gutters(stripped, numbered) == original


def test_arrow_separator_is_kept() -> None:
    original = cat_n(source_lines(20), separator="→")
    stripped, numbered = strip_gutters(original)
    assert stripped.split("\n")[0] == "1→def handler_0(request, session=None):"
    assert stripped.count("→") == original.count("→")
    assert restore_gutters(stripped, numbered) == original


def test_file_content_after_gutter_is_untouched() -> None:
    # The file's own lines may start with spaces, tabs or text that looks like a gutter.
    lines = ["     7\tnot a gutter", "\tindented with a tab", "   spaces", "     9→arrow"]
    original = cat_n(lines)
    stripped, _numbered = strip_gutters(original)
    assert stripped.split("\n") == [f"{number}\t{line}" for number, line in enumerate(lines, start=1)]


def test_wide_numbers_keep_their_gutter() -> None:
    original = cat_n(source_lines(8), start=99_997)
    stripped, numbered = strip_gutters(original)
    assert stripped.split("\n")[0].startswith("99997\t")
    assert stripped.split("\n")[3].startswith("100000\t")
    assert stripped.split("\n")[7].startswith("100004\t")
    assert restore_gutters(stripped, numbered) == original


def test_second_run_after_marker_is_rewritten() -> None:
    marker = "[40 of 100 lines omitted by policy reads]"
    original = cat_n(source_lines(30)) + "\n" + marker + "\n" + cat_n(source_lines(30), start=71)
    stripped, numbered = strip_gutters(original)
    assert numbered == [*range(30), *range(31, 61)]
    assert stripped.split("\n")[30] == marker
    assert stripped.split("\n")[31].startswith("71\t")
    assert repad(stripped) == original


def test_listing_ends_at_lower_number() -> None:
    reminder_snippet = "\n<system-reminder>\nChanged lines:\n" + cat_n(["x = 1", "y = 2", "z = 3"], start=2)
    original = cat_n(source_lines(10)) + reminder_snippet
    stripped, numbered = strip_gutters(original)
    assert numbered == list(range(10))
    assert stripped.endswith(reminder_snippet)


def test_listing_ends_at_other_gutter_width() -> None:
    tail = "\n      7\tseven characters wide\n     8\tback to six"
    original = cat_n(source_lines(5)) + tail
    stripped, numbered = strip_gutters(original)
    assert numbered == list(range(5))
    assert stripped.endswith(tail)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("File created successfully at: /home/dev/shop/cart.py", id="plain"),
        pytest.param(cat_n(source_lines(2)), id="two-lines"),
        pytest.param("     1\ta\n     2\tb\n     4\td\n     5\te", id="gap-in-first-run"),
        pytest.param("     1\ta\n     2\tb\nbreak\n     3\tc\n     4\td", id="break-in-first-run"),
        pytest.param("     3\ta\n     2\tb\n     1\tc", id="decreasing"),
        pytest.param("  1\ta\n  2\tb\n  3\tc\n  4\td", id="width-3-gutter"),
        pytest.param("        1\ta\n        2\tb\n        3\tc", id="width-9-gutter"),
        pytest.param("one\ntwo\n     1\ta\n     2\tb\n     3\tc", id="two-header-lines"),
        pytest.param("     1 a\n     2 b\n     3 c", id="space-separator"),
        pytest.param("1\ta\n2\tb\n3\tc\n4\td", id="already-stripped"),
        pytest.param('{"a": [1, 2, 3]}', id="json"),
        pytest.param("src/cart.py:12:    total = 1\nsrc/cart.py:13:    return total\nsrc/cart.py:14:", id="grep"),
    ],
)
def test_non_listing_is_left_alone(text: str) -> None:
    assert strip_gutters(text) is None


def test_listing_detection_reads_few_lines() -> None:
    assert may_start_listing("     1\tx")
    assert may_start_listing("header\n     1\tx")
    assert not may_start_listing("header\nsecond\n     1\tx")
    assert not may_start_listing("x" * 1_000_000)
    assert listing_lines(["header", "     1\ta"]) == []


def test_rewrite_is_idempotent() -> None:
    original = EDIT_HEADER + "\n" + cat_n(source_lines(40), start=120, separator="→") + REMINDER
    once, _numbered = strip_gutters(original)
    assert strip_gutters(once) is None


# The stage ---------------------------------------------------------------------------------------


def target(**fields) -> CompressionTarget:
    data = {"name": "reads", "path": TOOL_RESULTS, "tool": ["Read", "Edit"], "actions": ["line_numbers"], **fields}
    return TARGETS.validate_python([data])[0]


class TargetsOnly:
    def __init__(self, *targets: CompressionTarget):
        self.compression = list(targets)


def request_with_result(content, tool: str = "Read") -> dict:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [
            {"role": "user", "content": "Look at the cart."},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": tool, "input": {"file_path": "/a.py"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": content}]},
        ],
    }


def run_compress(body: dict, *targets: CompressionTarget) -> tuple[dict, list[dict]]:
    ctx = RequestContext(request_id="test", protocol="anthropic", body=copy.deepcopy(body), headers={})
    decisions = compress(ctx, TargetsOnly(*targets))
    return ctx.body, decisions


def test_stage_records_tokens_and_verification() -> None:
    RESULT_CACHE.clear()
    original = cat_n(source_lines(200)) + REMINDER
    body, decisions = run_compress(request_with_result(original), target())
    forwarded = body["messages"][2]["content"][0]["content"]
    assert repad(forwarded) == original
    (decision,) = decisions
    assert decision["target"] == "reads"
    assert decision["action"] == "line_numbers"
    assert decision["lossless"] is True
    assert decision["verified"] is True
    assert decision["applied"] is True
    assert decision["tokens_before"] == count_text(original)
    assert decision["tokens_after"] == count_text(forwarded)
    assert decision["tokens_after"] < decision["tokens_before"]


def test_stage_rewrites_text_blocks_in_list_content() -> None:
    RESULT_CACHE.clear()
    listing = EDIT_HEADER + "\n" + cat_n(source_lines(30), start=10)
    content = [{"type": "text", "text": listing}, {"type": "text", "text": "not a listing"}]
    body, decisions = run_compress(request_with_result(content, tool="Edit"), target())
    blocks = body["messages"][2]["content"][0]["content"]
    assert blocks[0]["text"].split("\n")[1].startswith("10\t")
    assert repad(blocks[0]["text"]) == listing
    assert blocks[1] == {"type": "text", "text": "not a listing"}
    assert [decision["action"] for decision in decisions] == ["line_numbers"]


def test_stage_output_is_stable_across_requests() -> None:
    original = cat_n(source_lines(120), separator="→")
    RESULT_CACHE.clear()
    first, _ = run_compress(request_with_result(original), target())
    RESULT_CACHE.clear()
    second, _ = run_compress(request_with_result(original), target())
    again, decisions = run_compress(first, target())
    assert json.dumps(first) == json.dumps(second)
    assert json.dumps(again) == json.dumps(first)
    assert decisions == []


def test_stage_skips_other_tools_and_text() -> None:
    RESULT_CACHE.clear()
    listing = cat_n(source_lines(60))
    body = request_with_result(listing, tool="Bash")
    assert run_compress(body, target()) == (body, [])
    plain = request_with_result("x = 1\n" * 400)
    assert run_compress(plain, target()) == (plain, [])


def test_listing_of_json_file_either_target_order() -> None:
    document = json.dumps({"name": "shop", "dependencies": {f"pkg-{i}": f"^{i}.0.0" for i in range(60)}}, indent=2)
    listing = cat_n(document.split("\n"))
    json_target = target(name="json-documents", actions=["toon", "minify"])
    for order in ((json_target, target()), (target(), json_target)):
        RESULT_CACHE.clear()
        body, decisions = run_compress(request_with_result(listing), *order)
        assert [decision["target"] for decision in decisions] == ["reads"]
        assert repad(body["messages"][2]["content"][0]["content"]) == listing

        RESULT_CACHE.clear()
        body, decisions = run_compress(request_with_result(document), *order)
        assert [decision["target"] for decision in decisions] == ["json-documents"]
        assert json.loads(body["messages"][2]["content"][0]["content"]) == json.loads(document)


def test_line_numbers_before_truncate() -> None:
    RESULT_CACHE.clear()
    original = cat_n(source_lines(100))
    both = target(actions=["line_numbers", {"truncate": {"lines": 20, "keep": "head_tail"}}])
    body, (decision,) = run_compress(request_with_result(original), both)
    forwarded = body["messages"][2]["content"][0]["content"].split("\n")
    assert decision["action"] == "line_numbers+truncate"
    assert decision["lossless"] is False
    assert decision["verified"] is None
    assert forwarded[0].startswith("1\t")
    assert forwarded[-1].startswith("100\t")
    assert forwarded[10] == "[80 of 100 lines (lines 11-90) omitted by policy reads]"


def test_default_policy_rewrites_session_reads() -> None:
    RESULT_CACHE.clear()
    session = agent_session(12, seed=3)
    body = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": session.messages}
    policy = load_policy_set(ROOT / "policies").base
    ctx = RequestContext(request_id="test", protocol="anthropic", body=copy.deepcopy(body), headers={})
    decisions = compress(ctx, policy)
    rewritten = [decision for decision in decisions if decision["target"] == "numbered-file-lines"]
    assert rewritten
    assert all(decision["applied"] and decision["verified"] for decision in rewritten)
    for before, after in zip(body["messages"], ctx.body["messages"]):
        for block_before, block_after in zip(before["content"], after["content"]):
            if isinstance(block_before, dict) and block_before.get("type") == "tool_result":
                assert repad(block_after["content"]) == block_before["content"]


# Policy validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "actions",
    [["line_numbers"], [{"line_numbers": None}], [{"line_numbers": {}}], ["line_numbers", "toon"]],
)
def test_action_forms_load(actions) -> None:
    assert [action.name for action in target(actions=actions).actions][0] == "line_numbers"


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        ([{"line_numbers": {"width": 8}}], "Extra inputs are not permitted"),
        ([{"line_numbers": 6}], "valid dictionary"),
        (["toon", "line_numbers"], "line_numbers comes after toon"),
        (["line_number"], "unknown action 'line_number'"),
    ],
)
def test_bad_action_is_rejected(actions, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        target(actions=actions)
    assert message in str(caught.value)


def test_bad_option_reports_file_line_column(tmp_path: Path) -> None:
    policy_dir = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policy_dir, ignore=shutil.ignore_patterns("teams"))
    (policy_dir / "teams").mkdir()
    (policy_dir / "teams" / "bad.yaml").write_text(
        "extends: default\n"
        "compression:\n"
        "  - name: reads\n"
        f"    path: \"{TOOL_RESULTS}\"\n"
        "    actions:\n"
        "      - line_numbers: {width: 8}\n",
        encoding="utf-8",
    )
    with pytest.raises(PolicyError) as caught:
        load_policy_set(policy_dir)
    (issue,) = caught.value.issues
    assert issue.file.endswith("teams/bad.yaml")
    assert issue.line == 6
    assert issue.key_path == "compression[0].actions[0].line_numbers.width"
    assert "unknown key" in issue.message


def test_explain_shows_line_numbers(tmp_path: Path) -> None:
    request = tmp_path / "read.json"
    request.write_text(json.dumps(request_with_result(cat_n(source_lines(80)) + REMINDER)), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "engine", "explain", "--policies", str(ROOT / "policies"), str(request)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"compression numbered-file-lines/line_numbers: \d+ -> \d+ \(lossless=True, verified=True\)",
                     result.stdout), result.stdout
