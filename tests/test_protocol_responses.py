"""OpenAI Responses translation: client requests, responses, streams, upstream side, Codex models."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.protocol.errors import ProtocolError
from engine.protocol.responses import (
    ResponsesStreamReader,
    ResponsesStreamWriter,
    canonical_to_responses_request,
    codex_models_body,
    is_openai_reasoning,
    message_to_response,
    responses_request_to_canonical,
    responses_to_message,
)
from engine.protocol.responses._common import RAW_ARGUMENTS_KEY, REDACTED_THINKING_PREFIX
from engine.protocol.sse import SSEParser

DATA = Path(__file__).parent / "data"
PNG_DATA_URL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
APPLY_PATCH_GRAMMAR = 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF'


def codex_tools() -> list[dict[str, Any]]:
    """The captured Codex function tools plus its freeform apply_patch tool and a hosted tool."""
    tools = json.loads((DATA / "codex_cli.openai_responses_format.json").read_text())
    tools.append(
        {
            "type": "custom",
            "name": "apply_patch",
            "description": "Use the `apply_patch` tool to edit files.",
            "format": {"type": "grammar", "syntax": "lark", "definition": APPLY_PATCH_GRAMMAR},
        }
    )
    tools.append({"type": "web_search"})
    return tools


def codex_request(**overrides: Any) -> dict[str, Any]:
    """A multi-turn request shaped like the ones Codex CLI sends with `store: false`."""
    body: dict[str, Any] = {
        "model": "gpt-5-codex",
        "instructions": "You are Codex, a coding agent.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<permissions>workspace-write</permissions>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>cwd=/repo</environment_context>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Why does test_parse fail?"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Look at the test first."}], "encrypted_content": "sig-abc"},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "shell", "arguments": '{"command":["pytest","-x"]}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "1 failed"},
            {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch\n*** End Patch"},
            {"type": "custom_tool_call_output", "call_id": "call_2", "output": "Done!"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Fixed the off-by-one."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Thanks, run it again."}]},
        ],
        "tools": codex_tools(),
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "conv-123",
    }
    body.update(overrides)
    return body


def translate(**overrides: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    return responses_request_to_canonical(codex_request(**overrides))


# --- request translation ---------------------------------------------------------------------


def test_codex_request_system_and_turns():
    canonical, _ = translate()

    assert canonical["model"] == "gpt-5-codex"
    assert canonical["system"] == [
        {"type": "text", "text": "You are Codex, a coding agent."},
        {"type": "text", "text": "<permissions>workspace-write</permissions>"},
    ]
    roles = [message["role"] for message in canonical["messages"]]
    assert roles == ["user", "assistant", "user", "assistant", "user", "assistant", "user"]
    first_user = canonical["messages"][0]["content"]
    assert [block["text"] for block in first_user] == ["<environment_context>cwd=/repo</environment_context>", "Why does test_parse fail?"]


def test_codex_request_function_call_round():
    canonical, _ = translate()
    assistant, results = canonical["messages"][1], canonical["messages"][2]

    assert assistant["content"][0] == {"type": "thinking", "thinking": "Look at the test first.", "signature": "sig-abc"}
    assert assistant["content"][1] == {"type": "tool_use", "id": "call_1", "name": "shell", "input": {"command": ["pytest", "-x"]}}
    assert results["content"] == [{"type": "tool_result", "tool_use_id": "call_1", "content": "1 failed"}]


def test_codex_request_custom_tool_call_round():
    canonical, _ = translate()
    call, result = canonical["messages"][3], canonical["messages"][4]

    assert call["content"] == [{"type": "tool_use", "id": "call_2", "name": "apply_patch", "input": {"input": "*** Begin Patch\n*** End Patch"}}]
    assert result["content"] == [{"type": "tool_result", "tool_use_id": "call_2", "content": "Done!"}]


def test_codex_request_tools_translated():
    canonical, side = translate()
    names = [tool["name"] for tool in canonical["tools"]]

    assert names == ["shell", "update_plan", "view_image", "apply_patch"]
    shell = canonical["tools"][0]
    original = codex_tools()[0]
    assert shell["input_schema"] == original["parameters"]
    assert shell["description"] == original["description"]
    assert "strict" not in shell
    assert side["dropped_tools"] == ["web_search"]
    assert side["custom_tools"] == ["apply_patch"]


def test_custom_tool_schema_and_grammar():
    canonical, _ = translate()
    apply_patch = canonical["tools"][3]

    assert apply_patch["input_schema"] == {
        "type": "object",
        "properties": {"input": {"type": "string"}},
        "required": ["input"],
    }
    assert apply_patch["description"].startswith("Use the `apply_patch` tool to edit files.")
    assert APPLY_PATCH_GRAMMAR in apply_patch["description"]
    assert "lark grammar" in apply_patch["description"]


def test_custom_tool_without_grammar():
    canonical, _ = translate(tools=[{"type": "custom", "name": "note"}], tool_choice=None, parallel_tool_calls=None)

    assert canonical["tools"][0]["name"] == "note"
    assert "`input` string" in canonical["tools"][0]["description"]


def test_side_fields_kept():
    _, side = translate(metadata={"ticket": "42"}, user="u-1")

    assert side["model"] == "gpt-5-codex"
    assert side["stream"] is True
    assert side["store"] is False
    assert side["prompt_cache_key"] == "conv-123"
    assert side["parallel_tool_calls"] is False
    assert side["metadata"] == {"ticket": "42"}
    assert side["include"] == ["reasoning.encrypted_content"]
    assert side["instructions"] == "You are Codex, a coding agent."
    assert side["dropped_fields"] == []


def test_unknown_top_level_fields_listed():
    _, side = translate(some_future_field=1)

    assert side["dropped_fields"] == ["some_future_field"]


def test_parallel_tool_calls_false_disables_parallel_use():
    canonical, _ = translate()

    assert canonical["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_tool_choice_variants():
    cases = [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "name": "shell"}, {"type": "tool", "name": "shell"}),
        ({"type": "custom", "name": "apply_patch"}, {"type": "tool", "name": "apply_patch"}),
        ({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "shell"}]}, {"type": "any"}),
        ({"type": "web_search"}, {"type": "auto"}),
    ]
    for choice, expected in cases:
        canonical, _ = translate(tool_choice=choice, parallel_tool_calls=True, reasoning=None)
        assert canonical["tool_choice"] == expected, choice


def test_no_tool_choice_and_parallel_default_sends_none():
    canonical, _ = translate(tool_choice=None, parallel_tool_calls=None)

    assert "tool_choice" not in canonical


def test_only_hosted_tools_leaves_no_tools():
    canonical, side = translate(tools=[{"type": "web_search"}, {"type": "local_shell"}], tool_choice="auto")

    assert "tools" not in canonical
    assert "tool_choice" not in canonical
    assert side["dropped_tools"] == ["web_search", "local_shell"]


def test_max_output_tokens_and_default():
    canonical, _ = translate(max_output_tokens=1234, reasoning=None)
    default, _ = translate()

    assert canonical["max_tokens"] == 1234
    assert default["max_tokens"] == 32000


def test_reasoning_effort_becomes_thinking_budget():
    medium, _ = translate()
    none, _ = translate(reasoning={"effort": "none"})
    small, _ = translate(reasoning={"effort": "high"}, max_output_tokens=1500)

    assert medium["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert "thinking" not in none
    assert small["thinking"] == {"type": "enabled", "budget_tokens": 1499}


def test_reasoning_dropped_when_no_room_or_forced_tool():
    tiny, _ = translate(max_output_tokens=512)
    forced, _ = translate(tool_choice="required")

    assert "thinking" not in tiny
    assert "thinking" not in forced


def test_sampling_copied_and_clamped():
    canonical, side = translate(reasoning=None, temperature=1.6, top_p=0.9)
    with_thinking, _ = translate(temperature=0.2, top_p=0.9)

    assert canonical["temperature"] == 1.0
    assert canonical["top_p"] == 0.9
    assert side["temperature"] == 1.6
    assert "temperature" not in with_thinking
    assert "top_p" not in with_thinking


def test_user_becomes_metadata_user_id():
    canonical, _ = translate(user="user-7")

    assert canonical["metadata"] == {"user_id": "user-7"}


def test_stream_flag_in_canonical():
    streaming, _ = translate()
    plain, side = translate(stream=None)

    assert streaming["stream"] is True
    assert plain["stream"] is False
    assert side["stream"] is False


def test_string_input_is_one_user_message():
    canonical, _ = responses_request_to_canonical({"model": "m", "input": "hello"})

    assert canonical["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]
    assert "system" not in canonical


def test_easy_message_without_type_and_string_content():
    canonical, _ = responses_request_to_canonical(
        {"model": "m", "input": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}]}
    )

    assert canonical["system"] == [{"type": "text", "text": "Be terse."}]
    assert canonical["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def test_late_developer_message_stays_in_place():
    canonical, _ = responses_request_to_canonical(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "one"},
                {"role": "assistant", "content": "ok"},
                {"role": "developer", "content": "Approval mode changed."},
                {"role": "user", "content": "two"},
            ],
        }
    )

    assert "system" not in canonical
    assert canonical["messages"][2] == {
        "role": "user",
        "content": [{"type": "text", "text": "Approval mode changed."}, {"type": "text", "text": "two"}],
    }


def test_consecutive_same_role_merged_and_empty_text_dropped():
    canonical, _ = responses_request_to_canonical(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": ""}]},
                {"role": "user", "content": ""},
                {"role": "user", "content": [{"type": "input_text", "text": "b"}]},
                {"role": "assistant", "content": [{"type": "output_text", "text": ""}]},
            ],
        }
    )

    assert canonical["messages"] == [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]


def test_parallel_outputs_grouped_and_leading():
    canonical, _ = responses_request_to_canonical(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "read both"},
                {"type": "function_call", "call_id": "c1", "name": "read", "arguments": '{"p":"a"}'},
                {"type": "function_call", "call_id": "c2", "name": "read", "arguments": '{"p":"b"}'},
                {"type": "function_call_output", "call_id": "c1", "output": "A"},
                {"type": "function_call_output", "call_id": "c2", "output": "B"},
                {"role": "user", "content": "now compare"},
            ],
        }
    )
    assistant, user = canonical["messages"][1], canonical["messages"][2]

    assert [block["id"] for block in assistant["content"]] == ["c1", "c2"]
    assert [block["type"] for block in user["content"]] == ["tool_result", "tool_result", "text"]
    assert [block.get("tool_use_id") for block in user["content"][:2]] == ["c1", "c2"]


def test_tool_results_moved_before_user_text():
    # A developer message between the call and its output would otherwise put text first.
    canonical, _ = responses_request_to_canonical(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "go"},
                {"type": "function_call", "call_id": "c1", "name": "read", "arguments": "{}"},
                {"role": "developer", "content": "note"},
                {"type": "function_call_output", "call_id": "c1", "output": "A"},
            ],
        }
    )

    assert [block["type"] for block in canonical["messages"][2]["content"]] == ["tool_result", "text"]


def test_function_call_output_content_array():
    canonical, _ = responses_request_to_canonical(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "look"},
                {"type": "function_call", "call_id": "c1", "name": "view_image", "arguments": '{"path":"x.png"}'},
                {
                    "type": "function_call_output",
                    "call_id": "c1",
                    "output": [{"type": "input_text", "text": "the image:"}, {"type": "input_image", "image_url": PNG_DATA_URL}],
                },
            ],
        }
    )
    result = canonical["messages"][2]["content"][0]

    assert result["tool_use_id"] == "c1"
    assert result["content"][0] == {"type": "text", "text": "the image:"}
    assert result["content"][1]["type"] == "image"
    assert result["content"][1]["source"]["media_type"] == "image/png"


def test_empty_tool_output_has_no_content():
    canonical, _ = responses_request_to_canonical(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "run"},
                {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": ""},
            ],
        }
    )

    assert canonical["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "c1"}]


def test_images_data_url_and_http_url():
    canonical, _ = responses_request_to_canonical(
        {
            "model": "m",
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "compare"},
                        {"type": "input_image", "image_url": PNG_DATA_URL, "detail": "high"},
                        {"type": "input_image", "image_url": "https://example.com/a.jpg"},
                    ],
                }
            ],
        }
    )
    blocks = canonical["messages"][0]["content"]

    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG_DATA_URL.split(",", 1)[1]},
    }
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}


def test_pdf_file_becomes_document():
    canonical, _ = responses_request_to_canonical(
        {
            "model": "m",
            "input": [{"role": "user", "content": [{"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQK"}]}],
        }
    )

    assert canonical["messages"][0]["content"][0] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"},
    }


def test_invalid_arguments_kept_raw():
    canonical, _ = responses_request_to_canonical(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "x"},
                {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": '{"command": ["ls"'},
                {"type": "function_call", "call_id": "c2", "name": "shell", "arguments": "[1, 2]"},
                {"type": "function_call", "call_id": "c3", "name": "shell", "arguments": ""},
            ],
        }
    )
    calls = canonical["messages"][1]["content"]

    assert calls[0]["input"] == {RAW_ARGUMENTS_KEY: '{"command": ["ls"'}
    assert calls[1]["input"] == {RAW_ARGUMENTS_KEY: "[1, 2]"}
    assert calls[2]["input"] == {}


def test_reasoning_items_carried_or_dropped():
    canonical, _ = responses_request_to_canonical(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "x"},
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "no signature"}]},
                {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": REDACTED_THINKING_PREFIX + "opaque"},
                {"type": "reasoning", "id": "rs_3", "summary": [{"type": "summary_text", "text": "a"}, {"type": "summary_text", "text": "b"}], "encrypted_content": "sig"},
                {"role": "assistant", "content": "answer"},
            ],
        }
    )

    assert canonical["messages"][1]["content"] == [
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "thinking", "thinking": "ab", "signature": "sig"},
        {"type": "text", "text": "answer"},
    ]


def test_reasoning_only_turn_dropped():
    canonical, _ = responses_request_to_canonical(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "x"},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "sig"},
                {"role": "user", "content": "y"},
            ],
        }
    )

    assert canonical["messages"] == [{"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]}]


def test_hosted_items_dropped():
    canonical, _ = responses_request_to_canonical(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "x"},
                {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "q"}},
                {"role": "assistant", "content": "done"},
            ],
        }
    )

    assert [message["role"] for message in canonical["messages"]] == ["user", "assistant"]


MALFORMED = [
    ("not a dict", None),
    ({"input": "x"}, "model"),
    ({"model": "", "input": "x"}, "model"),
    ({"model": "m"}, "input"),
    ({"model": "m", "input": 5}, "input"),
    ({"model": "m", "input": []}, "input"),
    ({"model": "m", "input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"model": "m", "input": "x", "conversation": "conv_1"}, "conversation"),
    ({"model": "m", "input": "x", "instructions": ["a"]}, "instructions"),
    ({"model": "m", "input": ["x"]}, "input.0"),
    ({"model": "m", "input": [{"content": "x"}]}, "input.0"),
    ({"model": "m", "input": [{"role": "tool", "content": "x"}]}, "input.0.role"),
    ({"model": "m", "input": [{"role": "user", "content": 3}]}, "input.0.content"),
    ({"model": "m", "input": [{"role": "user", "content": [3]}]}, "input.0.content.0"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "input.0.content.0.text"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input.0.content.0.type"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image"}]}]}, "input.0.content.0.image_url"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]}, "input.0.content.0.file_id"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "ftp://x/a.png"}]}]}, "input.0.content.0.image_url"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:image/bmp;base64,Qk0="}]}]}, "input.0.content.0.image_url"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png,raw"}]}]}, "input.0.content.0.image_url"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64,@@@@"}]}]}, "input.0.content.0.image_url"),
    ({"model": "m", "input": [{"role": "assistant", "content": [{"type": "input_image", "image_url": PNG_DATA_URL}]}]}, "input.0.content.0"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input.0.content.0"),
    ({"model": "m", "input": [{"type": "function_call", "name": "a", "arguments": "{}"}]}, "input.0.call_id"),
    ({"model": "m", "input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]}, "input.0.name"),
    ({"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "a", "arguments": {"x": 1}}]}, "input.0.arguments"),
    ({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]}, "input.0.call_id"),
    ({"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": 5}]}, "input.0.output"),
    ({"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": [{"type": "audio"}]}]}, "input.0.output.0.type"),
    ({"model": "m", "input": [{"type": "custom_tool_call", "call_id": "c", "name": "a", "input": 5}]}, "input.0.input"),
    ({"model": "m", "input": [{"type": "reasoning", "encrypted_content": 5}]}, "input.0.encrypted_content"),
    ({"model": "m", "input": [{"type": "reasoning", "encrypted_content": "s", "summary": "x"}]}, "input.0.summary"),
    ({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0.type"),
    ({"model": "m", "input": "x", "tools": {"a": 1}}, "tools"),
    ({"model": "m", "input": "x", "tools": [5]}, "tools.0"),
    ({"model": "m", "input": "x", "tools": [{"name": "a"}]}, "tools.0.type"),
    ({"model": "m", "input": "x", "tools": [{"type": "function"}]}, "tools.0.name"),
    ({"model": "m", "input": "x", "tools": [{"type": "function", "name": "a", "parameters": "x"}]}, "tools.0.parameters"),
    ({"model": "m", "input": "x", "tools": [{"type": "function", "name": "a", "description": 1}]}, "tools.0.description"),
    ({"model": "m", "input": "x", "tools": [{"type": "function", "name": "a"}, {"type": "function", "name": "a"}]}, "tools.1.name"),
    ({"model": "m", "input": "x", "tools": [{"type": "custom", "name": "a", "format": {"type": "grammar"}}]}, "tools.0.format.definition"),
    ({"model": "m", "input": "x", "tools": [{"type": "function", "name": "a"}], "tool_choice": {"type": "function", "name": "b"}}, "tool_choice.name"),
    ({"model": "m", "input": "x", "tools": [{"type": "function", "name": "a"}], "tool_choice": "sometimes"}, "tool_choice"),
    ({"model": "m", "input": "x", "tools": [{"type": "function", "name": "a"}], "tool_choice": {"type": "allowed_tools", "mode": "x"}}, "tool_choice.mode"),
    ({"model": "m", "input": "x", "tool_choice": 5}, "tool_choice"),
    ({"model": "m", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ({"model": "m", "input": "x", "max_output_tokens": "100"}, "max_output_tokens"),
    ({"model": "m", "input": "x", "max_output_tokens": True}, "max_output_tokens"),
    ({"model": "m", "input": "x", "temperature": "hot"}, "temperature"),
    ({"model": "m", "input": "x", "top_p": -1}, "top_p"),
    ({"model": "m", "input": "x", "stream": "yes"}, "stream"),
    ({"model": "m", "input": "x", "metadata": ["a"]}, "metadata"),
    ({"model": "m", "input": "x", "parallel_tool_calls": "no"}, "parallel_tool_calls"),
    ({"model": "m", "input": "x", "reasoning": "high"}, "reasoning"),
    ({"model": "m", "input": "x", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
]


@pytest.mark.parametrize(("body", "param"), MALFORMED, ids=[str(param) + f"-{i}" for i, (_, param) in enumerate(MALFORMED)])
def test_malformed_request_is_400_with_path(body, param):
    with pytest.raises(ProtocolError) as caught:
        responses_request_to_canonical(body)

    assert caught.value.status == 400
    assert caught.value.param == param
    assert caught.value.message


def test_previous_response_id_message_explains_statelessness():
    with pytest.raises(ProtocolError) as caught:
        responses_request_to_canonical({"model": "m", "input": "x", "previous_response_id": "resp_1"})

    assert "stateless" in caught.value.message
    assert caught.value.openai_body()["error"]["param"] == "previous_response_id"


def test_translation_does_not_mutate_the_body():
    body = codex_request()
    before = copy.deepcopy(body)

    responses_request_to_canonical(body)

    assert body == before


# --- response translation --------------------------------------------------------------------


def anthropic_message(content: list[dict[str, Any]], stop_reason: str = "end_turn", **usage: int) -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 100, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 3000, "output_tokens": 57, **usage},
    }


def test_answer_text_and_usage():
    _, side = translate()
    response = message_to_response(anthropic_message([{"type": "text", "text": "Hello"}]), side, "resp_abc", 1730000000)

    assert response["id"] == "resp_abc"
    assert response["object"] == "response"
    assert response["created_at"] == 1730000000
    assert response["status"] == "completed"
    assert response["incomplete_details"] is None
    assert response["error"] is None
    assert response["model"] == "claude-sonnet-4-5"
    assert response["output"] == [
        {
            "id": "msg_abc_0",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}],
        }
    ]
    assert response["usage"] == {
        "input_tokens": 3120,
        "input_tokens_details": {"cached_tokens": 3000, "cache_write_tokens": 20},
        "output_tokens": 57,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 3177,
    }
    assert response["store"] is False
    assert response["parallel_tool_calls"] is False
    assert response["prompt_cache_key"] == "conv-123"


def test_answer_tool_calls_and_reasoning():
    _, side = translate()
    message = anthropic_message(
        [
            {"type": "thinking", "thinking": "Plan it.", "signature": "sig-1"},
            {"type": "text", "text": "Running tests."},
            {"type": "tool_use", "id": "toolu_1", "name": "shell", "input": {"command": ["pytest"]}},
            {"type": "tool_use", "id": "toolu_2", "name": "apply_patch", "input": {"input": "*** Begin Patch"}},
            {"type": "redacted_thinking", "data": "opaque"},
        ],
        stop_reason="tool_use",
    )

    output = message_to_response(message, side, "resp_x", 1)["output"]

    assert [item["type"] for item in output] == ["reasoning", "message", "function_call", "custom_tool_call", "reasoning"]
    assert output[0] == {"id": "rs_x_0", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Plan it."}], "encrypted_content": "sig-1"}
    assert output[2]["call_id"] == "toolu_1"
    assert output[2]["name"] == "shell"
    assert output[2]["arguments"] == '{"command":["pytest"]}'
    assert output[3]["call_id"] == "toolu_2"
    assert output[3]["input"] == "*** Begin Patch"
    assert output[4]["encrypted_content"] == REDACTED_THINKING_PREFIX + "opaque"


def test_answer_reasoning_round_trips_to_thinking():
    _, side = translate()
    blocks = [
        {"type": "thinking", "thinking": "Plan it.", "signature": "sig-1"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "ok"},
    ]
    output = message_to_response(anthropic_message(blocks), side, "resp_x", 1)["output"]

    canonical, _ = responses_request_to_canonical({"model": "m", "input": [{"role": "user", "content": "q"}, *output]})

    assert canonical["messages"][1]["content"] == blocks


def test_answer_max_tokens_is_incomplete():
    _, side = translate()
    response = message_to_response(anthropic_message([{"type": "text", "text": "cut"}], stop_reason="max_tokens"), side, "resp_1", 1)

    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"


def test_answer_refusal_is_content_filter():
    _, side = translate()
    response = message_to_response(anthropic_message([], stop_reason="refusal"), side, "resp_1", 1)

    assert response["incomplete_details"] == {"reason": "content_filter"}


def test_answer_adjacent_text_blocks_share_one_message():
    _, side = translate()
    output = message_to_response(
        anthropic_message([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}, {"type": "text", "text": ""}]), side, "resp_1", 1
    )["output"]

    assert len(output) == 1
    assert [part["text"] for part in output[0]["content"]] == ["a", "b"]


def test_answer_raw_arguments_restored():
    _, side = translate()
    message = anthropic_message([{"type": "tool_use", "id": "t", "name": "shell", "input": {RAW_ARGUMENTS_KEY: '{"broken'}}], "tool_use")

    output = message_to_response(message, side, "resp_1", 1)["output"]

    assert output[0]["arguments"] == '{"broken'


def test_answer_parses_with_openai_sdk_types():
    from openai.types.responses import Response

    _, side = translate()
    message = anthropic_message(
        [
            {"type": "thinking", "thinking": "t", "signature": "s"},
            {"type": "text", "text": "x"},
            {"type": "tool_use", "id": "a", "name": "shell", "input": {}},
            {"type": "tool_use", "id": "b", "name": "apply_patch", "input": {"input": "p"}},
        ],
        "tool_use",
    )

    parsed = Response.model_validate(message_to_response(message, side, "resp_1", 1))

    assert parsed.output_text == "x"
    assert parsed.usage.input_tokens_details.cached_tokens == 3000
    assert [item.type for item in parsed.output] == ["reasoning", "message", "function_call", "custom_tool_call"]


# --- stream writer ---------------------------------------------------------------------------


def decode(chunks: list[bytes]) -> list[dict[str, Any]]:
    """Parse SSE bytes, checking that each `event:` line names the JSON `type`."""
    parser = SSEParser()
    events = []
    for chunk in chunks:
        for name, data in parser.feed(chunk):
            event = orjson.loads(data)
            assert name == event["type"]
            events.append(event)
    for name, data in parser.finish():
        events.append(orjson.loads(data))
    return events


def run_writer(canonical_events: list[dict[str, Any]], side: dict[str, Any] | None = None, close: bool = True) -> list[dict[str, Any]]:
    if side is None:
        side = translate()[1]
    writer = ResponsesStreamWriter(side, "resp_s1", 1730000000)
    chunks: list[bytes] = []
    for event in canonical_events:
        chunks += writer.feed(event)
    if close:
        chunks += writer.close()
    return decode(chunks)


def message_start(input_tokens: int = 100, cache_read: int = 3000) -> dict[str, Any]:
    return {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0, "cache_read_input_tokens": cache_read, "output_tokens": 1},
        },
    }


def block_events(index: int, block: dict[str, Any], deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"type": "content_block_start", "index": index, "content_block": block},
        *({"type": "content_block_delta", "index": index, "delta": delta} for delta in deltas),
        {"type": "content_block_stop", "index": index},
    ]


def message_end(stop_reason: str, output_tokens: int = 42) -> list[dict[str, Any]]:
    return [
        {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": {"output_tokens": output_tokens}},
        {"type": "message_stop"},
    ]


def check_sequence(events: list[dict[str, Any]]) -> None:
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created"
    assert events[1]["type"] == "response.in_progress"
    finals = [event for event in events if event["type"] in ("response.completed", "response.incomplete", "response.failed")]
    assert len(finals) == 1
    assert events[-1] is finals[0]
    assert {event["response"]["id"] for event in events if "response" in event} == {"resp_s1"}


def test_stream_text_event_by_event():
    events = run_writer(
        [message_start(), *block_events(0, {"type": "text", "text": ""}, [{"type": "text_delta", "text": "Hel"}, {"type": "text_delta", "text": "lo"}]), *message_end("end_turn")]
    )

    check_sequence(events)
    assert [event["type"] for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[0]["response"]["status"] == "in_progress"
    assert events[0]["response"]["usage"] is None
    assert events[2]["item"] == {"id": "msg_s1_0", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    assert [event["delta"] for event in events[4:6]] == ["Hel", "lo"]
    assert all(event["item_id"] == "msg_s1_0" and event["output_index"] == 0 for event in events[3:8])
    assert events[6]["text"] == "Hello"
    assert events[8]["item"]["content"][0]["text"] == "Hello"
    final = events[-1]["response"]
    assert final["status"] == "completed"
    assert final["output"] == [events[8]["item"]]
    assert final["usage"] == {
        "input_tokens": 3100,
        "input_tokens_details": {"cached_tokens": 3000, "cache_write_tokens": 0},
        "output_tokens": 42,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 3142,
    }


def test_stream_function_call_event_by_event():
    events = run_writer(
        [
            message_start(),
            *block_events(
                0,
                {"type": "tool_use", "id": "toolu_1", "name": "shell", "input": {}},
                [
                    {"type": "input_json_delta", "partial_json": ""},
                    {"type": "input_json_delta", "partial_json": '{"command":'},
                    {"type": "input_json_delta", "partial_json": '["ls"]}'},
                ],
            ),
            *message_end("tool_use"),
        ]
    )

    check_sequence(events)
    assert [event["type"] for event in events[2:]] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = events[2]["item"]
    assert added == {"id": "fc_s1_0", "type": "function_call", "status": "in_progress", "call_id": "toolu_1", "name": "shell", "arguments": ""}
    assert events[5]["arguments"] == '{"command":["ls"]}'
    assert events[6]["item"]["arguments"] == '{"command":["ls"]}'
    assert events[6]["item"]["status"] == "completed"


def test_stream_tool_input_only_in_start_block():
    events = run_writer([message_start(), *block_events(0, {"type": "tool_use", "id": "t", "name": "shell", "input": {"command": ["pwd"]}}, []), *message_end("tool_use")])

    done = next(event for event in events if event["type"] == "response.function_call_arguments.done")
    assert done["arguments"] == '{"command":["pwd"]}'


def test_stream_tool_without_arguments_gets_empty_object():
    events = run_writer([message_start(), *block_events(0, {"type": "tool_use", "id": "t", "name": "update_plan", "input": {}}, []), *message_end("tool_use")])

    done = next(event for event in events if event["type"] == "response.output_item.done")
    assert done["item"]["arguments"] == "{}"


def test_stream_custom_tool_call():
    patch = "*** Begin Patch\n*** Update File: a.py\n+x = \"1\"\n*** End Patch"
    arguments = json.dumps({"input": patch})
    events = run_writer(
        [
            message_start(),
            *block_events(
                0,
                {"type": "tool_use", "id": "toolu_9", "name": "apply_patch", "input": {}},
                [{"type": "input_json_delta", "partial_json": arguments[:10]}, {"type": "input_json_delta", "partial_json": arguments[10:]}],
            ),
            *message_end("tool_use"),
        ]
    )

    check_sequence(events)
    assert [event["type"] for event in events[2:]] == [
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[2]["item"]["type"] == "custom_tool_call"
    assert events[2]["item"]["input"] == ""
    assert events[3]["delta"] == patch
    assert events[4]["input"] == patch
    assert events[5]["item"] == {"id": "ctc_s1_0", "type": "custom_tool_call", "status": "completed", "call_id": "toolu_9", "name": "apply_patch", "input": patch}


def test_stream_thinking_then_text():
    events = run_writer(
        [
            message_start(),
            *block_events(
                0,
                {"type": "thinking", "thinking": "", "signature": ""},
                [{"type": "thinking_delta", "thinking": "Let me "}, {"type": "thinking_delta", "thinking": "see."}, {"type": "signature_delta", "signature": "sig-9"}],
            ),
            *block_events(1, {"type": "text", "text": ""}, [{"type": "text_delta", "text": "Done."}]),
            *message_end("end_turn"),
        ]
    )

    check_sequence(events)
    assert [event["type"] for event in events[2:9]] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
    ]
    reasoning = events[8]["item"]
    assert reasoning == {"id": "rs_s1_0", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Let me see."}], "encrypted_content": "sig-9"}
    text_added = events[9]
    assert text_added["output_index"] == 1
    assert text_added["item"]["id"] == "msg_s1_1"
    assert [item["type"] for item in events[-1]["response"]["output"]] == ["reasoning", "message"]


def test_stream_redacted_thinking_item():
    events = run_writer([message_start(), *block_events(0, {"type": "redacted_thinking", "data": "xyz"}, []), *message_end("end_turn")])

    done = next(event for event in events if event["type"] == "response.output_item.done")
    assert done["item"]["encrypted_content"] == REDACTED_THINKING_PREFIX + "xyz"


def test_stream_server_tool_blocks_skipped():
    events = run_writer(
        [
            message_start(),
            *block_events(0, {"type": "server_tool_use", "id": "srv", "name": "web_search", "input": {}}, [{"type": "input_json_delta", "partial_json": "{}"}]),
            *block_events(1, {"type": "text", "text": ""}, [{"type": "text_delta", "text": "x"}]),
            *message_end("end_turn"),
        ]
    )

    check_sequence(events)
    added = [event for event in events if event["type"] == "response.output_item.added"]
    assert len(added) == 1
    assert added[0]["output_index"] == 0


def test_stream_max_tokens_is_incomplete():
    events = run_writer([message_start(), *block_events(0, {"type": "text", "text": ""}, [{"type": "text_delta", "text": "cut"}]), *message_end("max_tokens")])

    check_sequence(events)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["status"] == "incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_stream_upstream_cut_ends_failed():
    events = run_writer([message_start(), {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}, {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "par"}}])

    check_sequence(events)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["status"] == "failed"
    assert events[-1]["response"]["error"]["code"] == "server_error"
    assert events[-1]["response"]["usage"]["input_tokens"] == 3100


def test_stream_error_event_maps_code():
    cases = [
        ("rate_limit_error", "Rate limited", "rate_limit_exceeded"),
        ("overloaded_error", "Overloaded", "server_error"),
        ("api_error", "boom", "server_error"),
        ("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum", "context_length_exceeded"),
        ("billing_error", "no credit", "insufficient_quota"),
    ]
    for error_type, message, code in cases:
        events = run_writer([message_start(), {"type": "error", "error": {"type": error_type, "message": message}}])

        check_sequence(events)
        assert events[-1]["type"] == "response.failed"
        assert events[-1]["response"]["error"] == {"code": code, "message": message}, error_type


def test_stream_error_before_any_event():
    writer = ResponsesStreamWriter(translate()[1], "resp_s1", 1)

    events = decode(writer.error("rate_limit_exceeded", "Rate limit reached. Please try again in 1.5s."))

    check_sequence(events)
    assert events[-1]["response"]["error"]["code"] == "rate_limit_exceeded"
    assert events[-1]["response"]["usage"] is None


def test_stream_nothing_after_final_event():
    _, side = translate()
    writer = ResponsesStreamWriter(side, "resp_s1", 1)
    for event in [message_start(), *message_end("end_turn")]:
        writer.feed(event)

    assert writer.finished
    assert writer.feed(message_start()) == []
    assert writer.error("server_error", "late") == []
    assert writer.close() == []


def test_stream_open_block_closed_at_message_stop():
    events = run_writer([message_start(), {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}, {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}}, *message_end("end_turn")])

    check_sequence(events)
    assert [event["type"] for event in events[-3:]] == ["response.content_part.done", "response.output_item.done", "response.completed"]


def test_stream_ping_is_an_sse_comment():
    writer = ResponsesStreamWriter(translate()[1], "resp_s1", 1)
    writer.feed(message_start())

    assert writer.feed({"type": "ping"}) == [b": ping\n\n"]


def test_stream_usage_cumulative_from_message_delta():
    events = run_writer(
        [
            message_start(input_tokens=0, cache_read=0),
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"input_tokens": 50, "cache_read_input_tokens": 950, "output_tokens": 7}},
            {"type": "message_stop"},
        ]
    )

    usage = events[-1]["response"]["usage"]
    assert usage["input_tokens"] == 1000
    assert usage["input_tokens_details"]["cached_tokens"] == 950
    assert usage["output_tokens"] == 7
    assert usage["total_tokens"] == 1007


def test_stream_events_parse_with_openai_sdk():
    from openai.types.responses import ResponseStreamEvent
    from pydantic import TypeAdapter

    adapter = TypeAdapter(ResponseStreamEvent)
    events = run_writer(
        [
            message_start(),
            *block_events(0, {"type": "thinking", "thinking": "", "signature": ""}, [{"type": "thinking_delta", "thinking": "hm"}]),
            *block_events(1, {"type": "text", "text": ""}, [{"type": "text_delta", "text": "x"}]),
            *block_events(2, {"type": "tool_use", "id": "a", "name": "shell", "input": {}}, [{"type": "input_json_delta", "partial_json": "{}"}]),
            *block_events(3, {"type": "tool_use", "id": "b", "name": "apply_patch", "input": {}}, [{"type": "input_json_delta", "partial_json": '{"input":"p"}'}]),
            *message_end("tool_use"),
        ]
    )

    for event in events:
        adapter.validate_python(event)


# --- upstream request ------------------------------------------------------------------------


def anthropic_request() -> dict[str, Any]:
    tools = json.loads((DATA / "codex_cli.json").read_text())
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "system": [{"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Show me main.py"}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "read it", "signature": "sig"},
                    {"type": "text", "text": "Reading."},
                    {"type": "tool_use", "id": "toolu_1", "name": "shell", "input": {"command": ["cat", "main.py"]}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "print(1)"}]},
                    {"type": "text", "text": "And now?"},
                ],
            },
        ],
        "tools": [*tools, {"type": "web_search_20250305", "name": "web_search"}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "thinking": {"type": "enabled", "budget_tokens": 8000},
        "stream": True,
    }


def test_upstream_request_shape():
    request = canonical_to_responses_request(anthropic_request(), "gpt-5", max_output_tokens=16000)

    assert list(request) == [
        "model", "instructions", "input", "tools", "tool_choice", "parallel_tool_calls",
        "max_output_tokens", "reasoning", "include", "store", "stream",
    ]
    assert request["model"] == "gpt-5"
    assert request["instructions"] == "You are a coding agent.\n\nBe brief."
    assert request["store"] is False
    assert request["stream"] is True
    assert request["max_output_tokens"] == 16000
    assert canonical_to_responses_request(anthropic_request(), "gpt-5", max_output_tokens=64000)["max_output_tokens"] == 32000
    assert canonical_to_responses_request(anthropic_request(), "gpt-5", max_output_tokens=None)["max_output_tokens"] == 32000
    assert request["reasoning"] == {"effort": "medium"}
    assert request["include"] == ["reasoning.encrypted_content"]
    assert request["tool_choice"] == "auto"
    assert request["parallel_tool_calls"] is False
    assert [tool["name"] for tool in request["tools"]] == ["shell", "update_plan", "view_image", "apply_patch"]
    assert all(tool["type"] == "function" and tool["strict"] is False for tool in request["tools"])


def test_upstream_request_input_items():
    items = canonical_to_responses_request(anthropic_request(), "gpt-5", max_output_tokens=1000)["input"]

    assert items == [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Show me main.py"}, {"type": "input_image", "image_url": "data:image/png;base64,iVBOR", "detail": "auto"}],
        },
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Reading."}]},
        {"type": "function_call", "call_id": "toolu_1", "name": "shell", "arguments": '{"command":["cat","main.py"]}'},
        {"type": "function_call_output", "call_id": "toolu_1", "output": "print(1)"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "And now?"}]},
    ]


def test_upstream_request_is_deterministic_bytes():
    first = orjson.dumps(canonical_to_responses_request(anthropic_request(), "gpt-5", max_output_tokens=1000))
    second = orjson.dumps(canonical_to_responses_request(anthropic_request(), "gpt-5", max_output_tokens=1000))

    assert first == second


def test_upstream_request_tool_choice_and_errors():
    body = anthropic_request()
    body["tool_choice"] = {"type": "tool", "name": "shell"}
    body["messages"][2]["content"][0] = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "no such file", "is_error": True}
    body["thinking"] = {"type": "disabled"}

    request = canonical_to_responses_request(body, "gpt-5", max_output_tokens=1000)

    assert request["tool_choice"] == {"type": "function", "name": "shell"}
    assert request["parallel_tool_calls"] is True
    assert "reasoning" not in request
    assert request["input"][3]["output"] == "Error: no such file"


def test_upstream_request_image_in_tool_result():
    body = anthropic_request()
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/x.png"}}
    body["messages"][2]["content"][0]["content"].append(image)

    output = canonical_to_responses_request(body, "gpt-5", max_output_tokens=1000)["input"][3]["output"]

    assert output == [{"type": "input_text", "text": "print(1)"}, {"type": "input_image", "image_url": "https://example.com/x.png", "detail": "auto"}]


def test_client_request_round_trips_through_upstream_request():
    canonical, _ = translate(reasoning=None)

    request = canonical_to_responses_request(canonical, "gpt-5", max_output_tokens=1000)
    types = [item["type"] for item in request["input"]]

    assert types == ["message", "function_call", "function_call_output", "function_call", "function_call_output", "message", "message"]
    assert request["input"][1]["arguments"] == '{"command":["pytest","-x"]}'
    assert request["input"][3]["arguments"] == '{"input":"*** Begin Patch\\n*** End Patch"}'


# --- upstream response -----------------------------------------------------------------------


def openai_response(output: list[dict[str, Any]], status: str = "completed", **extra: Any) -> dict[str, Any]:
    return {
        "id": "resp_up",
        "object": "response",
        "created_at": 1,
        "status": status,
        "model": "gpt-5",
        "output": output,
        "usage": {"input_tokens": 1200, "input_tokens_details": {"cached_tokens": 1000}, "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 12}, "total_tokens": 1230},
        **extra,
    }


def test_upstream_answer_to_message():
    message = responses_to_message(
        openai_response(
            [
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "think"}], "encrypted_content": "enc"},
                {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed", "content": [{"type": "output_text", "text": "Hi", "annotations": []}]},
                {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "shell", "arguments": '{"command":["ls"]}', "status": "completed"},
                {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch"},
                {"type": "web_search_call", "id": "ws_1", "status": "completed"},
            ]
        )
    )

    assert message["content"] == [
        {"type": "thinking", "thinking": "think", "signature": "openai-reasoning:rs_1:enc"},
        {"type": "text", "text": "Hi"},
        {"type": "tool_use", "id": "call_1", "name": "shell", "input": {"command": ["ls"]}},
        {"type": "tool_use", "id": "call_2", "name": "apply_patch", "input": {"input": "*** Begin Patch"}},
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {
        "input_tokens": 200,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1000,
        "output_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 12},
    }


def test_upstream_answer_stop_reasons():
    text = [{"type": "message", "content": [{"type": "output_text", "text": "x"}]}]

    assert responses_to_message(openai_response(text))["stop_reason"] == "end_turn"
    assert responses_to_message(openai_response(text, "incomplete", incomplete_details={"reason": "max_output_tokens"}))["stop_reason"] == "max_tokens"
    assert responses_to_message(openai_response(text, "incomplete", incomplete_details={"reason": "content_filter"}))["stop_reason"] == "refusal"


def test_upstream_answer_failed_and_invalid():
    with pytest.raises(ProtocolError) as rate:
        responses_to_message(openai_response([], "failed", error={"code": "rate_limit_exceeded", "message": "slow down"}))
    with pytest.raises(ProtocolError) as failed:
        responses_to_message(openai_response([], "failed", error={"code": "server_error", "message": "boom"}))
    with pytest.raises(ProtocolError) as invalid:
        responses_to_message({"output": "nope"})

    assert rate.value.status == 429
    assert "slow down" in rate.value.message
    assert failed.value.status == 502
    assert invalid.value.status == 502


def test_usage_round_trip():
    message = anthropic_message([{"type": "text", "text": "x"}])
    _, side = translate()
    response = message_to_response(message, side, "resp_1", 1)

    back = responses_to_message({**response, "usage": response["usage"]})["usage"]

    for key in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens"):
        assert back[key] == message["usage"][key], key


# --- upstream stream reader ------------------------------------------------------------------


def check_and_assemble(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Check the canonical stream grammar and rebuild the message from it."""
    assert events[0]["type"] == "message_start"
    message = copy.deepcopy(events[0]["message"])
    open_index = None
    partial: dict[int, str] = {}
    for event in events[1:]:
        kind = event["type"]
        if kind == "content_block_start":
            assert open_index is None, "blocks must not interleave"
            assert event["index"] == len(message["content"])
            open_index = event["index"]
            message["content"].append(copy.deepcopy(event["content_block"]))
        elif kind == "content_block_delta":
            assert event["index"] == open_index
            block, delta = message["content"][open_index], event["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] += delta["signature"]
            else:
                partial[open_index] = partial.get(open_index, "") + delta["partial_json"]
        elif kind == "content_block_stop":
            assert event["index"] == open_index
            if open_index in partial:
                message["content"][open_index]["input"] = json.loads(partial[open_index])
            open_index = None
        elif kind == "message_delta":
            assert open_index is None
            message["stop_reason"] = event["delta"]["stop_reason"]
            message["usage"].update(event["usage"])
        elif kind == "error":
            message["error"] = event["error"]
    return message


def sse_events(*pairs: tuple[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, {"type": name, **data}) for name, data in pairs]


def read_stream(events: list[tuple[str, dict[str, Any]]], finish: bool = True) -> list[dict[str, Any]]:
    reader = ResponsesStreamReader("gpt-5")
    out: list[dict[str, Any]] = []
    for name, data in events:
        out += reader.feed(name, data)
    if finish:
        out += reader.finish()
    return out


CREATED = ("response.created", {"response": {"id": "resp_up", "model": "gpt-5", "status": "in_progress", "output": []}})


def completed(status: str = "completed", output: list[dict[str, Any]] | None = None, **extra: Any) -> tuple[str, dict[str, Any]]:
    response = openai_response(output or [], status, **extra)
    return (f"response.{status}", {"response": response})


def test_reader_text_stream():
    out = read_stream(
        sse_events(
            CREATED,
            ("response.output_item.added", {"output_index": 0, "item": {"type": "message", "id": "m", "content": []}}),
            ("response.content_part.added", {"output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": ""}}),
            ("response.output_text.delta", {"output_index": 0, "content_index": 0, "delta": "Hel"}),
            ("response.output_text.delta", {"output_index": 0, "content_index": 0, "delta": "lo"}),
            ("response.output_text.done", {"output_index": 0, "content_index": 0, "text": "Hello"}),
            ("response.output_item.done", {"output_index": 0, "item": {"type": "message", "content": [{"type": "output_text", "text": "Hello"}]}}),
            completed(),
        )
    )
    message = check_and_assemble(out)

    assert message["content"] == [{"type": "text", "text": "Hello"}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["input_tokens"] == 200
    assert message["usage"]["cache_read_input_tokens"] == 1000
    assert out[-1] == {"type": "message_stop"}


def test_reader_arguments_only_in_done_event():
    out = read_stream(
        sse_events(
            CREATED,
            ("response.output_item.added", {"output_index": 0, "item": {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": ""}}),
            ("response.function_call_arguments.done", {"output_index": 0, "arguments": '{"command":["ls"]}'}),
            ("response.output_item.done", {"output_index": 0, "item": {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": '{"command":["ls"]}'}}),
            completed(),
        )
    )
    message = check_and_assemble(out)

    assert message["content"] == [{"type": "tool_use", "id": "c1", "name": "shell", "input": {"command": ["ls"]}}]
    assert message["stop_reason"] == "tool_use"


def test_reader_arguments_only_in_item_done():
    out = read_stream(
        sse_events(
            CREATED,
            ("response.output_item.added", {"output_index": 0, "item": {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": ""}}),
            ("response.output_item.done", {"output_index": 0, "item": {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": '{"a":1}'}}),
            completed(),
        )
    )

    assert check_and_assemble(out)["content"][0]["input"] == {"a": 1}


def test_reader_deltas_and_done_not_duplicated():
    out = read_stream(
        sse_events(
            CREATED,
            ("response.output_item.added", {"output_index": 0, "item": {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": ""}}),
            ("response.function_call_arguments.delta", {"output_index": 0, "delta": '{"a":'}),
            ("response.function_call_arguments.done", {"output_index": 0, "arguments": '{"a":1}'}),
            ("response.output_item.done", {"output_index": 0, "item": {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": '{"a":1}'}}),
            completed(),
        )
    )

    fragments = [event["delta"]["partial_json"] for event in out if event["type"] == "content_block_delta"]
    assert "".join(fragments) == '{"a":1}'
    assert check_and_assemble(out)["content"][0]["input"] == {"a": 1}


def test_reader_custom_tool_call_stream():
    patch = 'line "one"\nline two'
    out = read_stream(
        sse_events(
            CREATED,
            ("response.output_item.added", {"output_index": 0, "item": {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": ""}}),
            ("response.custom_tool_call_input.delta", {"output_index": 0, "delta": patch[:6]}),
            ("response.custom_tool_call_input.done", {"output_index": 0, "input": patch}),
            ("response.output_item.done", {"output_index": 0, "item": {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": patch}}),
            completed(),
        )
    )

    assert check_and_assemble(out)["content"] == [{"type": "tool_use", "id": "c2", "name": "apply_patch", "input": {"input": patch}}]


def test_reader_reasoning_text_and_tool_blocks_in_order():
    out = read_stream(
        sse_events(
            CREATED,
            ("response.output_item.added", {"output_index": 0, "item": {"type": "reasoning", "id": "rs", "summary": []}}),
            ("response.reasoning_summary_text.delta", {"output_index": 0, "summary_index": 0, "delta": "plan"}),
            ("response.output_item.done", {"output_index": 0, "item": {"type": "reasoning", "id": "rs", "summary": [{"type": "summary_text", "text": "plan"}], "encrypted_content": "enc"}}),
            ("response.output_item.added", {"output_index": 1, "item": {"type": "message", "content": []}}),
            ("response.output_text.delta", {"output_index": 1, "content_index": 0, "delta": "ok"}),
            ("response.output_item.done", {"output_index": 1, "item": {"type": "message", "content": [{"type": "output_text", "text": "ok"}]}}),
            completed(),
        )
    )
    message = check_and_assemble(out)

    assert message["content"] == [
        {"type": "thinking", "thinking": "plan", "signature": "openai-reasoning:rs:enc"},
        {"type": "text", "text": "ok"},
    ]


def test_reader_items_only_in_completed():
    output = [{"type": "message", "content": [{"type": "output_text", "text": "late"}]}]
    out = read_stream(sse_events(CREATED, completed(output=output)))

    assert check_and_assemble(out)["content"] == [{"type": "text", "text": "late"}]


def test_reader_incomplete_and_failed():
    incomplete = read_stream(sse_events(CREATED, completed("incomplete", incomplete_details={"reason": "max_output_tokens"})))
    failed = read_stream(
        sse_events(CREATED, ("response.failed", {"response": {"id": "resp_up", "status": "failed", "error": {"code": "rate_limit_exceeded", "message": "try again in 1.5s"}}}))
    )

    assert check_and_assemble(incomplete)["stop_reason"] == "max_tokens"
    assert failed[-1]["type"] == "error"
    assert failed[-1]["error"]["type"] == "rate_limit_error"
    assert "try again in 1.5s" in failed[-1]["error"]["message"]


def test_reader_cut_stream_ends_with_error():
    out = read_stream(sse_events(CREATED, ("response.output_text.delta", {"output_index": 0, "content_index": 0, "delta": "par"})))

    assert out[-1]["type"] == "error"
    assert out[-1]["error"]["type"] == "api_error"


def test_reader_error_event():
    out = read_stream([("error", {"type": "error", "code": "server_error", "message": "oops"})])

    assert out == [{"type": "error", "error": {"type": "api_error", "message": "upstream server_error: oops"}}]


def test_reader_ignores_events_after_finish():
    reader = ResponsesStreamReader("gpt-5")
    for name, data in sse_events(CREATED, completed()):
        reader.feed(name, data)

    assert reader.finished
    assert reader.feed("response.output_text.delta", {"type": "response.output_text.delta", "delta": "x"}) == []
    assert reader.finish() == []


def test_reader_feeds_writer_end_to_end():
    """An OpenAI upstream stream, read into canonical events and written back as Responses."""
    upstream = sse_events(
        CREATED,
        ("response.output_item.added", {"output_index": 0, "item": {"type": "function_call", "call_id": "c1", "name": "apply_patch", "arguments": ""}}),
        ("response.function_call_arguments.delta", {"output_index": 0, "delta": '{"input":"*** Begin'}),
        ("response.function_call_arguments.done", {"output_index": 0, "arguments": '{"input":"*** Begin Patch"}'}),
        ("response.output_item.done", {"output_index": 0, "item": {"type": "function_call", "call_id": "c1", "name": "apply_patch", "arguments": '{"input":"*** Begin Patch"}'}}),
        completed(),
    )
    canonical_events = read_stream(upstream, finish=False)

    events = run_writer(canonical_events)

    check_sequence(events)
    done = [event for event in events if event["type"] == "response.output_item.done"]
    assert done[0]["item"]["type"] == "custom_tool_call"
    assert done[0]["item"]["input"] == "*** Begin Patch"
    assert events[-1]["response"]["usage"]["input_tokens"] == 1200
    assert events[-1]["response"]["usage"]["input_tokens_details"]["cached_tokens"] == 1000


# --- Codex model list ------------------------------------------------------------------------

CODEX_REQUIRED_FIELDS = {
    "slug", "display_name", "description", "supported_reasoning_levels", "shell_type", "visibility",
    "supported_in_api", "priority", "upgrade", "base_instructions", "supports_reasoning_summaries",
    "support_verbosity", "default_verbosity", "apply_patch_tool_type", "truncation_policy",
    "supports_parallel_tool_calls", "experimental_supported_tools",
}


def test_codex_models_body_fields():
    body = codex_models_body(["fast", "strong"])

    assert [model["slug"] for model in body["models"]] == ["fast", "strong"]
    assert [model["priority"] for model in body["models"]] == [0, 1]
    for model in body["models"]:
        assert CODEX_REQUIRED_FIELDS <= set(model)
        assert model["visibility"] == "list"
        assert model["truncation_policy"]["mode"] in ("bytes", "tokens")
        assert {level["effort"] for level in model["supported_reasoning_levels"]} <= {"none", "minimal", "low", "medium", "high", "xhigh"}
    assert codex_models_body([]) == {"models": []}


def test_codex_models_body_options():
    body = codex_models_body(["m"], context_window=128000, base_instructions="Be a careful coder.")

    assert body["models"][0]["context_window"] == 128000
    assert body["models"][0]["base_instructions"] == "Be a careful coder."


def test_stream_error_with_http_status():
    cases = [
        (429, "slow down", "rate_limit_exceeded"),
        (502, "Rate limit reached; try again later.", "rate_limit_exceeded"),
        (502, "Overloaded", "server_error"),
        (400, "prompt is too long", "context_length_exceeded"),
        (400, "bad image", "invalid_prompt"),
        (402, "no credit", "insufficient_quota"),
    ]
    for status, message, code in cases:
        writer = ResponsesStreamWriter(translate()[1], "resp_s1", 1)
        writer.feed(message_start())

        events = decode(writer.error(status, message))

        assert events[-1]["response"]["error"] == {"code": code, "message": message}, (status, message)


def test_upstream_reasoning_without_encrypted_content_dropped():
    message = responses_to_message(
        openai_response([{"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "t"}]}, {"type": "message", "content": [{"type": "output_text", "text": "x"}]}])
    )

    assert message["content"] == [{"type": "text", "text": "x"}]


def test_openai_reasoning_round_trip_through_codex():
    """OpenAI reasoning reaches Codex as a reasoning item, comes back, and goes upstream unchanged."""
    upstream_item = {"type": "reasoning", "id": "rs_9", "summary": [{"type": "summary_text", "text": "why"}], "encrypted_content": "gAAAA-blob"}
    message = responses_to_message(openai_response([upstream_item, {"type": "message", "content": [{"type": "output_text", "text": "x"}]}]))
    _, side = translate()
    codex_output = message_to_response(message, side, "resp_1", 1)["output"]

    canonical, _ = responses_request_to_canonical({"model": "m", "input": [{"role": "user", "content": "q"}, *codex_output, {"role": "user", "content": "more"}]})
    request = canonical_to_responses_request(canonical, "gpt-5", max_output_tokens=1000)

    assert codex_output[0]["encrypted_content"] == "openai-reasoning:rs_9:gAAAA-blob"
    assert is_openai_reasoning(canonical["messages"][1]["content"][0])
    assert request["input"][1] == upstream_item


def test_anthropic_thinking_not_sent_upstream():
    body = anthropic_request()

    items = canonical_to_responses_request(body, "gpt-5", max_output_tokens=1000)["input"]

    assert all(item["type"] != "reasoning" for item in items)
    assert not is_openai_reasoning(body["messages"][1]["content"][0])


def test_reader_signature_packs_reasoning_id():
    out = read_stream(
        sse_events(
            CREATED,
            ("response.output_item.added", {"output_index": 0, "item": {"type": "reasoning", "id": "rs_7", "summary": []}}),
            ("response.output_item.done", {"output_index": 0, "item": {"type": "reasoning", "id": "rs_7", "summary": [], "encrypted_content": "blob"}}),
            completed(),
        )
    )

    assert check_and_assemble(out)["content"] == [{"type": "thinking", "thinking": "", "signature": "openai-reasoning:rs_7:blob"}]


def test_local_shell_call_pairs_with_output():
    canonical, _ = responses_request_to_canonical(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "list"},
                {"type": "local_shell_call", "id": "lsh_1", "call_id": "c1", "status": "completed", "action": {"type": "exec", "command": ["ls"]}},
                {"type": "function_call_output", "call_id": "c1", "output": "a.py"},
            ],
        }
    )

    assert canonical["messages"][1]["content"] == [{"type": "tool_use", "id": "c1", "name": "local_shell", "input": {"type": "exec", "command": ["ls"]}}]
    assert canonical["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "c1", "content": "a.py"}]


def test_orphan_tool_output_becomes_text():
    canonical, _ = responses_request_to_canonical(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "search"},
                {"type": "web_search_call", "id": "ws_1", "status": "completed"},
                {"type": "function_call_output", "call_id": "ws_1", "output": "results"},
                {"type": "function_call_output", "call_id": "gone", "output": [{"type": "input_image", "image_url": PNG_DATA_URL}]},
                {"type": "function_call_output", "call_id": "empty", "output": ""},
            ],
        }
    )
    content = canonical["messages"][0]["content"]

    assert [message["role"] for message in canonical["messages"]] == ["user"]
    assert content[0] == {"type": "text", "text": "search"}
    assert content[1] == {"type": "text", "text": "Output of tool call ws_1:\nresults"}
    assert content[2] == {"type": "text", "text": "Output of tool call gone:"}
    assert content[3]["type"] == "image"
    assert content[4] == {"type": "text", "text": "Output of tool call empty: (empty)"}


def test_canonical_passes_messages_validation():
    from engine.protocol.anthropic import validate_messages_request

    bodies = [
        codex_request(),
        codex_request(tool_choice="required", temperature=0.3, user="u-1", max_output_tokens=4000),
        {
            "model": "m",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "x"}, {"type": "input_image", "image_url": PNG_DATA_URL}]},
                {"type": "function_call", "call_id": "c", "name": "n", "arguments": "{bad"},
                {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_image", "image_url": "https://example.com/x.png"}]},
                {"type": "reasoning", "encrypted_content": REDACTED_THINKING_PREFIX + "xx"},
                {"role": "assistant", "content": "ok"},
            ],
        },
    ]
    for body in bodies:
        canonical, _ = responses_request_to_canonical(body)

        assert validate_messages_request(copy.deepcopy(canonical)) == canonical


def test_stream_ping_skipped_by_openai_sdk():
    from openai._streaming import SSEDecoder

    writer = ResponsesStreamWriter(translate()[1], "resp_s1", 1)
    chunks: list[bytes] = []
    for event in [message_start(), {"type": "ping"}, *block_events(0, {"type": "text", "text": ""}, [{"type": "text_delta", "text": "hi"}]), {"type": "ping"}, *message_end("end_turn")]:
        chunks += writer.feed(event)

    names = [event.event for event in SSEDecoder().iter_bytes(iter(chunks))]

    assert b": ping\n\n" in chunks
    assert "ping" not in " ".join(names)
    assert names[-1] == "response.completed"
    assert len(names) == 9
