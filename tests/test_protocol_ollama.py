"""Ollama native `/api/chat` translation (upstream side)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from engine.protocol.errors import ProtocolError
from engine.protocol.ollama import OllamaStreamReader, canonical_to_ollama_request, ollama_response_to_message
from tests.test_protocol_openai_chat import check_and_assemble, claude_code_body


def tool_conversation() -> dict[str, Any]:
    return {
        "model": "claude",
        "max_tokens": 2048,
        "system": "Be careful.",
        "temperature": 0.2,
        "stop_sequences": ["</done>"],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [
            {"name": "Read", "description": "Read a file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}},
            {"type": "web_search_20250305", "name": "web_search"},
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What is in a.txt? See"}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "read it", "signature": "s"},
                    {"type": "text", "text": "Reading."},
                    {"type": "tool_use", "id": "toolu_9", "name": "Read", "input": {"path": "a.txt"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_9", "content": [{"type": "text", "text": "hello"}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "QUJD"}}]},
                    {"type": "text", "text": "Summarise."},
                ],
            },
        ],
    }


def test_to_ollama_request_shape():
    request = canonical_to_ollama_request(tool_conversation(), "qwen3:8b", num_ctx=32768, stream=True)

    assert list(request) == ["model", "messages", "stream", "tools", "think", "options"]
    assert request["model"] == "qwen3:8b"
    assert request["stream"] is True
    assert request["think"] is True
    assert request["options"] == {"num_ctx": 32768, "num_predict": 2048, "temperature": 0.2, "stop": ["</done>"]}
    assert request["tools"] == [
        {"type": "function", "function": {"name": "Read", "description": "Read a file", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}
    ]


def test_to_ollama_messages():
    messages = canonical_to_ollama_request(tool_conversation(), "m", num_ctx=None, stream=False)["messages"]

    assert messages == [
        {"role": "system", "content": "Be careful."},
        {"role": "user", "content": "What is in a.txt? See", "images": ["iVBOR"]},
        {
            "role": "assistant",
            "content": "Reading.",
            "thinking": "read it",
            "tool_calls": [{"function": {"name": "Read", "arguments": {"path": "a.txt"}}}],
        },
        {"role": "tool", "content": "hello", "tool_name": "Read"},
        {"role": "user", "content": "Summarise.", "images": ["QUJD"]},
    ]


def test_to_ollama_stream_false_sent_explicitly():
    request = canonical_to_ollama_request(tool_conversation(), "m", num_ctx=None, stream=False)

    assert request["stream"] is False
    assert "num_ctx" not in request["options"]


def test_to_ollama_tool_choice_none_sends_no_tools():
    body = tool_conversation()
    body["tool_choice"] = {"type": "none"}

    assert "tools" not in canonical_to_ollama_request(body, "m", num_ctx=None, stream=False)


def test_to_ollama_thinking_disabled():
    body = tool_conversation()
    body["thinking"] = {"type": "disabled"}

    assert canonical_to_ollama_request(body, "m", num_ctx=None, stream=False)["think"] is False


def test_to_ollama_error_result_and_url_image():
    body = {
        "model": "m",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://example.invalid/x.png"}}, {"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "boom", "is_error": True}]},
        ],
    }

    messages = canonical_to_ollama_request(body, "m", num_ctx=None, stream=False)["messages"]

    assert messages[0] == {"role": "user", "content": "hi"}
    assert messages[2] == {"role": "tool", "content": "Error: boom", "tool_name": "Bash"}


def test_to_ollama_keeps_body_unchanged():
    body = claude_code_body()
    before = copy.deepcopy(body)

    request = canonical_to_ollama_request(body, "m", num_ctx=65536, stream=True)

    assert body == before
    assert len(request["tools"]) == 16
    assert request["messages"][-2] == {"role": "tool", "content": "print(1)", "tool_name": "Read"}


def test_from_ollama_tool_call_with_stop():
    resp = {
        "model": "qwen3",
        "message": {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "Read", "arguments": {"path": "a"}}}]},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 321,
        "eval_count": 12,
    }

    message = ollama_response_to_message(resp, "qwen3")

    assert message["stop_reason"] == "tool_use"
    assert len(message["content"]) == 1
    block = message["content"][0]
    assert block["type"] == "tool_use"
    assert block["id"].startswith("toolu_")
    assert block["input"] == {"path": "a"}
    assert message["usage"] == {"input_tokens": 321, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 12}


def test_from_ollama_text_thinking_length():
    resp = {"message": {"role": "assistant", "content": "Hi", "thinking": "greet"}, "done": True, "done_reason": "length"}

    message = ollama_response_to_message(resp, "m")

    assert message["content"] == [{"type": "thinking", "thinking": "greet", "signature": ""}, {"type": "text", "text": "Hi"}]
    assert message["stop_reason"] == "max_tokens"


def test_from_ollama_string_arguments():
    resp = {"message": {"tool_calls": [{"function": {"name": "A", "arguments": '{"x": 1}'}}, {"function": {"name": "B", "arguments": "{oops"}}]}, "done": True}

    blocks = ollama_response_to_message(resp, "m")["content"]

    assert blocks[0]["input"] == {"x": 1}
    assert blocks[1]["input"] == {"_raw_arguments": "{oops"}
    assert blocks[0]["id"] != blocks[1]["id"]


def test_from_ollama_error_object():
    with pytest.raises(ProtocolError) as caught:
        ollama_response_to_message({"error": "model 'x' not found"}, "m")

    assert caught.value.status == 502
    assert "model 'x' not found" in caught.value.message


def run_reader(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    reader = OllamaStreamReader("qwen3")
    events = []
    for line in lines:
        events.extend(reader.feed(line))
    events.extend(reader.finish())
    return events


def line(content: str = "", **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    message.update(extra)
    return {"model": "qwen3", "created_at": "2026-01-01T00:00:00Z", "message": message, "done": False}


def final_line(reason: str = "stop") -> dict[str, Any]:
    return {"model": "qwen3", "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": reason, "prompt_eval_count": 26, "eval_count": 282}


def test_stream_text_thinking_and_tools():
    events = run_reader(
        [
            line(thinking="Let me"),
            line(thinking=" check."),
            line("The"),
            line(" file"),
            line("", tool_calls=[{"function": {"name": "Read", "arguments": {"path": "a"}}}, {"function": {"name": "Read", "arguments": {"path": "b"}}}]),
            final_line(),
        ]
    )

    message = check_and_assemble(events)
    assert [block["type"] for block in message["content"]] == ["thinking", "text", "tool_use", "tool_use"]
    assert message["content"][0]["thinking"] == "Let me check."
    assert message["content"][1]["text"] == "The file"
    assert [block["input"] for block in message["content"][2:]] == [{"path": "a"}, {"path": "b"}]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"]["input_tokens"] == 26
    assert message["usage"]["output_tokens"] == 282


def test_stream_no_empty_text_block():
    events = run_reader([line(""), line(""), final_line()])

    message = check_and_assemble(events)
    assert message["content"] == []
    assert message["stop_reason"] == "end_turn"


def test_stream_error_line():
    events = run_reader([line("par"), {"error": "an error was encountered while running the model"}])

    message = check_and_assemble(events)
    assert message["error"]["message"] == "an error was encountered while running the model"
    assert message["content"] == [{"type": "text", "text": "par"}]


def test_stream_cut_before_done():
    events = run_reader([line("a")])

    message = check_and_assemble(events)
    assert "before the final done object" in message["error"]["message"]


def test_stream_empty_reports_error():
    events = run_reader([])

    assert events == [{"type": "error", "error": {"type": "api_error", "message": "upstream stream ended before any data"}}]


def test_stream_length_stop_reason():
    message = check_and_assemble(run_reader([line("abc"), final_line("length")]))

    assert message["stop_reason"] == "max_tokens"


def test_to_ollama_send_think_false():
    request = canonical_to_ollama_request(tool_conversation(), "m", num_ctx=None, stream=False, send_think=False)

    assert "think" not in request
