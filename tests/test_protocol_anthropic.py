"""Anthropic Messages validation, message assembly and event generation."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.protocol.anthropic import (
    MessageAssembler,
    drop_unsigned_thinking,
    message_to_events,
    total_input_tokens,
    validate_count_tokens_request,
    validate_messages_request,
)
from engine.protocol.errors import ProtocolError
from engine.protocol.openai_chat import chat_request_to_canonical
from tests.test_protocol_openai_chat import check_and_assemble, chunk, run_reader, usage_chunk

DATA = Path(__file__).parent / "data"


def claude_code_request(turns: int = 10) -> dict[str, Any]:
    """Build a Claude Code-shaped request: real system prompt and tools, `turns` tool rounds."""
    system = json.loads((DATA / "claude_code_1.0.123_system.json").read_text())["blocks"]
    tools = json.loads((DATA / "claude_code_16tools.json").read_text())
    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>Context for this session.</system-reminder>"},
                {"type": "text", "text": "Find why the tests in tests/test_api.py fail and fix it."},
            ],
        }
    ]
    for number in range(turns - 1):
        call_id = f"toolu_{number:04d}"
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": f"Step {number}: reading a file."},
                    {"type": "tool_use", "id": call_id, "name": "Read", "input": {"file_path": f"/repo/src/module_{number}.py"}},
                ],
            }
        )
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call_id, "content": "\n".join(f"{i}\tline {i} of module {number}" for i in range(40))}
                ],
            }
        )
    messages[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "system": [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}} for text in system],
        "messages": messages,
        "tools": tools,
        "tool_choice": {"type": "auto"},
        "thinking": {"type": "enabled", "budget_tokens": 4096},
        "metadata": {"user_id": "user_abc_session_1"},
        "stream": True,
        "temperature": 1,
    }


def minimal(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    body.update(extra)
    return body


# -- validate_messages_request: valid input -------------------------------------------------


def test_validate_returns_same_dict_untouched():
    body = claude_code_request()
    before = orjson.dumps(body)

    result = validate_messages_request(body)

    assert result is body
    assert orjson.dumps(body) == before


def test_validate_keeps_unknown_fields():
    body = minimal(future_field={"x": 1}, container="c_1", output_config={"effort": "low"}, inference_geo="us")
    body["messages"][0]["extra"] = 1

    assert validate_messages_request(body)["future_field"] == {"x": 1}
    assert list(body) == ["model", "max_tokens", "messages", "future_field", "container", "output_config", "inference_geo"]


def test_validate_every_block_type():
    body = minimal(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/webp", "data": "AAAA"}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.invalid/i.png"}},
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}, "title": "spec"},
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain"}},
                    {"type": "search_result", "source": "https://example.invalid", "title": "t", "content": [{"type": "text", "text": "r"}]},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
                    {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
                    {"type": "tool_use", "id": "toolu_1", "name": "Shot", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "is_error": False,
                        "content": [
                            {"type": "text", "text": "png"},
                            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
                        ],
                    },
                ],
            },
        ]
    )

    assert validate_messages_request(body) is body


@pytest.mark.parametrize(
    "choice",
    [
        {"type": "auto"},
        {"type": "auto", "disable_parallel_tool_use": True},
        {"type": "any", "disable_parallel_tool_use": False},
        {"type": "tool", "name": "Read", "disable_parallel_tool_use": True},
        {"type": "none"},
    ],
)
def test_validate_every_tool_choice(choice):
    body = minimal(tools=[{"name": "Read", "input_schema": {"type": "object"}}], tool_choice=choice)

    assert validate_messages_request(body) is body


@pytest.mark.parametrize(
    "thinking",
    [
        {"type": "enabled", "budget_tokens": 1024},
        {"type": "enabled", "budget_tokens": 2048, "display": "omitted"},
        {"type": "disabled"},
        {"type": "adaptive"},
        {"type": "adaptive", "display": "summarized"},
    ],
)
def test_validate_thinking_variants(thinking):
    assert validate_messages_request(minimal(thinking=thinking))["thinking"] == thinking


def test_validate_server_tools_without_schema():
    tools = [
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        {"type": "bash_20250124", "name": "bash"},
        {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
        {"type": "custom", "name": "Read", "input_schema": {"type": "object"}, "strict": True, "defer_loading": False},
    ]

    assert validate_messages_request(minimal(tools=tools)) is not None


def test_validate_system_string_and_blocks():
    assert validate_messages_request(minimal(system="be brief"))["system"] == "be brief"
    assert validate_messages_request(minimal(system=[{"type": "text", "text": "a"}]))


def test_validate_final_assistant_may_be_empty_or_prefill():
    empty = minimal(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}])
    prefill = minimal(messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "{"}])

    assert validate_messages_request(empty)
    assert validate_messages_request(prefill)


def test_validate_trailing_tool_use_allowed():
    body = minimal(
        messages=[
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Read", "input": {}}]},
        ]
    )

    assert validate_messages_request(body)


def test_validate_consecutive_user_messages_merge_for_pairing():
    body = minimal(
        messages=[
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "R", "input": {}}, {"type": "tool_use", "id": "b", "name": "R", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a"}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "b", "content": "ok"}, {"type": "text", "text": "go on"}]},
        ]
    )

    assert validate_messages_request(body)


def test_validate_chat_translation_output():
    canonical, _ = chat_request_to_canonical(
        {
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "LS", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c", "content": "x"},
            ],
            "tools": [{"type": "function", "function": {"name": "LS", "parameters": {"type": "object"}}}],
        }
    )

    assert validate_messages_request(canonical) is canonical


# -- validate_messages_request: bad input ---------------------------------------------------


def with_messages(messages: list[Any], **extra: Any) -> dict[str, Any]:
    return minimal(messages=messages, **extra)


TOOL_USE = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}]}

BAD_BODIES = [
    ("body is a list", [], None, "must be a JSON object"),
    ("body is a string", "hi", None, "must be a JSON object"),
    ("missing model", {"max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}, "model", "is required"),
    ("missing max_tokens", {"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens", "is required"),
    ("missing messages", {"model": "m", "max_tokens": 1}, "messages", "is required"),
    ("empty messages", minimal(messages=[]), "messages", "at least 1"),
    ("max_tokens zero", minimal(max_tokens=0), "max_tokens", "greater than or equal to 1"),
    ("max_tokens string", minimal(max_tokens="100"), "max_tokens", "integer"),
    ("messages not a list", minimal(messages={"role": "user"}), "messages", "list"),
    ("bad role", with_messages([{"role": "system", "content": "x"}]), "messages.0.role", "'user' or 'assistant'"),
    ("content missing", with_messages([{"role": "user"}]), "messages.0.content", "is required"),
    ("content number", with_messages([{"role": "user", "content": 3}]), "messages.0.content", "string or a list"),
    ("empty string content", with_messages([{"role": "user", "content": ""}]), "messages.0.content", "must not be empty"),
    ("empty list content", with_messages([{"role": "user", "content": []}]), "messages.0.content", "must not be empty"),
    ("empty text block", with_messages([{"role": "user", "content": [{"type": "text", "text": ""}]}]), "messages.0.content.0.text", "non-empty"),
    ("block not object", with_messages([{"role": "user", "content": ["x"]}]), "messages.0.content.0", "must be an object with a type"),
    ("block without type", with_messages([{"role": "user", "content": [{"text": "x"}]}]), "messages.0.content.0.type", "is required"),
    ("text not string", with_messages([{"role": "user", "content": [{"type": "text", "text": 5}]}]), "messages.0.content.0.text", "string"),
    (
        "image bad media type",
        with_messages([{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "x"}}]}]),
        "messages.0.content.0.source.media_type",
        "image/png",
    ),
    (
        "image bad source",
        with_messages([{"role": "user", "content": [{"type": "image", "source": {"type": "path", "path": "/x"}}]}]),
        "messages.0.content.0.source",
        "base64, url or file",
    ),
    (
        "tool_use without id",
        with_messages([{"role": "user", "content": "q"}, {"role": "assistant", "content": [{"type": "tool_use", "name": "R", "input": {}}]}]),
        "messages.1.content.0.id",
        "is required",
    ),
    (
        "tool_use input not object",
        with_messages([{"role": "user", "content": "q"}, {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "R", "input": "x"}]}]),
        "messages.1.content.0.input",
        "dictionary",
    ),
    (
        "tool_result without id",
        with_messages([{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]),
        "messages.0.content.0.tool_use_id",
        "is required",
    ),
    (
        "tool_result bad content",
        with_messages([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": 7}]}]),
        "messages.0.content.0.content",
        "string or a list",
    ),
    (
        "thinking without signature",
        with_messages([{"role": "user", "content": "q"}, {"role": "assistant", "content": [{"type": "thinking", "thinking": "x"}]}]),
        "messages.1.content.0.signature",
        "is required",
    ),
    (
        "tool_use without result",
        with_messages([{"role": "user", "content": "q"}, TOOL_USE, {"role": "user", "content": "next"}]),
        "messages.1.content.0.id",
        "no tool_result",
    ),
    (
        "tool_result after text",
        with_messages(
            [
                {"role": "user", "content": "q"},
                TOOL_USE,
                {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "tool_result", "tool_use_id": "toolu_1"}]},
            ]
        ),
        "messages.2.content.1",
        "before any other content",
    ),
    (
        "tool_result unknown id",
        with_messages(
            [{"role": "user", "content": "q"}, TOOL_USE, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2"}]}]
        ),
        "messages.2.content.0.tool_use_id",
        "no matching tool_use",
    ),
    (
        "tool_result in first message",
        with_messages([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "y"}]}]),
        "messages.0.content.0.tool_use_id",
        "no matching tool_use",
    ),
    ("system number", minimal(system=5), "system", "string or a list of text blocks"),
    ("system empty block", minimal(system=[{"type": "text", "text": ""}]), "system.0.text", "non-empty"),
    ("tools not list", minimal(tools={"name": "x"}), "tools", "list"),
    ("custom tool without schema", minimal(tools=[{"name": "Read"}]), "tools.0", "input_schema is required"),
    ("tool without name", minimal(tools=[{"input_schema": {}}]), "tools.0.name", "is required"),
    ("tool_choice bad type", minimal(tool_choice={"type": "required"}), "tool_choice", "auto, any, tool or none"),
    ("tool_choice string", minimal(tool_choice="auto"), "tool_choice", "auto, any, tool or none"),
    (
        "tool_choice unknown tool",
        minimal(tools=[{"name": "Read", "input_schema": {}}], tool_choice={"type": "tool", "name": "Write"}),
        "tool_choice.name",
        "not in tools",
    ),
    ("thinking budget too small", minimal(thinking={"type": "enabled", "budget_tokens": 100}), "thinking.budget_tokens", "1024"),
    ("thinking bad type", minimal(thinking={"type": "on"}), "thinking", "enabled, disabled or adaptive"),
    ("temperature too high", minimal(temperature=1.5), "temperature", "less than or equal to 1"),
    ("stop_sequences string", minimal(stop_sequences="END"), "stop_sequences", "list"),
    ("metadata user_id number", minimal(metadata={"user_id": 5}), "metadata.user_id", "string"),
    ("stream string", minimal(stream="yes"), "stream", "boolean"),
    ("cache_control bad ttl", with_messages([{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "2h"}}]}]), "messages.0.content.0.cache_control.ttl", "'5m' or '1h'"),
]


@pytest.mark.parametrize(("case", "body", "param", "fragment"), BAD_BODIES, ids=[case[0] for case in BAD_BODIES])
def test_validate_bad_input(case, body, param, fragment):
    with pytest.raises(ProtocolError) as caught:
        validate_messages_request(body)

    error = caught.value
    assert error.status == 400
    assert error.error_type == "invalid_request_error"
    assert error.param == param
    assert fragment in error.message


def test_count_tokens_without_max_tokens():
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [{"name": "A", "input_schema": {}}]}

    assert validate_count_tokens_request(body) is body


def test_count_tokens_bad_input():
    with pytest.raises(ProtocolError) as caught:
        validate_count_tokens_request({"model": "m", "messages": [{"role": "user", "content": ""}]})

    assert caught.value.param == "messages.0.content"


# -- MessageAssembler and message_to_events -------------------------------------------------


def full_message() -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "The user wants the file. " * 5, "signature": "EuYBCkQYAiJA"},
            {"type": "redacted_thinking", "data": "opaque-data"},
            {"type": "text", "text": ""},
            {"type": "text", "text": "I will read the file and then explain what it does, step by step, in plain words."},
            {"type": "tool_use", "id": "toolu_01", "name": "Read", "input": {"file_path": "/repo/a.py", "limit": 200, "nested": {"k": ["ü", 1.5, None]}}},
            {"type": "tool_use", "id": "toolu_02", "name": "LS", "input": {}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 3400, "output_tokens": 57},
    }


def test_events_are_well_formed_and_round_trip():
    message = full_message()

    events = message_to_events(message)
    assembled = check_and_assemble(events)

    expected = copy.deepcopy(message)
    del expected["content"][2]  # the empty text block is never streamed
    assert assembled == expected


def test_events_split_text_into_several_deltas():
    events = message_to_events(full_message())

    text_deltas = [event for event in events if event["type"] == "content_block_delta" and event["delta"]["type"] == "text_delta"]
    assert 2 <= len(text_deltas) <= 4
    assert all(delta["delta"]["text"] for delta in text_deltas)


def test_events_usage_on_message_delta_and_start():
    events = message_to_events(full_message())

    start_usage = events[0]["message"]["usage"]
    assert start_usage["cache_read_input_tokens"] == 3400
    assert start_usage["output_tokens"] == 0
    assert events[-2]["usage"] == full_message()["usage"]
    assert events[-1] == {"type": "message_stop"}


def test_assembler_matches_message():
    message = full_message()
    assembler = MessageAssembler()

    for event in message_to_events(message):
        assembler.feed(event)

    result = assembler.message()
    assert assembler.complete is True
    assert assembler.error is None
    assert result["content"] == [block for block in message["content"] if block != {"type": "text", "text": ""}]
    assert result["usage"] == message["usage"]
    assert result["stop_reason"] == "tool_use"


def test_assembler_on_chat_stream():
    events = run_reader(
        [
            chunk({"role": "assistant", "content": "Hi "}),
            chunk({"content": "there"}),
            chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "Bash", "arguments": '{"command":"ls"}'}}]}),
            chunk({}, "tool_calls"),
            usage_chunk(1000, 20, 900),
        ]
    )
    assembler = MessageAssembler()

    for event in events:
        assembler.feed(event)

    message = assembler.message()
    assert message["content"] == [
        {"type": "text", "text": "Hi there"},
        {"type": "tool_use", "id": "call_1", "name": "Bash", "input": {"command": "ls"}},
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {"input_tokens": 100, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 900, "output_tokens": 20}
    assert total_input_tokens(message["usage"]) == 1000


def test_assembler_cut_stream_keeps_partial_tool_input():
    assembler = MessageAssembler()
    events = message_to_events(full_message())
    cut = [event for event in events if not (event["type"] == "content_block_delta" and event["index"] == 3)]
    cut = cut[: cut.index({"type": "content_block_stop", "index": 3})]
    cut.append({"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": '{"file_pa'}})
    cut.append({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})

    for event in cut:
        assembler.feed(event)

    message = assembler.message()
    assert assembler.complete is False
    assert assembler.error == {"type": "overloaded_error", "message": "Overloaded"}
    assert message["content"][-1]["input"] == {"_raw_arguments": '{"file_pa'}


def test_assembler_ignores_unknown_and_stray_events():
    assembler = MessageAssembler()

    assembler.feed({"type": "ping"})
    assembler.feed({"type": "content_block_delta", "index": 5, "delta": {"type": "text_delta", "text": "x"}})
    assembler.feed({"type": "something_new", "value": 1})

    assert assembler.message()["content"] == []


def test_events_for_raw_arguments_input():
    message = full_message()
    message["content"] = [{"type": "tool_use", "id": "t", "name": "Bash", "input": {"_raw_arguments": "{bad"}}]

    events = message_to_events(message)

    fragments = "".join(event["delta"]["partial_json"] for event in events if event["type"] == "content_block_delta")
    assert fragments == "{bad"


# -- drop_unsigned_thinking -----------------------------------------------------------------



def test_drop_unsigned_thinking_no_change_returns_same_dict():
    body = claude_code_request()
    body["messages"][1]["content"].insert(0, {"type": "thinking", "thinking": "x", "signature": "sig"})

    assert drop_unsigned_thinking(body) is body


def test_drop_unsigned_thinking_removes_blocks():
    body = minimal(
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "from gpt", "signature": ""}, {"type": "text", "text": "a"}]},
            {"role": "user", "content": "q2"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "only", "signature": ""}]},
            {"role": "user", "content": "q3"},
        ],
    )
    before = copy.deepcopy(body)

    result = drop_unsigned_thinking(body)

    assert body == before
    assert result["messages"] == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [{"type": "text", "text": "a"}]},
        {"role": "user", "content": "q2"},
        {"role": "user", "content": "q3"},
    ]
    assert result["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert validate_messages_request(result) is result


def test_drop_unsigned_thinking_disables_thinking_for_tool_turn():
    body = minimal(
        thinking={"type": "adaptive"},
        messages=[
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [{"type": "thinking", "thinking": "plan", "signature": ""}, {"type": "tool_use", "id": "t", "name": "R", "input": {}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}]},
        ],
    )

    result = drop_unsigned_thinking(body)

    assert "thinking" not in result
    assert result["messages"][1]["content"] == [{"type": "tool_use", "id": "t", "name": "R", "input": {}}]
    assert body["thinking"] == {"type": "adaptive"}


def test_validate_error_message_stays_short():
    body = minimal(tools=[{"name": "Read", "input_schema": {}}], tool_choice={"type": "tool", "name": "W" * 100_000})

    with pytest.raises(ProtocolError) as caught:
        validate_messages_request(body)

    assert caught.value.param == "tool_choice.name"
    assert len(caught.value.message) < 200
