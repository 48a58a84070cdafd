"""OpenAI Chat Completions translation, upstream side and client side."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.protocol import openai_chat
from engine.protocol.errors import ProtocolError
from engine.protocol.openai_chat import (
    DEFAULT_MAX_TOKENS,
    REASONING_PLACEHOLDER,
    ChatStreamReader,
    ChatStreamWriter,
    canonical_to_chat_request,
    chat_request_to_canonical,
    chat_response_to_message,
    message_to_chat_response,
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
            elif delta["type"] == "signature_delta":
                assert block["type"] == "thinking"
                block["signature"] += delta["signature"]
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


def test_from_chat_stop_with_tool_calls():
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

    assert block["input"] == {"_raw_arguments": "{broken"}
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


# -- chat_request_to_canonical --------------------------------------------------------------


def chat_body(**extra: Any) -> dict[str, Any]:
    tools = json.loads((DATA / "claude_code_16tools.json").read_text())[:3]
    body: dict[str, Any] = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a coding agent."},
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": "List the files."},
            {
                "role": "assistant",
                "content": "Listing.",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "Glob", "arguments": '{"pattern": "*"}'}},
                    {"id": "call_2", "type": "function", "function": {"name": "Bash", "arguments": '{"command": "ls"}'}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "a.py\nb.py"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "a.py b.py"}]},
            {"role": "user", "content": [{"type": "text", "text": "Thanks, now read a.py"}]},
        ],
        "tools": [
            {"type": "function", "function": {"name": tool["name"], "description": tool["description"], "parameters": tool["input_schema"]}}
            for tool in tools
        ],
    }
    body.update(extra)
    return body


def test_from_client_basic_mapping():
    canonical, side = chat_request_to_canonical(chat_body())

    assert canonical["model"] == "gpt-4o"
    assert canonical["max_tokens"] == DEFAULT_MAX_TOKENS
    assert canonical["system"] == [{"type": "text", "text": "You are a coding agent."}, {"type": "text", "text": "Be brief."}]
    assert canonical["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "List the files."}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Listing."},
                {"type": "tool_use", "id": "call_1", "name": "Glob", "input": {"pattern": "*"}},
                {"type": "tool_use", "id": "call_2", "name": "Bash", "input": {"command": "ls"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "a.py\nb.py"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "a.py b.py"},
                {"type": "text", "text": "Thanks, now read a.py"},
            ],
        },
    ]
    assert [tool["name"] for tool in canonical["tools"]] == ["Task", "Bash", "Glob"]
    assert "tool_choice" not in canonical
    assert side["model"] == "gpt-4o"
    assert side["stream"] is False
    assert isinstance(side["created"], int)


def test_from_client_user_between_tool_messages():
    body = chat_body()
    body["messages"].insert(5, {"role": "user", "content": "interjection"})

    canonical, _ = chat_request_to_canonical(body)

    kinds = [block["type"] for block in canonical["messages"][2]["content"]]
    assert kinds == ["tool_result", "tool_result", "text", "text"]


def test_from_client_max_tokens_variants():
    assert chat_request_to_canonical(chat_body(max_tokens=100))[0]["max_tokens"] == 100
    assert chat_request_to_canonical(chat_body(max_completion_tokens=200, max_tokens=100))[0]["max_tokens"] == 200


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("none", None, {"type": "none"}),
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ({"type": "function", "function": {"name": "Bash"}}, None, {"type": "tool", "name": "Bash"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        (None, True, None),
    ],
)
def test_from_client_tool_choice(choice, parallel, expected):
    body = chat_body(tool_choice=choice, parallel_tool_calls=parallel)

    canonical, _ = chat_request_to_canonical(body)

    assert canonical.get("tool_choice") == expected


def test_from_client_stop_sampling_user_and_side():
    body = chat_body(
        stop="END",
        temperature=0.3,
        top_p=0.8,
        user="alice",
        stream=True,
        stream_options={"include_usage": True},
        seed=7,
        response_format={"type": "json_object"},
        n=1,
        metadata={"k": "v"},
        logit_bias={"1": 2},
    )

    canonical, side = chat_request_to_canonical(body)

    assert canonical["stop_sequences"] == ["END"]
    assert canonical["temperature"] == 0.3
    assert canonical["top_p"] == 0.8
    assert canonical["metadata"] == {"user_id": "alice"}
    assert canonical["stream"] is True
    assert "seed" not in canonical
    assert "logit_bias" not in canonical
    assert side["stream"] is True
    assert side["stream_options"] == {"include_usage": True}
    assert side["seed"] == 7
    assert side["response_format"] == {"type": "json_object"}
    assert side["n"] == 1
    assert side["metadata"] == {"k": "v"}


def test_from_client_stop_list_and_temperature_clamp():
    canonical, _ = chat_request_to_canonical(chat_body(stop=["a", "", "b"], temperature=1.7))

    assert canonical["stop_sequences"] == ["a", "b"]
    assert canonical["temperature"] == 1.0


def test_from_client_images():
    body = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "compare"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
                    {"type": "image_url", "image_url": {"url": "https://example.invalid/cat.jpg"}},
                ],
            }
        ],
    }

    content = chat_request_to_canonical(body)[0]["messages"][0]["content"]

    assert content == [
        {"type": "text", "text": "compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.invalid/cat.jpg"}},
    ]


def test_from_client_reasoning_content_to_thinking():
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "reasoning_content": "because"},
            {"role": "user", "content": "q2"},
        ],
    }

    assistant = chat_request_to_canonical(body)[0]["messages"][1]

    assert assistant["content"] == [{"type": "thinking", "thinking": "because", "signature": ""}, {"type": "text", "text": "a"}]


def test_from_client_consecutive_users_merged_and_empty_dropped():
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "one"},
            {"role": "user", "content": ""},
            {"role": "user", "content": [{"type": "text", "text": "two"}]},
            {"role": "assistant", "content": None},
        ],
    }

    messages = chat_request_to_canonical(body)[0]["messages"]

    assert messages == [{"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]}]


def test_from_client_empty_tool_result_has_no_content():
    body = chat_body()
    body["messages"][4]["content"] = ""

    result = chat_request_to_canonical(body)[0]["messages"][2]["content"][0]

    assert result == {"type": "tool_result", "tool_use_id": "call_1"}


def test_from_client_flat_tool_form():
    body = chat_body(tools=[{"type": "function", "name": "Read", "parameters": {"type": "object"}}])
    body["messages"] = [{"role": "user", "content": "hi"}]

    assert chat_request_to_canonical(body)[0]["tools"] == [{"name": "Read", "input_schema": {"type": "object"}}]


BAD_REQUESTS = [
    ("not a dict", [], None),
    ("missing model", {"messages": [{"role": "user", "content": "x"}]}, "model"),
    ("no messages", {"model": "m"}, "messages"),
    ("empty messages", {"model": "m", "messages": []}, "messages"),
    ("message not object", {"model": "m", "messages": ["hi"]}, "messages.0"),
    ("bad role", {"model": "m", "messages": [{"role": "bot", "content": "x"}]}, "messages.0.role"),
    ("legacy function role", {"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages.0.role"),
    ("content wrong type", {"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    ("part wrong type", {"model": "m", "messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "messages.0.content.0.type"),
    ("text not string", {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}, "messages.0.content.0.text"),
    (
        "bad data url",
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,xx"}}]}]},
        "messages.0.content.0.image_url.url",
    ),
    (
        "bad image media type",
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AA"}}]}]},
        "messages.0.content.0.image_url.url",
    ),
    (
        "file url scheme",
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]},
        "messages.0.content.0.image_url.url",
    ),
    ("only system", {"model": "m", "messages": [{"role": "system", "content": "x"}]}, "messages"),
    ("n above one", {"model": "m", "n": 2, "messages": [{"role": "user", "content": "x"}]}, "n"),
    ("max_tokens zero", {"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ("max_tokens string", {"model": "m", "max_completion_tokens": "9", "messages": [{"role": "user", "content": "x"}]}, "max_completion_tokens"),
    ("temperature too high", {"model": "m", "temperature": 3, "messages": [{"role": "user", "content": "x"}]}, "temperature"),
    ("stream not bool", {"model": "m", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}, "stream"),
    ("stop number", {"model": "m", "stop": 5, "messages": [{"role": "user", "content": "x"}]}, "stop"),
    ("stop list item", {"model": "m", "stop": ["a", 1], "messages": [{"role": "user", "content": "x"}]}, "stop.1"),
    ("tools not list", {"model": "m", "tools": {}, "messages": [{"role": "user", "content": "x"}]}, "tools"),
    ("tool no name", {"model": "m", "tools": [{"type": "function", "function": {}}], "messages": [{"role": "user", "content": "x"}]}, "tools.0.function.name"),
    ("tool bad type", {"model": "m", "tools": [{"type": "custom", "name": "x"}], "messages": [{"role": "user", "content": "x"}]}, "tools.0.type"),
    ("legacy functions", {"model": "m", "functions": [{"name": "f"}], "messages": [{"role": "user", "content": "x"}]}, "functions"),
    ("legacy function_call", {"model": "m", "function_call": "auto", "messages": [{"role": "user", "content": "x"}]}, "function_call"),
    ("tool_choice without tools", {"model": "m", "tool_choice": "required", "messages": [{"role": "user", "content": "x"}]}, "tool_choice"),
]


@pytest.mark.parametrize(("case", "body", "param"), BAD_REQUESTS, ids=[case for case, _, _ in BAD_REQUESTS])
def test_from_client_bad_input(case, body, param):
    with pytest.raises(ProtocolError) as caught:
        chat_request_to_canonical(body)

    assert caught.value.status == 400
    assert caught.value.param == param
    assert caught.value.message


def test_from_client_bad_arguments_json():
    body = chat_body()
    body["messages"][3]["tool_calls"][1]["function"]["arguments"] = '{"command": '

    with pytest.raises(ProtocolError) as caught:
        chat_request_to_canonical(body)

    assert caught.value.param == "messages.3.tool_calls.1.function.arguments"
    assert "not valid JSON" in caught.value.message


def test_from_client_arguments_not_object():
    body = chat_body()
    body["messages"][3]["tool_calls"][0]["function"]["arguments"] = "[1, 2]"

    with pytest.raises(ProtocolError) as caught:
        chat_request_to_canonical(body)

    assert caught.value.param == "messages.3.tool_calls.0.function.arguments"


def test_from_client_tool_choice_unknown_tool():
    with pytest.raises(ProtocolError) as caught:
        chat_request_to_canonical(chat_body(tool_choice={"type": "function", "function": {"name": "Nope"}}))

    assert caught.value.param == "tool_choice.function.name"


def test_from_client_unanswered_tool_call():
    body = chat_body()
    del body["messages"][5]

    with pytest.raises(ProtocolError) as caught:
        chat_request_to_canonical(body)

    assert caught.value.param == "messages.3.tool_calls"
    assert "call_2" in caught.value.message


def test_from_client_unknown_tool_call_id():
    body = chat_body()
    body["messages"][5]["tool_call_id"] = "call_9"

    with pytest.raises(ProtocolError) as caught:
        chat_request_to_canonical(body)

    assert caught.value.param == "messages.5.tool_call_id"


def test_from_client_tool_call_answered_twice():
    body = chat_body()
    body["messages"][5]["tool_call_id"] = "call_1"

    with pytest.raises(ProtocolError) as caught:
        chat_request_to_canonical(body)

    assert caught.value.param == "messages.5.tool_call_id"
    assert "more than one" in caught.value.message


def test_from_client_trailing_tool_calls_allowed():
    body = chat_body()
    body["messages"] = body["messages"][:4]

    canonical, _ = chat_request_to_canonical(body)

    assert canonical["messages"][-1]["role"] == "assistant"


def test_chat_round_trip_keeps_meaning():
    body = chat_body(
        max_completion_tokens=500,
        stop=["STOP"],
        temperature=0.5,
        top_p=0.9,
        tool_choice={"type": "function", "function": {"name": "Glob"}},
        parallel_tool_calls=False,
        stream=True,
    )
    body["messages"][2]["content"] = [
        {"type": "text", "text": "List the files."},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
    ]

    canonical, _ = chat_request_to_canonical(body)
    again = canonical_to_chat_request(canonical, "gpt-4o", max_output_tokens=None)

    assert again["messages"][0] == {"role": "system", "content": "You are a coding agent.\n\nBe brief."}
    assert again["messages"][1] == body["messages"][2]
    assert again["messages"][2]["content"] == "Listing."
    assert [call["id"] for call in again["messages"][2]["tool_calls"]] == ["call_1", "call_2"]
    assert [orjson.loads(call["function"]["arguments"]) for call in again["messages"][2]["tool_calls"]] == [
        {"pattern": "*"},
        {"command": "ls"},
    ]
    assert again["messages"][3:] == [
        {"role": "tool", "tool_call_id": "call_1", "content": "a.py\nb.py"},
        {"role": "tool", "tool_call_id": "call_2", "content": "a.py b.py"},
        {"role": "user", "content": "Thanks, now read a.py"},
    ]
    assert again["tools"] == body["tools"]
    assert again["tool_choice"] == body["tool_choice"]
    assert again["parallel_tool_calls"] is False
    assert again["max_tokens"] == 500
    assert again["stop"] == ["STOP"]
    assert again["temperature"] == 0.5
    assert again["top_p"] == 0.9
    assert again["stream"] is True


# -- message_to_chat_response ---------------------------------------------------------------


def canonical_message(content: list[dict[str, Any]], stop_reason: str) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 85, "output_tokens": 12},
    }


def test_to_client_text_response():
    message = canonical_message([{"type": "text", "text": "Hi"}], "end_turn")

    response = message_to_chat_response(message, "gpt-4o", "chatcmpl-x", 1700000000)

    assert response["id"] == "chatcmpl-x"
    assert response["object"] == "chat.completion"
    assert response["created"] == 1700000000
    assert response["model"] == "gpt-4o"
    assert response["choices"][0]["message"] == {"role": "assistant", "content": "Hi"}
    assert response["choices"][0]["finish_reason"] == "stop"
    assert response["usage"] == {
        "prompt_tokens": 100,
        "completion_tokens": 12,
        "total_tokens": 112,
        "prompt_tokens_details": {"cached_tokens": 85},
    }


def test_to_client_only_tool_calls_content_null():
    message = canonical_message(
        [
            {"type": "thinking", "thinking": "need a file", "signature": "sig"},
            {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "/a"}},
        ],
        "tool_use",
    )

    reply = message_to_chat_response(message, "m", "r", 1)["choices"][0]

    assert reply["finish_reason"] == "tool_calls"
    assert reply["message"]["content"] is None
    assert reply["message"]["reasoning_content"] == "need a file"
    assert reply["message"]["tool_calls"] == [
        {"id": "toolu_1", "type": "function", "function": {"name": "Read", "arguments": '{"file_path":"/a"}'}}
    ]


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
    ],
)
def test_to_client_finish_reasons(stop_reason, finish):
    message = canonical_message([{"type": "text", "text": "x"}], stop_reason)

    assert message_to_chat_response(message, "m", "r", 1)["choices"][0]["finish_reason"] == finish


def test_raw_arguments_round_trip():
    resp = {"choices": [{"message": {"tool_calls": [{"id": "c", "function": {"name": "Bash", "arguments": "{bad"}}]}}]}

    message = chat_response_to_message(resp, "m")
    response = message_to_chat_response(message, "m", "r", 1)

    assert response["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == "{bad"


# -- ChatStreamWriter -----------------------------------------------------------------------


def decode_chunks(frames: list[bytes]) -> list[Any]:
    decoded = []
    for frame in frames:
        assert frame.startswith(b"data: "), frame
        assert frame.endswith(b"\n\n"), frame
        payload = frame[len(b"data: ") : -2]
        decoded.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return decoded


def write_stream(events: list[dict[str, Any]], include_usage: bool) -> list[Any]:
    writer = ChatStreamWriter("gpt-4o", "chatcmpl-1", 1700000000, include_usage)
    frames = []
    for event in events:
        frames.extend(writer.feed(event))
    frames.extend(writer.close())
    return decode_chunks(frames)


def tool_message_events() -> list[dict[str, Any]]:
    start = canonical_message([], None)
    start["usage"] = {"input_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 95, "output_tokens": 1}
    return [
        {"type": "message_start", "message": start},
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "abc"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Reading"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "Read", "input": {}}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"file_path":'}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '"/a"}'}},
        {"type": "content_block_stop", "index": 2},
        {"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "id": "toolu_b", "name": "LS", "input": {}}},
        {"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
        {"type": "content_block_stop", "index": 3},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 30}},
        {"type": "message_stop"},
    ]


def test_writer_tool_stream_shape():
    chunks = write_stream(tool_message_events(), include_usage=True)

    deltas = [chunk["choices"][0]["delta"] for chunk in chunks[:-2]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1] == {"reasoning_content": "hmm"}
    assert deltas[2] == {"content": "Reading"}
    assert deltas[3] == {"tool_calls": [{"index": 0, "id": "toolu_a", "type": "function", "function": {"name": "Read", "arguments": ""}}]}
    assert deltas[4] == {"tool_calls": [{"index": 0, "function": {"arguments": '{"file_path":'}}]}
    assert deltas[5] == {"tool_calls": [{"index": 0, "function": {"arguments": '"/a"}'}}]}
    assert deltas[6]["tool_calls"][0]["index"] == 1
    assert deltas[6]["tool_calls"][0]["id"] == "toolu_b"
    assert deltas[7] == {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}
    assert deltas[8] == {}
    assert chunks[8]["choices"][0]["finish_reason"] == "tool_calls"
    assert all(chunk["choices"][0]["finish_reason"] is None for chunk in chunks[:8])
    assert all(chunk["usage"] is None for chunk in chunks[:-2])
    assert chunks[-2]["choices"] == []
    assert chunks[-2]["usage"] == {"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130, "prompt_tokens_details": {"cached_tokens": 95}}
    assert chunks[-1] == "[DONE]"


def test_writer_without_usage_has_no_usage_chunk():
    chunks = write_stream(tool_message_events(), include_usage=False)

    assert chunks[-1] == "[DONE]"
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert all("usage" not in chunk for chunk in chunks[:-1])


def test_writer_never_emits_empty_content():
    chunks = write_stream(tool_message_events(), include_usage=False)

    contents = [chunk["choices"][0]["delta"].get("content") for chunk in chunks[1:-1]]
    assert "" not in contents


def test_writer_error_event_mid_stream():
    events = tool_message_events()[:9] + [{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}]

    chunks = write_stream(events, include_usage=True)

    assert chunks[-1] == {"error": {"message": "Overloaded", "type": "server_error", "param": None, "code": "overloaded"}}
    assert "[DONE]" not in chunks


def test_writer_close_without_stop_reports_error():
    chunks = write_stream(tool_message_events()[:9], include_usage=False)

    assert "error" in chunks[-1]
    assert "ended before" in chunks[-1]["error"]["message"]


def test_writer_error_method():
    writer = ChatStreamWriter("m", "r", 1, False)

    chunks = decode_chunks(writer.error(429, "slow down"))

    assert chunks == [{"error": {"message": "slow down", "type": "rate_limit_error", "param": None, "code": "rate_limit_exceeded"}}]
    assert writer.feed({"type": "message_stop"}) == []
    assert writer.close() == []


def test_writer_unknown_events_ignored():
    writer = ChatStreamWriter("m", "r", 1, False)

    assert len(writer.feed({"type": "message_start", "message": {}})) == 1
    assert writer.feed({"type": "something_new"}) == []
    assert writer.feed({"type": "content_block_delta", "index": 9, "delta": {"type": "citations_delta", "citation": {}}}) == []
    assert writer.feed({"type": "content_block_stop", "index": 9}) == []
    assert writer.feed("garbage") == []  # type: ignore[arg-type]


def test_reader_writer_chain():
    upstream = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Sure."}),
        chunk({"tool_calls": [{"index": 0, "id": "call_Z", "type": "function", "function": {"name": "Grep", "arguments": '{"pattern":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"TODO"}'}}]}),
        chunk({}, "tool_calls"),
        usage_chunk(40, 9, 32),
    ]
    events = run_reader(upstream)

    chunks = write_stream(events, include_usage=True)

    arguments = "".join(
        call["function"].get("arguments", "")
        for item in chunks[:-2]
        for call in item["choices"][0]["delta"].get("tool_calls", [])
    )
    assert orjson.loads(arguments) == {"pattern": "TODO"}
    assert chunks[-2]["usage"]["prompt_tokens"] == 40
    assert chunks[-2]["usage"]["prompt_tokens_details"]["cached_tokens"] == 32
    assert chunks[-3]["choices"][0]["finish_reason"] == "tool_calls"


def test_stream_late_id_after_block_started():
    chunks = [
        chunk({"tool_calls": [{"index": 0, "function": {"name": "Read", "arguments": '{"file_path":'}}]}),
        chunk({"tool_calls": [{"index": 0, "id": "call_late", "function": {"arguments": '"/a"}'}}]}),
        chunk({"tool_calls": [{"index": 0, "id": "call_late", "function": {"arguments": ""}}]}),
        chunk({}, "tool_calls"),
    ]

    message = check_and_assemble(run_reader(chunks))

    assert len(message["content"]) == 1
    assert message["content"][0]["input"] == {"file_path": "/a"}


def test_stream_late_id_before_block_started():
    chunks = [
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":1}'}}]}),
        chunk({"tool_calls": [{"index": 0, "id": "call_7", "function": {"name": "Run"}}]}),
        chunk({}, "tool_calls"),
    ]

    message = check_and_assemble(run_reader(chunks))

    assert message["content"] == [{"type": "tool_use", "id": "call_7", "name": "Run", "input": {"x": 1}}]


def test_stream_whole_arguments_repeated_at_end():
    chunks = [
        chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "Read", "arguments": '{"file_path"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ':"/a"}'}}]}),
        chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "Read", "arguments": '{"file_path": "/a"}'}}]}),
        chunk({}, "tool_calls"),
    ]

    message = check_and_assemble(run_reader(chunks))

    assert message["content"] == [{"type": "tool_use", "id": "c1", "name": "Read", "input": {"file_path": "/a"}}]


def test_from_client_error_message_stays_short():
    body = {"model": "m", "messages": [{"role": "x" * 100_000, "content": "hi"}]}

    with pytest.raises(ProtocolError) as caught:
        chat_request_to_canonical(body)

    assert caught.value.param == "messages.0.role"
    assert len(caught.value.message) < 200


@pytest.mark.parametrize("tool_file", ["cursor_agent_v1.0.json", "cline_like.json", "claude_code_16tools.json"])
def test_real_tool_sets_round_trip(tool_file):
    anthropic_tools = json.loads((DATA / tool_file).read_text())
    chat_tools = [
        {"type": "function", "function": {"name": tool["name"], "description": tool["description"], "parameters": tool["input_schema"]}}
        for tool in anthropic_tools
    ]
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "tools": chat_tools, "tool_choice": "auto"}

    canonical, _ = chat_request_to_canonical(body)
    again = canonical_to_chat_request(canonical, "gpt-4o", max_output_tokens=None)

    assert [tool["name"] for tool in canonical["tools"]] == [tool["name"] for tool in anthropic_tools]
    assert [tool["input_schema"] for tool in canonical["tools"]] == [tool["input_schema"] for tool in anthropic_tools]
    assert again["tools"] == chat_tools
    assert again["tool_choice"] == "auto"
