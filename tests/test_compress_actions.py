"""Each lossy action, run through the stage, and the marker it leaves in the text."""

from __future__ import annotations

import json
from typing import Any

import pytest
import toon_format
from pydantic import TypeAdapter

from engine.pipeline.context import RequestContext
from engine.stages.compress.policy import CompressionTarget
from engine.stages.compress.stage import RESULT_CACHE, compress

TOOL_RESULTS = "$.messages[*].content[?(@.type == 'tool_result')]"
TARGETS = TypeAdapter(list[CompressionTarget])


class TargetsOnly:
    def __init__(self, targets: list[dict[str, Any]]):
        self.compression = TARGETS.validate_python(targets)


@pytest.fixture(autouse=True)
def empty_result_cache() -> None:
    RESULT_CACHE.clear()


def matches(count: int = 60) -> list[dict[str, Any]]:
    return [
        {
            "file": f"src/pkg/module_{i // 5:02d}.py",
            "line": 10 + i * 7,
            "match": f"    total_{i} = reduce(items, key={i})",
            "context": {"before": ["    items = load()"], "after": ["    return total"]},
            "score": round(1 / (i + 1), 4),
        }
        for i in range(count)
    ]


def compress_result(content: Any, actions: list[Any], **target: Any) -> tuple[str, list[dict]]:
    """Run one target named `grep-results` on a Grep tool result; return the new text and decisions."""
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "search"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Grep", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": content}]},
        ],
    }
    policy = TargetsOnly([{"name": "grep-results", "path": TOOL_RESULTS, "actions": actions, **target}])
    decisions = compress(RequestContext(request_id="t", protocol="anthropic", body=body, headers={}), policy)
    return body["messages"][2]["content"][0]["content"], decisions


def split_markers(text: str) -> tuple[str, list[str]]:
    lines = text.split("\n")
    markers = [line for line in lines if line.startswith("[") and line.endswith("by policy grep-results]")]
    body = "\n".join(line for line in lines if line not in markers)
    return body, markers


def test_project_keeps_listed_fields() -> None:
    text, decisions = compress_result(json.dumps(matches()), [{"project": ["file", "line", "match"]}, "toon"])
    encoded, markers = split_markers(text)
    value = toon_format.decode(encoded)
    assert value[0] == {"file": "src/pkg/module_00.py", "line": 10, "match": "    total_0 = reduce(items, key=0)"}
    assert len(value) == 60
    assert markers == ["[fields context, score of 60 records omitted by policy grep-results]"]
    assert decisions[0]["action"] == "project+toon"
    assert decisions[0]["lossless"] is False
    assert decisions[0]["verified"] is True


def test_drop_removes_sub_paths() -> None:
    text, decisions = compress_result(json.dumps(matches()), [{"drop": ["$..context", "[*].score"]}, "minify"])
    encoded, markers = split_markers(text)
    value = json.loads(encoded)
    assert all(set(record) == {"file", "line", "match"} for record in value)
    assert markers == [
        "[60 values at $..context omitted by policy grep-results]",
        "[60 values at [*].score omitted by policy grep-results]",
    ]
    assert decisions[0]["action"] == "drop+minify"


def test_drop_list_elements() -> None:
    value = {"rows": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] * 30, "meta": {"page": 1}}
    text, _ = compress_result(json.dumps(value, indent=2), [{"drop": ["rows[0:290]"]}, "minify"])
    encoded, markers = split_markers(text)
    assert json.loads(encoded) == {"rows": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], "meta": {"page": 1}}
    assert markers == ["[290 values at rows[0:290] omitted by policy grep-results]"]


def test_truncate_items_head() -> None:
    text, _ = compress_result(json.dumps(matches()), [{"truncate": {"items": 20}}, "minify"])
    encoded, markers = split_markers(text)
    value = json.loads(encoded)
    assert [record["line"] for record in value] == [10 + i * 7 for i in range(20)]
    assert markers == ["[40 of 60 records (positions 21-60) omitted by policy grep-results]"]


def test_truncate_items_head_and_tail() -> None:
    text, _ = compress_result(json.dumps(matches()), [{"truncate": {"items": 21, "keep": "head_tail"}}, "toon"])
    encoded, markers = split_markers(text)
    value = toon_format.decode(encoded)
    assert len(value) == 21
    assert value[10]["line"] == 10 + 10 * 7
    assert value[11]["line"] == 10 + 50 * 7
    assert value[-1]["line"] == 10 + 59 * 7
    assert markers == ["[39 of 60 records (positions 12-50) omitted by policy grep-results]"]


def test_truncate_names_nested_record_list() -> None:
    value = {"query": "total_", "results": matches()}
    text, _ = compress_result(json.dumps(value), [{"truncate": {"items": 5}}, "minify"])
    _, markers = split_markers(text)
    assert markers == ["[55 of 60 records in results (positions 6-60) omitted by policy grep-results]"]


def test_records_path_selects_lists() -> None:
    value = {"data": {"hits": matches(), "facets": [{"name": f"f{i}"} for i in range(30)]}}
    text, _ = compress_result(
        json.dumps(value), [{"truncate": {"items": 10}}, "minify"], records="$.data.hits"
    )
    encoded, markers = split_markers(text)
    decoded = json.loads(encoded)
    assert len(decoded["data"]["hits"]) == 10
    assert len(decoded["data"]["facets"]) == 30
    assert markers == ["[50 of 60 records in data.hits (positions 11-60) omitted by policy grep-results]"]


def test_dedupe_whole_records() -> None:
    rows = matches(30)
    text, _ = compress_result(json.dumps(rows + rows[:12]), ["dedupe", "minify"])
    encoded, markers = split_markers(text)
    assert json.loads(encoded) == rows
    assert markers == ["[12 repeated records omitted by policy grep-results]"]


def test_dedupe_by_fields() -> None:
    rows = [{"file": "a.py", "line": i % 10, "match": f"m{i}"} for i in range(40)]
    text, _ = compress_result(json.dumps(rows), [{"dedupe": {"by": ["file", "line"]}}, "minify"])
    encoded, markers = split_markers(text)
    assert [row["line"] for row in json.loads(encoded)] == list(range(10))
    assert markers == ["[30 records repeating an earlier file, line omitted by policy grep-results]"]


def test_dedupe_tells_missing_from_null() -> None:
    rows = [{"file": "a.py", "line": None}, {"file": "a.py"}] * 30
    text, _ = compress_result(json.dumps(rows), [{"dedupe": {"by": ["file", "line"]}}, "minify"])
    encoded, _ = split_markers(text)
    assert json.loads(encoded) == [{"file": "a.py", "line": None}, {"file": "a.py"}]


def test_render_groups_under_heading() -> None:
    text, decisions = compress_result(
        json.dumps(matches(10)),
        [{"project": ["file", "line", "match"]}, {"render": {"heading": "file", "row": "{line}:{match}"}}],
    )
    lines = text.split("\n")
    assert lines[:3] == ["src/pkg/module_00.py", "10:    total_0 = reduce(items, key=0)", "17:    total_1 = reduce(items, key=1)"]
    assert lines[6] == "src/pkg/module_01.py"
    assert lines[-1] == "[fields context, score of 10 records omitted by policy grep-results]"
    assert decisions[0]["action"] == "project+render"
    assert decisions[0]["verified"] is None
    assert decisions[0]["lossless"] is False


def test_render_marks_fields_it_leaves_out() -> None:
    text, _ = compress_result(json.dumps(matches(10)), [{"render": {"row": "{file}:{line}:{match}"}}])
    assert text.split("\n")[0] == "src/pkg/module_00.py:10:    total_0 = reduce(items, key=0)"
    assert text.split("\n")[-1] == "[fields context, score of 10 records omitted by policy grep-results]"


def test_render_keeps_line_breaks_visible() -> None:
    rows = [{"file": "a.py", "line": i, "match": f"first\nsecond {i}"} for i in range(30)]
    text, _ = compress_result(json.dumps(rows, indent=2), [{"render": {"row": "{line}:{match}", "heading": "file"}}])
    assert text.split("\n")[1] == '0:"first\\nsecond 0"'


def test_render_falls_back_when_fields_missing() -> None:
    rows = [{"path": f"a{i}.py", "line": i, "match": "x = 1"} for i in range(40)]
    text, decisions = compress_result(
        json.dumps(rows, indent=2), [{"render": {"heading": "file", "row": "{line}:{match}"}}, "toon"]
    )
    assert decisions[0]["action"] == "toon"
    assert decisions[0]["rejected"][0]["action"] == "render"
    assert "no field 'file'" in decisions[0]["rejected"][0]["reason"]
    assert toon_format.decode(text) == rows


def test_render_writes_envelope_fields() -> None:
    value = {"query": "total_", "total": 60, "matches": matches(5)}
    text, _ = compress_result(
        json.dumps(value, indent=2),
        [{"project": ["file", "line", "match"]}, {"render": {"heading": "file", "row": "{line}:{match}"}}],
    )
    lines = text.split("\n")
    assert lines[:4] == ['query: "total_"', "total: 60", "matches:", "src/pkg/module_00.py"]


def test_lossy_actions_apply_minify_when_no_encoder_listed() -> None:
    text, decisions = compress_result(json.dumps(matches(), indent=2), [{"project": ["file", "line"]}])
    encoded, _ = split_markers(text)
    assert json.loads(encoded)[0] == {"file": "src/pkg/module_00.py", "line": 10}
    assert decisions[0]["action"] == "project+minify"


# Text that is not JSON -------------------------------------------------------------------------


GREP_TEXT = "\n".join(f"src/pkg/module_{i // 5:02d}.py:{10 + i * 7}:    total_{i} = reduce(items)" for i in range(100))


def test_truncate_lines_head() -> None:
    text, decisions = compress_result(GREP_TEXT, [{"truncate": {"lines": 30}}])
    lines = text.split("\n")
    assert lines[:30] == GREP_TEXT.split("\n")[:30]
    assert lines[30] == "[70 of 100 lines (lines 31-100) omitted by policy grep-results]"
    assert len(lines) == 31
    assert decisions[0]["action"] == "truncate"
    assert decisions[0]["verified"] is None


def test_truncate_lines_head_and_tail() -> None:
    text, _ = compress_result(GREP_TEXT, [{"truncate": {"lines": 30, "keep": "head_tail"}}])
    lines = text.split("\n")
    original = GREP_TEXT.split("\n")
    assert lines[:15] == original[:15]
    assert lines[15] == "[70 of 100 lines (lines 16-85) omitted by policy grep-results]"
    assert lines[16:] == original[85:]


def test_truncate_chars() -> None:
    text, _ = compress_result(GREP_TEXT, [{"truncate": {"chars": 1000, "keep": "head_tail"}}])
    length = len(GREP_TEXT)
    note = f"[{length - 1000} of {length} characters (characters 501-{length - 500}) omitted by policy grep-results]"
    assert text == GREP_TEXT[:500] + "\n" + note + "\n" + GREP_TEXT[-500:]


def test_dedupe_collapses_line_runs() -> None:
    log = "\n".join(["starting", *["retrying connection to 127.0.0.1:5432"] * 50, "", "", "", "done"] * 4)
    text, decisions = compress_result(log, ["dedupe"])
    lines = text.split("\n")
    assert lines[:3] == [
        "starting",
        "retrying connection to 127.0.0.1:5432",
        "[49 repeats of the line above omitted by policy grep-results]",
    ]
    assert lines[3:7] == ["", "", "", "done"]
    assert decisions[0]["tokens_after"] < decisions[0]["tokens_before"]


def test_json_actions_leave_plain_text_alone() -> None:
    text, decisions = compress_result(GREP_TEXT, [{"project": ["file"]}, {"truncate": {"items": 3}}, "toon"])
    assert text == GREP_TEXT
    assert decisions == []


def test_text_actions_leave_json_alone() -> None:
    original = json.dumps(matches(), indent=2)
    text, decisions = compress_result(original, [{"truncate": {"lines": 5}}])
    assert text == original
    assert decisions == []


def test_dedupe_keeps_runs_of_two() -> None:
    twice = "warning: deprecated option --legacy-peer-deps used by " + "pkg/" * 20
    thrice = "error: connection refused while fetching " + "registry/" * 20
    unique_lines = [f"line {i}" for i in range(100)]
    log = "\n".join([twice, twice, *unique_lines, thrice, thrice, thrice])
    text, decisions = compress_result(log, ["dedupe"])
    lines = text.split("\n")
    assert decisions[0]["applied"] is True
    assert lines[:2] == [twice, twice]
    assert lines[-2:] == [thrice, "[2 repeats of the line above omitted by policy grep-results]"]


def test_dedupe_rejected_when_marker_costs_more() -> None:
    log = "\n".join([*[f"line {i}" for i in range(100)], "ok", "ok", "ok"])
    text, decisions = compress_result(log, ["dedupe"])
    assert text == log
    assert decisions[0]["applied"] is False
    assert decisions[0]["rejected"][0]["reason"] == "not fewer tokens"
