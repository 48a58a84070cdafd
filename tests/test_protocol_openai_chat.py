"""OpenAI Chat Completions translation, upstream side and client side."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.protocol import openai_chat
from engine.protocol.openai_chat import (
    REASONING_PLACEHOLDER,
    ChatStreamReader,
    canonical_to_chat_request,
    chat_response_to_message,
)

DATA = Path(__file__).parent / "data"


def check_and_assemble(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Check that canonical events follow Anthropic's stream grammar and build the final message.

    The grammar: message_start first, blocks numbered 0, 1, 2 ... opened and closed one at a time,
    deltas only for the open block and of its kind, no empty text block, then message_delta and
    message_stop, or an error event as the last event.
    """
    assert events, "no events"
    assert events[0]["type"] in ("message_start", "error")
    message: dict[str, Any] = {}
    open_index = None
    pending_json = ""
    for position, event in enumerate(events):
        kind = event["type"]
        if kind == "message_start":
            assert position == 0
            message = copy.deepcopy(event["message"])
        elif kind == "content_block_start":
            assert open_index is None, f"block {event['index']} opened while {open_index} is open"
            assert event["index"] == len(message["content"])
            open_index = event["index"]
            message["content"].append(copy.deepcopy(event["content_block"]))
            pending_json = ""
        elif kind == "content_block_delta":
            assert event["index"] == open_index
            block = message["content"][open_index]
            delta = event["delta"]
            if delta["type"] == "text_delta":
                assert block["type"] == "text"
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                assert block["type"] == "thinking"
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "input_json_delta":
                assert block["type"] == "tool_use"
                pending_json += delta["partial_json"]
            else:
                raise AssertionError(f"unexpected delta {delta}")
        elif kind == "content_block_stop":
            assert event["index"] == open_index
            block = message["content"][open_index]
            if block["type"] == "tool_use":
                try:
                    block["input"] = json.loads(pending_json) if pending_json else {}
                except json.JSONDecodeError:
                    # Only a stream that was cut may close a tool_use block with partial JSON.
                    assert events[-1]["type"] == "error", f"invalid tool input {pending_json!r}"
                    block["input"] = {"partial_json": pending_json}
            if block["type"] == "text":
                assert block["text"], "empty text block"
            open_index = None
        elif kind == "message_delta":
            assert open_index is None
            message.update(event["delta"])
            message["usage"] = event["usage"]
        elif kind == "message_stop":
            assert position == len(events) - 1
        elif kind == "error":
            assert position == len(events) - 1
            assert open_index is None
            message["error"] = event["error"]
        elif kind != "ping":
            raise AssertionError(f"unknown event {kind}")
    return message


def claude_code_body() -> dict[str, Any]:
    system = json.loads((DATA / "claude_code_1.0.123_system.json").read_text())["blocks"]
    tools = json.loads((DATA / "claude_code_16tools.json").read_text())
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "system": [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}} for text in system],
        "tools": tools,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Read setup.py"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Reading it."},
                    {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "/r/setup.py"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "print(1)"},
                    {"type": "text", "text": "now explain", "cache_control": {"type": "ephemeral"}},
                ],
            },
        ],
        "metadata": {"user_id": "u"},
        "stream": True,
    }


# -- canonical_to_chat_request --------------------------------------------------------------


def test_to_chat_system_blocks_joined():
    body = claude_code_body()

    request = canonical_to_chat_request(body, "gpt-4o", max_output_tokens=None)

    system_texts = [block["text"] for block in body["system"]]
    assert request["messages"][0] == {"role": "system", "content": "\n\n".join(system_texts)}


def test_to_chat_tool_result_then_user_text():
    request = canonical_to_chat_request(claude_code_body(), "gpt-4o", max_output_tokens=None)

    assert request["messages"][1:] == [
        {"role": "user", "content": "Read setup.py"},
        {
            "role": "assistant",
            "content": "Reading it.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "Read", "arguments": '{"file_path":"/r/setup.py"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "print(1)"},
        {"role": "user", "content": "now explain"},
    ]


def test_to_chat_tools_translated_in_order():
    body = claude_code_body()

    request = canonical_to_chat_request(body, "gpt-4o", max_output_tokens=None)

    assert [tool["function"]["name"] for tool in request["tools"]] == [tool["name"] for tool in body["tools"]]
    first = request["tools"][0]
    assert first["type"] == "function"
    assert first["function"]["parameters"] == body["tools"][0]["input_schema"]
    assert first["function"]["description"] == body["tools"][0]["description"]


def test_to_chat_is_deterministic_bytes():
    first = orjson.dumps(canonical_to_chat_request(claude_code_body(), "gpt-4o", max_output_tokens=16384))
    second = orjson.dumps(canonical_to_chat_request(claude_code_body(), "gpt-4o", max_output_tokens=16384))

    assert first == second


def test_to_chat_does_not_modify_body():
    body = claude_code_body()
    before = copy.deepcopy(body)

    canonical_to_chat_request(body, "gpt-4o", max_output_tokens=100, reasoning_content=True)

    assert body == before


def test_to_chat_drops_cache_control_and_unknown_fields():
    body = claude_code_body()
    body["top_k"] = 5
    body["service_tier"] = "auto"

    encoded = orjson.dumps(canonical_to_chat_request(body, "gpt-4o", max_output_tokens=None))

    assert b"cache_control" not in encoded
    assert b"top_k" not in encoded
    assert b"service_tier" not in encoded
    assert b"metadata" not in encoded


def test_to_chat_max_tokens_clamped():
    request = canonical_to_chat_request(claude_code_body(), "gpt-4o", max_output_tokens=16384)

    assert request["max_tokens"] == 16384


def test_to_chat_max_tokens_below_limit_kept():
    body = claude_code_body()
    body["max_tokens"] = 1000

    request = canonical_to_chat_request(body, "o3", max_output_tokens=16384, use_max_completion_tokens=True)

    assert request["max_completion_tokens"] == 1000
    assert "max_tokens" not in request


def test_to_chat_stream_requests_usage():
    request = canonical_to_chat_request(claude_code_body(), "gpt-4o", max_output_tokens=None)

    assert request["stream"] is True
    assert request["stream_options"] == {"include_usage": True}


def test_to_chat_non_stream_has_no_stream_keys():
    body = claude_code_body()
    del body["stream"]

    request = canonical_to_chat_request(body, "gpt-4o", max_output_tokens=None)

    assert "stream" not in request
    assert "stream_options" not in request


def test_to_chat_key_order_fixed():
    body = claude_code_body()
    body.update(temperature=0.2, top_p=0.9, stop_sequences=["END"], tool_choice={"type": "any"})

    request = canonical_to_chat_request(body, "gpt-4o", max_output_tokens=None)

    assert list(request) == [
        "model",
        "messages",
        "tools",
        "tool_choice",
        "max_tokens",
        "temperature",
        "top_p",
        "stop",
        "stream",
        "stream_options",
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "Bash"}, {"type": "function", "function": {"name": "Bash"}}),
    ],
)
def test_to_chat_tool_choice(choice, expected):
    body = claude_code_body()
    body["tool_choice"] = choice

    request = canonical_to_chat_request(body, "gpt-4o", max_output_tokens=None)

    assert request["tool_choice"] == expected
    assert "parallel_tool_calls" not in request


def test_to_chat_disable_parallel_tool_use():
    body = claude_code_body()
    body["tool_choice"] = {"type": "auto", "disable_parallel_tool_use": True}

    request = canonical_to_chat_request(body, "gpt-4o", max_output_tokens=None)

    assert request["parallel_tool_calls"] is False


def test_to_chat_server_tools_dropped():
    body = claude_code_body()
    body["tools"] = [
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
        {"type": "bash_20250124", "name": "bash"},
        {"name": "Read", "input_schema": {"type": "object", "properties": {}}},
        {"type": "custom", "name": "Grep", "input_schema": {"type": "object"}},
    ]
    body["tool_choice"] = {"type": "tool", "name": "web_search"}

    request = canonical_to_chat_request(body, "gpt-4o", max_output_tokens=None)

    assert [tool["function"]["name"] for tool in request["tools"]] == ["Read", "Grep"]
    assert "tool_choice" not in request


def test_to_chat_only_server_tools_sends_no_tools():
    body = claude_code_body()
    body["tools"] = [{"type": "web_search_20250305", "name": "web_search"}]
    body["tool_choice"] = {"type": "auto", "disable_parallel_tool_use": True}

    request = canonical_to_chat_request(body, "gpt-4o", max_output_tokens=None)

    assert "tools" not in request
    assert "tool_choice" not in request
    assert "parallel_tool_calls" not in request


def test_to_chat_stop_sequences_capped_at_four():
    body = claude_code_body()
    body["stop_sequences"] = ["a", "b", "c", "d", "e"]

    request = canonical_to_chat_request(body, "gpt-4o", max_output_tokens=None)

    assert request["stop"] == ["a", "b", "c", "d"]


def test_to_chat_images_as_data_urls():
    body = {
        "model": "m",
        "max_tokens": 10,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.invalid/a.png"}},
                    {"type": "text", "text": "what is this"},
                ],
            }
        ],
    }

    request = canonical_to_chat_request(body, "gpt-4o", max_output_tokens=None)

    assert request["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                {"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}},
                {"type": "text", "text": "what is this"},
            ],
        }
    ]


def test_to_chat_several_results_images_and_errors():
    body = {
        "model": "m",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "a", "name": "Read", "input": {}},
                    {"type": "tool_use", "id": "b", "name": "Shot", "input": {"x": 1}},
                    {"type": "tool_use", "id": "c", "name": "Bash", "input": {"command": "false"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "a", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
                    {
                        "type": "tool_result",
                        "tool_use_id": "b",
                        "content": [
                            {"type": "text", "text": "screenshot"},
                            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j"}},
                        ],
                    },
                    {"type": "tool_result", "tool_use_id": "c", "content": "exit 1", "is_error": True},
                    {"type": "text", "text": "continue"},
                ],
            },
        ],
    }

    messages = canonical_to_chat_request(body, "gpt-4o", max_output_tokens=None)["messages"]

    assert messages[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "Read", "arguments": "{}"}},
            {"id": "b", "type": "function", "function": {"name": "Shot", "arguments": '{"x":1}'}},
            {"id": "c", "type": "function", "function": {"name": "Bash", "arguments": '{"command":"false"}'}},
        ],
    }
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "a", "content": "one\ntwo"},
        {"role": "tool", "tool_call_id": "b", "content": "screenshot"},
        {"role": "tool", "tool_call_id": "c", "content": "Error: exit 1"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j"}},
                {"type": "text", "text": "continue"},
            ],
        },
    ]


def test_to_chat_thinking_dropped_by_default():
    body = {
        "model": "m",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "xx"},
                    {"type": "text", "text": "answer"},
                ],
            },
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "only thoughts", "signature": "s"}]},
            {"role": "user", "content": "more"},
        ],
    }

    messages = canonical_to_chat_request(body, "m", max_output_tokens=None)["messages"]

    assert messages == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "more"},
    ]


def test_to_chat_reasoning_content_echoed():
    body = {
        "model": "m",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "plan", "signature": ""},
                    {"type": "tool_use", "id": "t1", "name": "Read", "input": {}},
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "x"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t2", "name": "Read", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t2", "content": "y"}]},
            {"role": "assistant", "content": "done"},
        ],
    }

    messages = canonical_to_chat_request(body, "kimi", max_output_tokens=None, reasoning_content=True)["messages"]

    assert messages[1]["reasoning_content"] == "plan"
    assert messages[3]["reasoning_content"] == REASONING_PLACEHOLDER
    assert "reasoning_content" not in messages[5]


def test_to_chat_no_empty_messages():
    body = {
        "model": "m",
        "max_tokens": 10,
        "system": [{"type": "text", "text": ""}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": [{"type": "text", "text": ""}]},
            {"role": "user", "content": ""},
        ],
    }

    messages = canonical_to_chat_request(body, "m", max_output_tokens=None)["messages"]

    assert messages == [{"role": "user", "content": "hi"}]


# -- chat_response_to_message ---------------------------------------------------------------


def test_from_chat_text_and_usage():
    resp = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107, "prompt_tokens_details": {"cached_tokens": 64}},
    }

    message = chat_response_to_message(resp, "gpt-4o")

    assert message["id"] == "msg_chatcmpl-1"
    assert message["model"] == "gpt-4o"
    assert message["content"] == [{"type": "text", "text": "Hello"}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"] == {
        "input_tokens": 36,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 64,
        "output_tokens": 7,
    }


def test_from_chat_stop_with_tool_calls_is_tool_use():
    resp = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "Read", "arguments": '{"file_path": "/a"}'}},
                        {"id": "call_2", "type": "function", "function": {"name": "LS", "arguments": ""}},
                    ],
                },
                "finish_reason": "stop",
            }
        ]
    }

    message = chat_response_to_message(resp, "m")

    assert message["stop_reason"] == "tool_use"
    assert message["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "Read", "input": {"file_path": "/a"}},
        {"type": "tool_use", "id": "call_2", "name": "LS", "input": {}},
    ]


def test_from_chat_invalid_arguments_kept_raw():
    resp = {"choices": [{"message": {"tool_calls": [{"function": {"name": "Read", "arguments": "{broken"}}]}, "finish_reason": "tool_calls"}]}

    block = chat_response_to_message(resp, "m")["content"][0]

    assert block["input"] == {"_invalid_json_arguments": "{broken"}
    assert block["id"].startswith("toolu_")


@pytest.mark.parametrize(
    ("finish", "expected"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"), ("content_filter", "refusal"), (None, "end_turn")],
)
def test_from_chat_finish_reasons(finish, expected):
    resp = {"choices": [{"message": {"content": "x"}, "finish_reason": finish}]}

    assert chat_response_to_message(resp, "m")["stop_reason"] == expected


def test_from_chat_empty_choices_and_missing_fields():
    for resp in ({"choices": []}, {}, {"choices": [{}]}, {"choices": [{"message": None}]}):
        message = chat_response_to_message(resp, "m")
        assert message["content"] == []
        assert message["stop_reason"] == "end_turn"
        assert message["usage"]["input_tokens"] == 0


def test_from_chat_reasoning_and_refusal():
    resp = {"choices": [{"message": {"content": None, "reasoning_content": "think", "refusal": "I can't"}, "finish_reason": "stop"}]}

    message = chat_response_to_message(resp, "m")

    assert message["content"] == [
        {"type": "thinking", "thinking": "think", "signature": ""},
        {"type": "text", "text": "I can't"},
    ]
    assert message["stop_reason"] == "refusal"


def test_usage_other_cache_field_names():
    deepseek = openai_chat.openai_usage_to_anthropic({"prompt_tokens": 50, "completion_tokens": 1, "prompt_cache_hit_tokens": 20})
    moonshot = openai_chat.openai_usage_to_anthropic({"prompt_tokens": 50, "completion_tokens": 1, "cached_tokens": 30})

    assert deepseek["cache_read_input_tokens"] == 20
    assert deepseek["input_tokens"] == 30
    assert moonshot["cache_read_input_tokens"] == 30
    assert moonshot["input_tokens"] == 20


def test_usage_round_trip():
    anthropic = {"input_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 90, "output_tokens": 5}

    openai = openai_chat.anthropic_usage_to_openai(anthropic)

    assert openai["prompt_tokens"] == 100
    assert openai["total_tokens"] == 105
    assert openai["prompt_tokens_details"] == {"cached_tokens": 90}
    assert openai_chat.openai_usage_to_anthropic(openai) == anthropic


# -- ChatStreamReader -----------------------------------------------------------------------


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}
    body["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    body.update(extra)
    return body


def usage_chunk(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return {"id": "chatcmpl-9", "object": "chat.completion.chunk", "choices": [], "usage": usage}


def run_reader(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    reader = ChatStreamReader("gpt-4o")
    events = []
    for item in chunks:
        events.extend(reader.feed(item))
    events.extend(reader.finish())
    return events


def test_stream_text_with_usage_chunk():
    events = run_reader(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({}, "stop"),
            usage_chunk(120, 2, 100),
        ]
    )

    message = check_and_assemble(events)
    assert message["content"] == [{"type": "text", "text": "Hello"}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"] == {"input_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 100, "output_tokens": 2}
    assert [event["type"] for event in events].count("message_delta") == 1


def test_stream_usage_on_finish_chunk_not_doubled():
    usage = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
    events = run_reader([chunk({"content": "a"}), chunk({}, "stop", usage=usage), usage_chunk(10, 3, 0)])

    message = check_and_assemble(events)
    assert message["usage"]["output_tokens"] == 3
    assert message["usage"]["input_tokens"] == 10


def test_stream_tool_call_fragments_split_oddly():
    arguments = '{"file_path": "/src/main.py", "limit": 20}'
    pieces = [arguments[:1], arguments[1:9], arguments[9:10], arguments[10:30], arguments[30:]]
    chunks = [chunk({"role": "assistant", "content": "Let me look."})]
    chunks.append(
        chunk({"tool_calls": [{"index": 0, "id": "call_A", "type": "function", "function": {"name": "Read", "arguments": ""}}]})
    )
    chunks += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}) for piece in pieces]
    chunks += [chunk({}, "tool_calls"), usage_chunk(50, 20, 0)]

    message = check_and_assemble(run_reader(chunks))

    assert message["content"] == [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "call_A", "name": "Read", "input": {"file_path": "/src/main.py", "limit": 20}},
    ]
    assert message["stop_reason"] == "tool_use"


def test_stream_finish_stop_with_tool_calls():
    chunks = [
        chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "LS", "arguments": '{"path":"."}'}}]}),
        chunk({}, "stop"),
    ]

    message = check_and_assemble(run_reader(chunks))

    assert message["stop_reason"] == "tool_use"


def test_stream_parallel_calls_by_index():
    chunks = [
        chunk({"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "Read", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"file_path":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"/a"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "c2", "type": "function", "function": {"name": "Read", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"file_path":"/b"}'}}]}),
        chunk({}, "tool_calls"),
    ]

    message = check_and_assemble(run_reader(chunks))

    assert [(block["id"], block["input"]) for block in message["content"]] == [
        ("c1", {"file_path": "/a"}),
        ("c2", {"file_path": "/b"}),
    ]


def test_stream_interleaved_calls_stay_contiguous():
    chunks = [
        chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "Read", "arguments": '{"file_'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "c2", "function": {"name": "Grep", "arguments": '{"pat'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'path":"/a"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": 'tern":"x"}'}}]}),
        chunk({}, "tool_calls"),
    ]

    message = check_and_assemble(run_reader(chunks))

    assert [(block["name"], block["input"]) for block in message["content"]] == [
        ("Read", {"file_path": "/a"}),
        ("Grep", {"pattern": "x"}),
    ]


def test_stream_id_repeated_on_every_chunk():
    chunks = [
        chunk({"tool_calls": [{"index": 0, "id": "call_X", "function": {"name": "Bash", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "id": "call_X", "function": {"arguments": '{"command":'}}]}),
        chunk({"tool_calls": [{"index": 0, "id": "call_X", "function": {"name": "Bash", "arguments": '"ls"}'}}]}),
        chunk({}, "tool_calls"),
    ]

    message = check_and_assemble(run_reader(chunks))

    assert message["content"] == [{"type": "tool_use", "id": "call_X", "name": "Bash", "input": {"command": "ls"}}]


def test_stream_all_calls_share_index_zero():
    chunks = [
        chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "Read", "arguments": '{"file_path":"/a"}'}}]}),
        chunk({"tool_calls": [{"index": 0, "id": "c2", "function": {"name": "Read", "arguments": '{"file_path":"/b"}'}}]}),
        chunk({}, "stop"),
    ]

    message = check_and_assemble(run_reader(chunks))

    assert [(block["id"], block["input"]["file_path"]) for block in message["content"]] == [("c1", "/a"), ("c2", "/b")]
    assert message["stop_reason"] == "tool_use"


def test_stream_missing_index_and_missing_id():
    chunks = [
        chunk({"tool_calls": [{"function": {"name": "Glob", "arguments": '{"pattern"'}}]}),
        chunk({"tool_calls": [{"function": {"arguments": ':"*.py"}'}}]}),
        chunk({}, "tool_calls"),
    ]

    message = check_and_assemble(run_reader(chunks))

    block = message["content"][0]
    assert block["id"].startswith("toolu_")
    assert block["input"] == {"pattern": "*.py"}


def test_stream_call_without_arguments_gets_empty_object():
    chunks = [chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "LS", "arguments": ""}}]}), chunk({}, "tool_calls")]

    message = check_and_assemble(run_reader(chunks))

    assert message["content"][0]["input"] == {}


def test_stream_azure_filter_chunks():
    filter_chunk = {"id": "", "choices": [], "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}
    chunks = [filter_chunk, chunk({"role": "assistant"}), chunk({"content": "ok"}), chunk({}, "stop"), filter_chunk]

    message = check_and_assemble(run_reader(chunks))

    assert message["content"] == [{"type": "text", "text": "ok"}]


def test_stream_no_empty_text_blocks():
    chunks = [chunk({"role": "assistant", "content": ""}), chunk({"content": ""}), chunk({"content": None}), chunk({}, "stop")]

    events = run_reader(chunks)
    message = check_and_assemble(events)

    assert message["content"] == []
    assert not any(event["type"] == "content_block_start" for event in events)


def test_stream_reasoning_then_text():
    chunks = [
        chunk({"reasoning_content": "Let me "}),
        chunk({"reasoning_content": "think."}),
        chunk({"content": "Answer"}),
        chunk({}, "stop"),
    ]

    message = check_and_assemble(run_reader(chunks))

    assert message["content"] == [
        {"type": "thinking", "thinking": "Let me think.", "signature": ""},
        {"type": "text", "text": "Answer"},
    ]


def test_stream_error_chunk_becomes_error_event():
    events = run_reader([chunk({"content": "par"}), {"error": {"message": "Rate limit reached", "type": "rate_limit_exceeded"}}])

    message = check_and_assemble(events)
    assert message["error"] == {"type": "rate_limit_error", "message": "Rate limit reached"}
    assert message["content"] == [{"type": "text", "text": "par"}]


def test_stream_cut_before_finish_reports_error():
    arguments_start = {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "Read", "arguments": '{"file'}}]}
    events = run_reader([chunk({"content": "a"}), chunk(arguments_start)])

    message = check_and_assemble(events)
    assert "without a finish_reason" in message["error"]["message"]
    assert message["content"][1]["input"] == {"partial_json": '{"file'}
    assert events[-1]["type"] == "error"


def test_stream_empty_upstream_reports_error():
    events = ChatStreamReader("m").finish()

    assert events == [{"type": "error", "error": {"type": "api_error", "message": "upstream stream ended before any data"}}]


def test_stream_reader_ignores_garbage_chunks():
    reader = ChatStreamReader("m")
    events = reader.feed({"choices": "nope"}) + reader.feed({"choices": [None, {"delta": "x"}]}) + reader.feed(chunk({"content": "a"}, "stop"))
    events += reader.finish()

    assert check_and_assemble(events)["content"] == [{"type": "text", "text": "a"}]


def test_stream_message_start_usage_fields():
    events = run_reader([chunk({"content": "a"}, "stop")])

    usage = events[0]["message"]["usage"]
    assert set(usage) == {"input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens"}
    assert events[-2]["usage"]["input_tokens"] == 0
