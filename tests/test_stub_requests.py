"""The stub's request side: fault specs, markers, replies and the conversion to the canonical shape."""

from __future__ import annotations

import json

import pytest

from engine import tokens
from engine.stub.canonical import (
    InvalidRequest,
    chat_to_canonical,
    check_anthropic,
    ollama_to_canonical,
    parse_json_object,
    responses_to_canonical,
)
from engine.stub.faults import FaultCounter, FaultSpecError, parse_fault
from engine.stub.record import Recorder, redact_headers
from engine.stub.replies import last_user_text, plan_reply, read_markers, split_fragments, split_words

# --- fault specs -----------------------------------------------------------------------------------


def test_parse_status_retry_after_times():
    fault = parse_fault("status=429,retry_after=2,times=3")
    assert fault.status == 429
    assert fault.retry_after == 2.0
    assert fault.times == 3
    assert fault.text == "status=429,retry_after=2,times=3"


def test_parse_stream_faults_combined():
    fault = parse_fault(" slow_first_byte=250, cut_after=4 ")
    assert fault.slow_first_byte_ms == 250
    assert fault.cut_after == 4
    assert fault.status is None


def test_parse_reset():
    assert parse_fault("reset").reset is True


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("status", "needs a value"),
        ("status=abc", "not a number"),
        ("status=200", "between 400 and 599"),
        ("retry_after=2", "needs a status"),
        ("reset=1", "takes no value"),
        ("explode=1", "unknown fault item"),
        ("cut_after=-1", "must not be negative"),
        ("status=500,times=0", "at least 1"),
    ],
)
def test_parse_rejects_bad_specs(spec, message):
    with pytest.raises(FaultSpecError, match=message):
        parse_fault(spec)


def test_times_counts_per_spec_text():
    counter = FaultCounter()
    first = parse_fault("status=500,times=1")
    other = parse_fault("status=502,times=1")
    assert counter.combine([first]).status == 500
    assert counter.combine([first]).status is None
    assert counter.combine([other]).status == 502


def test_combine_first_status_wins_and_delays_add():
    combined = FaultCounter().combine([parse_fault("status=503,slow_first_byte=100"), parse_fault("status=429,slow_first_byte=50,cut_after=2")])
    assert combined.status == 503
    assert combined.slow_first_byte_ms == 150
    assert combined.cut_after == 2


# --- markers and replies ---------------------------------------------------------------------------


def test_markers_parse_calls_faults_quirks():
    markers = read_markers('please <<call Read {"file_path": "/a.py"}>> <<call Glob>> <<fault status=429>> <<quirk finish_reason_stop>> now')
    assert markers.calls == [("Read", {"file_path": "/a.py"}), ("Glob", {})]
    assert markers.faults[0].status == 429
    assert markers.quirks == frozenset({"finish_reason_stop"})
    assert markers.plain_text.split() == ["please", "now"]


def test_call_marker_with_nested_braces():
    markers = read_markers('<<call Edit {"edits": [{"old": "a", "new": "b"}], "opts": {"x": {"y": 1}}}>>')
    assert markers.calls == [("Edit", {"edits": [{"old": "a", "new": "b"}], "opts": {"x": {"y": 1}}})]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<<call Read {not json}>>", "not valid JSON"),
        ("<<fault status=abc>>", "not a number"),
        ("<<quirk something_else>>", "unknown quirk"),
    ],
)
def test_bad_markers_raise_invalid_request(text, message):
    with pytest.raises(InvalidRequest, match=message):
        read_markers(text)


def test_reply_text_uses_first_words():
    canonical = {"messages": [{"role": "user", "content": "one two three four five six seven eight nine ten"}]}
    text, results = last_user_text(canonical)
    reply = plan_reply(canonical, read_markers(text), results, None)
    assert reply.text == "stub answer to: one two three four five six seven eight"
    assert reply.output_tokens == tokens.count_text(reply.text)
    assert reply.stop == "end_turn"


def test_reply_is_deterministic():
    canonical = {"messages": [{"role": "user", "content": "<<call Read {\"p\": 1}>>"}]}
    first = plan_reply(canonical, read_markers(last_user_text(canonical)[0]), 0, None)
    second = plan_reply(canonical, read_markers(last_user_text(canonical)[0]), 0, None)
    assert first == second


def test_reply_counts_trailing_tool_results():
    canonical = {
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "Read", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": "x"}]},
        ]
    }
    text, results = last_user_text(canonical)
    assert results == 1
    assert plan_reply(canonical, read_markers(text), results, None).text == "stub received 1 tool result."


def test_reply_truncated_at_max_tokens():
    canonical = {"messages": [{"role": "user", "content": "alpha beta gamma delta"}]}
    reply = plan_reply(canonical, read_markers("alpha beta gamma delta"), 0, 2)
    assert reply.stop == "max_tokens"
    assert reply.output_tokens == 2
    assert tokens.count_text(reply.text) <= 2


def test_split_fragments_at_least_three():
    text = json.dumps({"file_path": "/src/app.py"})
    pieces = split_fragments(text)
    assert len(pieces) >= 3
    assert "".join(pieces) == text
    assert "".join(split_fragments("{}")) == "{}"


def test_split_words_round_trips():
    text = "stub answer to:  two  spaces"
    assert "".join(split_words(text)) == text
    assert len(split_words(text)) > 3


# --- request checks and conversions ----------------------------------------------------------------


def test_parse_json_object_rejects_non_objects():
    for raw in (b"", b"[1]", b"{"):
        with pytest.raises(InvalidRequest):
            parse_json_object(raw)


def test_check_anthropic_allows_empty_final_assistant():
    check_anthropic({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]})


def test_check_anthropic_rejects_unpaired_tool_use():
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {}}]},
            {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "tool_result", "tool_use_id": "t1", "content": "x"}]},
        ],
    }
    with pytest.raises(InvalidRequest, match="t1"):
        check_anthropic(body)


def test_chat_conversion_merges_tool_messages():
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "Read", "arguments": "{\"p\": 1}"}},
                    {"id": "c2", "type": "function", "function": {"name": "Glob", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "one"},
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "two"}]},
        ],
        "tools": [{"type": "function", "function": {"name": "Read", "description": "read", "parameters": {"type": "object"}}}],
    }
    canonical = chat_to_canonical(body)
    assert canonical["system"] == [{"type": "text", "text": "sys"}]
    assert canonical["tools"] == [{"name": "Read", "description": "read", "input_schema": {"type": "object"}}]
    assert [message["role"] for message in canonical["messages"]] == ["user", "assistant", "user"]
    assert canonical["messages"][0]["content"][1]["type"] == "image"
    assert canonical["messages"][1]["content"][0] == {"type": "tool_use", "id": "c1", "name": "Read", "input": {"p": 1}}
    assert [block["content"] for block in canonical["messages"][2]["content"]] == ["one", "two"]


def test_chat_conversion_keeps_invalid_arguments_as_text():
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "Read", "arguments": "{broken"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "x"},
        ],
    }
    assert chat_to_canonical(body)["messages"][1]["content"][0]["input"] == "{broken"


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": "hi"}]},
        {"model": "m", "messages": []},
        {"model": "m", "messages": [{"role": "robot", "content": "hi"}]},
        {"model": "m", "messages": [{"role": "user", "content": 5}]},
        {"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c"}]}]},
    ],
)
def test_chat_conversion_rejects_bad_bodies(body):
    with pytest.raises(InvalidRequest):
        chat_to_canonical(body)


def test_responses_conversion():
    body = {
        "model": "gpt-5",
        "instructions": "be brief",
        "input": [
            {"type": "message", "role": "developer", "content": "dev note"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix it"}]},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thinking"}]},
            {"type": "function_call", "name": "shell", "arguments": "{\"cmd\": \"ls\"}", "call_id": "call_1"},
            {"type": "function_call_output", "call_id": "call_1", "output": "a.py"},
        ],
        "tools": [{"type": "function", "name": "shell", "parameters": {"type": "object"}}, {"type": "web_search"}],
    }
    canonical = responses_to_canonical(body)
    assert [block["text"] for block in canonical["system"]] == ["be brief", "dev note"]
    assert canonical["tools"][0] == {"name": "shell", "input_schema": {"type": "object"}}
    assert canonical["tools"][1] == {"type": "web_search"}
    assert canonical["messages"][1]["content"][1] == {"type": "tool_use", "id": "call_1", "name": "shell", "input": {"cmd": "ls"}}
    assert canonical["messages"][2]["content"][0]["type"] == "tool_result"


def test_responses_conversion_rejects_missing_input():
    with pytest.raises(InvalidRequest, match="input"):
        responses_to_canonical({"model": "gpt-5"})


def test_ollama_conversion():
    body = {
        "model": "llama3",
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "look", "images": ["iVBORw0KGgo="]},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
            {"role": "tool", "content": "rain", "tool_name": "get_weather"},
        ],
    }
    canonical = ollama_to_canonical(body)
    assert canonical["messages"][0]["content"][1]["type"] == "image"
    assert canonical["messages"][1]["content"][0]["input"] == {"city": "Oslo"}
    assert canonical["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": "get_weather", "content": "rain"}


# --- recording -------------------------------------------------------------------------------------


def test_redact_headers():
    headers = {"Authorization": "Bearer s1", "X-Api-Key": "s2", "api-key": "s3", "Anthropic-Version": "2023-06-01"}
    assert redact_headers(headers) == {
        "authorization": "<redacted>",
        "x-api-key": "<redacted>",
        "api-key": "<redacted>",
        "anthropic-version": "2023-06-01",
    }


def test_recorder_continues_numbering(tmp_path):
    Recorder(tmp_path).write("anthropic", b"{}", {"path": "/v1/messages"})
    second = Recorder(tmp_path).write("ollama", b"[]", {"path": "/api/chat"})
    assert second.name == "000002-ollama.json"
    assert (tmp_path / "000002-ollama.meta.json").exists()
    assert (tmp_path / "000001-anthropic.json").read_bytes() == b"{}"
