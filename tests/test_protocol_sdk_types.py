"""The translators' output checked against the official SDKs' own types and stream accumulators.

Pydantic validation with the `anthropic` and `openai` packages' models catches a field of the
wrong type or a missing required field, which hand-written expectations can miss.
"""

from __future__ import annotations

from typing import Any

import orjson
import pydantic
import pytest
from anthropic.types import Message as AnthropicMessage
from anthropic.types import RawMessageStreamEvent
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from engine.protocol.anthropic import MessageAssembler, message_to_events
from engine.protocol.openai_chat import ChatStreamWriter, chat_response_to_message, message_to_chat_response
from tests.test_protocol_anthropic import full_message
from tests.test_protocol_ollama import final_line, line
from tests.test_protocol_ollama import run_reader as run_ollama_reader
from tests.test_protocol_openai_chat import chunk, run_reader, tool_message_events, usage_chunk

EVENT_ADAPTER: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RawMessageStreamEvent)


def validate_events(events: list[dict[str, Any]]) -> AnthropicMessage:
    for event in events:
        EVENT_ADAPTER.validate_python(event)
    assembler = MessageAssembler()
    for event in events:
        assembler.feed(event)
    return AnthropicMessage.model_validate(assembler.message())


def chat_stream_events() -> list[dict[str, Any]]:
    return run_reader(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"reasoning_content": "think"}),
            chunk({"content": "Sure."}),
            chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "Read", "arguments": '{"file_path":'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"/a"}'}}]}),
            chunk({}, "tool_calls"),
            usage_chunk(300, 25, 256),
        ]
    )


def test_message_to_events_match_sdk_types():
    message = validate_events(message_to_events(full_message()))

    assert message.stop_reason == "tool_use"
    assert message.usage.cache_read_input_tokens == 3400


def test_chat_reader_events_match_sdk_types():
    message = validate_events(chat_stream_events())

    assert [block.type for block in message.content] == ["thinking", "text", "tool_use"]
    assert message.usage.input_tokens == 44


def test_ollama_reader_events_match_sdk_types():
    events = run_ollama_reader([line("Hi"), line("", tool_calls=[{"function": {"name": "LS", "arguments": {}}}]), final_line()])

    message = validate_events(events)

    assert message.stop_reason == "tool_use"


def test_chat_response_to_message_matches_sdk_type():
    resp = {
        "id": "chatcmpl-1",
        "choices": [{"message": {"content": "x", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "A", "arguments": "{}"}}]}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    }

    message = AnthropicMessage.model_validate(chat_response_to_message(resp, "gpt-4o"))

    assert message.stop_reason == "tool_use"


@pytest.mark.parametrize("include_usage", [True, False])
def test_chat_writer_chunks_accumulate_in_openai_sdk(include_usage):
    writer = ChatStreamWriter("gpt-4o", "chatcmpl-1", 1700000000, include_usage)
    frames = [frame for event in tool_message_events() for frame in writer.feed(event)]
    payloads = [frame[len(b"data: ") : -2] for frame in frames]
    assert payloads[-1] == b"[DONE]"
    state = ChatCompletionStreamState()

    for payload in payloads[:-1]:
        state.handle_chunk(ChatCompletionChunk.model_validate(orjson.loads(payload)))

    completion = state.get_final_completion()
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Reading"
    assert [call.function.name for call in choice.message.tool_calls] == ["Read", "LS"]
    assert orjson.loads(choice.message.tool_calls[0].function.arguments) == {"file_path": "/a"}
    if include_usage:
        assert completion.usage.prompt_tokens == 100
        assert completion.usage.prompt_tokens_details.cached_tokens == 95
    else:
        assert completion.usage is None


def test_chat_response_matches_sdk_type():
    response = message_to_chat_response(full_message(), "gpt-4o", "chatcmpl-2", 1700000000)

    completion = ChatCompletion.model_validate(response)

    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage.prompt_tokens == 3512
