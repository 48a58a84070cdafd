"""The lexical tier features (1 to 14): one test per feature, on real agent request shapes."""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

import pytest

from engine.policy.loader import load_policy_set
from engine.stages.tier.features import (
    CHARS_PER_TOKEN,
    LEXICAL_FEATURES,
    count_tool_rounds,
    extract_features,
    last_user_text,
    split_code,
)
from engine.stages.tier.policy import FEATURE_NAMES, MarkerVocabularies

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="module")
def markers() -> MarkerVocabularies:
    return load_policy_set(ROOT / "policies", {}).base.markers


def user(text: str) -> dict:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def request(*messages: dict, tools: list | None = None, system: str | None = None) -> dict:
    body: dict = {"model": "m", "max_tokens": 100, "messages": list(messages)}
    if tools is not None:
        body["tools"] = tools
    if system is not None:
        body["system"] = system
    return body


def tool_round(index: int, output: str, name: str = "Bash") -> list[dict]:
    return [
        {"role": "assistant", "content": [{"type": "tool_use", "id": f"toolu_{index}", "name": name, "input": {"command": "ls"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{index}", "content": output}]},
    ]


def claude_code_tools() -> list[dict]:
    return json.loads((DATA / "claude_code_16tools.json").read_text())


def test_lexical_features_are_the_first_fourteen_in_order(markers):
    features = extract_features(request(user("hi")), markers)
    assert list(features) == list(FEATURE_NAMES[:14])
    assert LEXICAL_FEATURES == FEATURE_NAMES[:14]


def test_log_input_tokens_counts_system_tools_and_messages(markers):
    text = "x" * 4000
    bare = extract_features(request(user(text)), markers)["log_input_tokens"]
    assert bare == pytest.approx(math.log1p(4000 / CHARS_PER_TOKEN))

    with_tools = extract_features(request(user(text), tools=claude_code_tools(), system="s" * 800), markers)
    assert with_tools["log_input_tokens"] > bare + 2.0  # 16 tools are about 12k tokens


def test_log_input_tokens_counts_an_image_as_fixed_size(markers):
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 500_000}}
    features = extract_features(request({"role": "user", "content": [image, {"type": "text", "text": "what is this"}]}), markers)
    assert features["log_input_tokens"] == pytest.approx(math.log1p((1600 * 4 + len("what is this")) / CHARS_PER_TOKEN))


def test_log_last_user_tokens_ignores_tool_results_and_reminders(markers):
    task = "Refactor the billing module."
    messages = [
        {"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>\nlong reminder text " + "r" * 3000 + "\n</system-reminder>"},
            {"type": "text", "text": task},
        ]},
        *tool_round(1, "y" * 10_000),
    ]
    features = extract_features(request(*messages), markers)
    assert features["log_last_user_tokens"] == pytest.approx(math.log1p(len(task) / CHARS_PER_TOKEN))


def test_message_count(markers):
    messages = [user("a"), {"role": "assistant", "content": "b"}, user("c")]
    assert extract_features(request(*messages), markers)["message_count"] == 3.0


def test_tool_result_share(markers):
    output = "z" * 3000
    body = request(user("q" * 1000), *tool_round(1, output))
    share = extract_features(body, markers)["tool_result_share"]
    assert 0.6 < share < 0.8  # 3000 of about 4000 characters
    assert extract_features(request(user("no tools here")), markers)["tool_result_share"] == 0.0


def test_tool_rounds_counts_only_trailing_rounds(markers):
    body = request(user("start"), *tool_round(1, "a"), *tool_round(2, "b"), *tool_round(3, "c"))
    assert extract_features(body, markers)["tool_rounds"] == 3.0

    interrupted = request(user("start"), *tool_round(1, "a"), {"role": "assistant", "content": "done"}, user("now this"), *tool_round(2, "b"))
    assert extract_features(interrupted, markers)["tool_rounds"] == 1.0
    assert count_tool_rounds([user("just text")]) == 0


def test_tools_offered(markers):
    assert extract_features(request(user("x"), tools=claude_code_tools()), markers)["tools_offered"] == 16.0
    assert extract_features(request(user("x")), markers)["tools_offered"] == 0.0


def test_write_tools_offered(markers):
    read_only = [tool for tool in claude_code_tools() if tool["name"] in ("Read", "Grep", "Glob", "LS")]
    assert extract_features(request(user("x"), tools=read_only), markers)["write_tools_offered"] == 0.0
    assert extract_features(request(user("x"), tools=claude_code_tools()), markers)["write_tools_offered"] == 1.0
    codex = json.loads((DATA / "codex_cli.json").read_text())
    assert extract_features(request(user("x"), tools=codex), markers)["write_tools_offered"] == 1.0


def test_code_lines_counts_lines_inside_fences(markers):
    text = "Look at this:\n```python\na = 1\nb = 2\nc = 3\n```\nand this\n~~~\nx\n~~~\nthanks"
    assert extract_features(request(user(text)), markers)["code_lines"] == 4.0


def test_code_lines_unclosed_fence_runs_to_end():
    prose, lines = split_code("before\n```\none\ntwo")
    assert lines == 2
    assert prose.strip() == "before"


def test_error_trace_lines_reads_user_text_and_last_tool_result(markers):
    trace = (
        "Traceback (most recent call last):\n"
        '  File "app.py", line 3, in <module>\n'
        "    main()\n"
        '  File "app.py", line 2, in main\n'
        "ValueError: bad input\n"
    )
    in_text = extract_features(request(user(trace + "why?")), markers)["error_trace_lines"]
    assert in_text == 4.0  # the header, two File lines and the ValueError line; `main()` is code

    go_panic = "goroutine 7 [running]:\npanic: runtime error: index out of range\nok line\n"
    body = request(user("run the tests"), *tool_round(1, go_panic))
    assert extract_features(body, markers)["error_trace_lines"] == 2.0
    assert extract_features(request(user("all fine")), markers)["error_trace_lines"] == 0.0


def test_file_references_counts_distinct_paths_and_identifiers(markers):
    text = "Move `parse_args` from src/cli/main.py to cli_utils.py and update parseConfig and src/cli/main.py callers."
    assert extract_features(request(user(text)), markers)["file_references"] == 4.0


def test_file_references_ignore_code_blocks(markers):
    text = "What does this do?\n```python\nimport os.path\nfrom my_pkg import load_data\nx = load_data()\n```"
    assert extract_features(request(user(text)), markers)["file_references"] == 0.0


def test_reasoning_markers(markers):
    text = "Design the cache layer and analyse the trade-offs; optimise for latency."
    assert extract_features(request(user(text)), markers)["reasoning_markers"] == 5.0


def test_multi_step_markers(markers):
    text = "First add the column, then backfill it.\n1. write the migration\n2. deploy\nAfter that, drop the old one."
    # first, then, "1.", "2.", after that, and the migration word
    assert extract_features(request(user(text)), markers)["multi_step_markers"] == 6.0


def test_risk_markers(markers):
    text = "This touches payments in production, and the session auth must stay thread-safe."
    assert extract_features(request(user(text)), markers)["risk_markers"] == 4.0


def test_lookup_markers(markers):
    text = "What is the syntax for a dict comprehension? How do I add a condition?"
    assert extract_features(request(user(text)), markers)["lookup_markers"] == 3.0


def test_marker_words_match_whole_words_only(markers):
    assert extract_features(request(user("a prodigy")), markers)["risk_markers"] == 0.0
    assert extract_features(request(user("then")), markers)["multi_step_markers"] == 1.0
    assert extract_features(request(user("thence")), markers)["multi_step_markers"] == 0.0


def test_empty_vocabulary_gives_zero():
    empty = MarkerVocabularies()
    features = extract_features(request(user("Design this, then check security. What is it?")), empty)
    for name in ("reasoning_markers", "multi_step_markers", "risk_markers", "lookup_markers", "error_trace_lines"):
        assert features[name] == 0.0


def test_malformed_messages_do_not_crash(markers):
    body = {"messages": [None, "text", {"role": "user", "content": None}, {"role": "user", "content": [1, None, {"type": "text"}]}], "tools": "not a list"}
    features = extract_features(body, markers)
    assert features["message_count"] == 2.0
    assert features["tools_offered"] == 0.0


def test_last_user_text_skips_tool_only_messages():
    messages = [user("the task"), *tool_round(1, "output")]
    assert last_user_text(messages) == "the task"


def test_extractor_is_well_under_a_millisecond(markers):
    system = json.loads((DATA / "claude_code_1.0.123_system.json").read_text())["blocks"]
    body = {
        "system": [{"type": "text", "text": block} for block in system],
        "tools": claude_code_tools(),
        "messages": [user("Fix the failing test in tests/test_invoice.py, then run the suite.")],
    }
    for index in range(3):
        body["messages"] += tool_round(index, "tests/test_invoice.py::test_case PASSED\n" * 60)
    extract_features(body, markers)
    samples = []
    for _ in range(200):
        started = time.perf_counter()
        extract_features(body, markers)
        samples.append(time.perf_counter() - started)
    # NOTE: a generous bound because the test machine is shared; benchmarks/tier_routing.py measures it.
    assert statistics.median(samples) < 0.002
