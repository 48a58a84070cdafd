"""`leangate stub-upstream` as a real process on a free loopback port, driven by the official SDKs.

The Anthropic and OpenAI SDKs check the wire formats; httpx drives Ollama's NDJSON, the Azure
routes and the faults, where the raw bytes matter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import anthropic
import httpx
import openai
import pytest

from engine import tokens

DATA = Path(__file__).parent / "data"
SYSTEM_TEXTS = json.loads((DATA / "claude_code_1.0.123_system.json").read_text())["blocks"]
TOOLS = json.loads((DATA / "claude_code_16tools.json").read_text())
STARTUP_TIMEOUT_S = 30.0
ANTHROPIC_KEY = "sk-ant-stub-test-secret"
OPENAI_KEY = "sk-openai-stub-test-secret"


@dataclass
class Stub:
    url: str
    process: subprocess.Popen
    stdout_path: Path
    stderr_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def anthropic(self, **options) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=ANTHROPIC_KEY, max_retries=options.pop("max_retries", 0), **options)

    def openai(self, **options) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=OPENAI_KEY, max_retries=options.pop("max_retries", 0), **options)


def start_stub(workdir: Path, *args: str) -> Stub:
    workdir.mkdir(parents=True, exist_ok=True)
    port_file = workdir / "port"
    stdout_path, stderr_path = workdir / "stdout.txt", workdir / "stderr.txt"
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "engine", "stub-upstream", "--port", "0", "--port-file", str(port_file), *args],
            stdout=stdout,
            stderr=stderr,
            env=os.environ.copy(),
        )
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"stub exited with {process.returncode}: {stderr_path.read_text()}")
        if port_file.exists():
            url = f"http://127.0.0.1:{port_file.read_text().strip()}"
            try:
                if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                    return Stub(url, process, stdout_path, stderr_path)
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"stub did not start within {STARTUP_TIMEOUT_S}s: {stderr_path.read_text()}")


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stub]:
    workdir = tmp_path_factory.mktemp("stub")
    process = start_stub(workdir, "--record", str(workdir / "record"))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def record_dir(stub: Stub) -> Path:
    return stub.stdout_path.parent / "record"


@pytest.fixture(scope="module")
def cache_stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stub]:
    process = start_stub(tmp_path_factory.mktemp("cache-stub"), "--prompt-cache")
    yield process
    process.stop()


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def sse_events(raw: str) -> list[tuple[str | None, str]]:
    """Split an SSE body into (event name, data) pairs."""
    events = []
    for chunk in raw.split("\n\n"):
        if not chunk.strip():
            continue
        name, data = None, ""
        for line in chunk.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
        events.append((name, data))
    return events


# --- command line ----------------------------------------------------------------------------------


def test_listening_line_and_port_file(stub):
    port = stub.url.rsplit(":", 1)[1]
    assert stub.stdout_path.read_text().splitlines()[0] == f"listening on http://127.0.0.1:{port}"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "example.org"])
def test_non_loopback_host_rejected(host):
    result = subprocess.run(
        [sys.executable, "-m", "engine", "stub-upstream", "--host", host, "--port", "0"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr


def test_bad_fault_spec_rejected():
    result = subprocess.run(
        [sys.executable, "-m", "engine", "stub-upstream", "--port", "0", "--fault", "status=abc"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "not a number" in result.stderr
    assert "Traceback" not in result.stderr


def test_health(stub):
    response = httpx.get(stub.url + "/health")
    assert response.status_code == 200


def test_unknown_path_is_404_in_openai_shape(stub):
    response = httpx.post(stub.url + "/v2/nothing", json={})
    assert response.status_code == 404
    assert "message" in response.json()["error"]


# --- Anthropic Messages ----------------------------------------------------------------------------


def test_anthropic_text_answer_and_usage(stub):
    body = {"model": "claude-sonnet-4-5", "max_tokens": 200, "system": "Be brief.", "messages": user("explain the build script in two lines")}
    message = stub.anthropic().messages.create(**body)
    assert message.content[0].text == "stub answer to: explain the build script in two lines"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == tokens.count_request(body)
    assert message.usage.output_tokens == tokens.count_text(message.content[0].text)


def test_anthropic_stream_event_order(stub):
    body = {"model": "claude-sonnet-4-5", "max_tokens": 200, "messages": user("list the files"), "stream": True}
    response = httpx.post(stub.url + "/v1/messages", json=body)
    names = [name for name, _ in sse_events(response.text)]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert names[0] == "message_start"
    assert names[1] == "content_block_start"
    assert set(names[2:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    message_delta = json.loads(sse_events(response.text)[-2][1])
    assert message_delta["usage"]["input_tokens"] == tokens.count_request(body)


def test_anthropic_sdk_stream_text(stub):
    body = {"model": "claude-sonnet-4-5", "max_tokens": 200, "messages": user("what is a monad")}
    with stub.anthropic().messages.stream(**body) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "stub answer to: what is a monad"
    assert final.usage.output_tokens == tokens.count_text(text)
    assert final.usage.input_tokens == tokens.count_request(body)


def test_anthropic_parallel_tool_calls_streamed(stub):
    text = 'look <<call Read {"file_path": "/src/app.py"}>> and <<call Grep {"pattern": "def main", "path": "/src"}>>'
    body = {"model": "claude-sonnet-4-5", "max_tokens": 200, "messages": user(text), "stream": True}
    raw = httpx.post(stub.url + "/v1/messages", json=body).text
    fragments: dict[int, int] = {}
    for name, data in sse_events(raw):
        event = json.loads(data)
        if name == "content_block_delta" and event["delta"]["type"] == "input_json_delta":
            fragments[event["index"]] = fragments.get(event["index"], 0) + 1
    assert fragments[0] >= 3
    assert fragments[1] >= 3

    with stub.anthropic().messages.stream(**{key: value for key, value in body.items() if key != "stream"}) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [block.name for block in final.content] == ["Read", "Grep"]
    assert final.content[0].input == {"file_path": "/src/app.py"}
    assert final.content[1].input == {"pattern": "def main", "path": "/src"}
    assert final.content[0].id.startswith("toolu_")
    assert final.content[0].id != final.content[1].id


def test_anthropic_tool_results_answer(stub):
    client = stub.anthropic()
    first = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=user("<<call Read {}>> <<call Glob {}>>"))
    results = [{"type": "tool_result", "tool_use_id": block.id, "content": "file text"} for block in first.content]
    messages = user("<<call Read {}>> <<call Glob {}>>") + [
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {"role": "user", "content": results},
    ]
    second = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=messages)
    assert second.content[0].text == "stub received 2 tool results."
    assert second.stop_reason == "end_turn"


def test_anthropic_max_tokens_truncates(stub):
    message = stub.anthropic().messages.create(model="claude-sonnet-4-5", max_tokens=3, messages=user("one two three four five six"))
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3


def test_anthropic_count_tokens(stub):
    body = {"model": "claude-sonnet-4-5", "system": SYSTEM_TEXTS[1], "tools": TOOLS, "messages": user("hello")}
    counted = stub.anthropic().messages.count_tokens(**body)
    assert counted.input_tokens == tokens.count_request(body)


def test_anthropic_models_list(stub):
    models = stub.anthropic().models.list()
    assert any(model.id.startswith("claude-") for model in models.data)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"model": "m", "messages": user("hi")}, "max_tokens"),
        ({"model": "m", "max_tokens": 10, "messages": []}, "messages"),
        ({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}, "non-empty"),
        (
            {
                "model": "m",
                "max_tokens": 10,
                "messages": [
                    {"role": "user", "content": "go"},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}]},
                    {"role": "user", "content": "no result here"},
                ],
            },
            "tool_result",
        ),
    ],
)
def test_anthropic_invalid_body_is_400(stub, body, fragment):
    response = httpx.post(stub.url + "/v1/messages", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert fragment in response.json()["error"]["message"]


def test_anthropic_malformed_json_is_400(stub):
    response = httpx.post(stub.url + "/v1/messages?beta=true", content=b'{"model": ', headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"


# --- OpenAI Chat Completions -----------------------------------------------------------------------


def test_chat_text_answer_and_usage(stub):
    completion = stub.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "explain the build script"}]
    )
    assert completion.choices[0].message.content == "stub answer to: explain the build script"
    assert completion.choices[0].finish_reason == "stop"
    canonical = {"system": "Be brief.", "messages": user("explain the build script")}
    assert completion.usage.prompt_tokens == tokens.count_request(canonical)
    assert completion.usage.prompt_tokens_details.cached_tokens == 0


def test_chat_stream_with_usage_chunk(stub):
    stream = stub.openai().chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": 'read it <<call Read {"file_path": "/src/app.py", "limit": 200}>>'}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    argument_fragments = [
        call.function.arguments
        for chunk in chunks
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or ()
        if call.function and call.function.arguments
    ]
    assert len(argument_fragments) >= 3
    assert json.loads("".join(argument_fragments)) == {"file_path": "/src/app.py", "limit": 200}
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "tool_calls"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens > 0


def test_chat_stream_ends_with_done(stub):
    body = {"model": "gpt-4o", "messages": user("hi"), "stream": True}
    events = sse_events(httpx.post(stub.url + "/v1/chat/completions", json=body).text)
    assert events[-1] == (None, "[DONE]")
    assert all(json.loads(data).get("usage") is None for _, data in events[:-1])


def test_chat_quirk_finish_reason_stop(stub):
    client = stub.openai()
    text = "<<call Bash {\"command\": \"ls\"}>> <<quirk finish_reason_stop>>"
    completion = client.chat.completions.create(model="gpt-4o", messages=user(text))
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.tool_calls[0].function.name == "Bash"

    stream = client.chat.completions.create(model="gpt-4o", messages=user(text), stream=True)
    finishes = [chunk.choices[0].finish_reason for chunk in stream if chunk.choices and chunk.choices[0].finish_reason]
    assert finishes == ["stop"]


def test_chat_tool_results_answer(stub):
    client = stub.openai()
    first = client.chat.completions.create(model="gpt-4o", messages=user("<<call Read {}>>"))
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    messages = user("<<call Read {}>>") + [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "file text"},
    ]
    second = client.chat.completions.create(model="gpt-4o", messages=messages)
    assert second.choices[0].message.content == "stub received 1 tool result."


def test_chat_orphan_tool_message_is_400(stub):
    with pytest.raises(openai.BadRequestError) as caught:
        stub.openai().chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_x", "content": "?"}]
        )
    assert "tool_calls" in caught.value.body["message"]


def test_same_conversation_counts_alike_in_each_format(stub):
    system, question = SYSTEM_TEXTS[1], "rename the helper in utils.py"
    anthropic_tools = TOOLS[:5]
    openai_tools = [
        {"type": "function", "function": {"name": tool["name"], "description": tool["description"], "parameters": tool["input_schema"]}}
        for tool in anthropic_tools
    ]
    counts = {}
    counts["anthropic"] = stub.anthropic().messages.create(
        model="m", max_tokens=50, system=system, tools=anthropic_tools, messages=user(question)
    ).usage.input_tokens
    counts["chat"] = stub.openai().chat.completions.create(
        model="m", tools=openai_tools, messages=[{"role": "system", "content": system}] + user(question)
    ).usage.prompt_tokens
    flat_tools = [{"type": "function", **tool["function"]} for tool in openai_tools]
    counts["responses"] = stub.openai().responses.create(model="m", instructions=system, tools=flat_tools, input=question).usage.input_tokens
    ollama = httpx.post(
        stub.url + "/api/chat",
        json={"model": "m", "stream": False, "tools": openai_tools, "options": {"num_ctx": 32768}, "messages": [{"role": "system", "content": system}] + user(question)},
    ).json()
    counts["ollama"] = ollama["prompt_eval_count"]
    assert max(counts.values()) - min(counts.values()) <= 5, counts


def test_azure_deployment_route(stub):
    client = openai.AzureOpenAI(azure_endpoint=stub.url, api_key="azure-key", api_version="2024-10-21", max_retries=0)
    completion = client.chat.completions.create(model="my-deployment", messages=user("hello azure"))
    assert completion.choices[0].message.content == "stub answer to: hello azure"
    assert completion.model == "my-deployment"


def test_azure_requires_api_version(stub):
    response = httpx.post(stub.url + "/openai/deployments/d1/chat/completions", headers={"api-key": "k"}, json={"messages": user("hi")})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "404"


def test_azure_requires_api_key(stub):
    url = stub.url + "/openai/deployments/d1/chat/completions?api-version=2024-10-21"
    response = httpx.post(url, headers={"authorization": "Bearer x"}, json={"messages": user("hi")})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "401"


def test_openai_models_list(stub):
    assert any(model.id == "gpt-4o" for model in stub.openai().models.list())


# --- OpenAI Responses ------------------------------------------------------------------------------


def test_responses_text_answer(stub):
    response = stub.openai().responses.create(model="gpt-5", instructions="Be brief.", input="summarise the diff")
    assert response.output_text == "stub answer to: summarise the diff"
    assert response.status == "completed"
    assert response.usage.input_tokens == tokens.count_request({"system": "Be brief.", "messages": user("summarise the diff")})


def test_responses_stream_events(stub):
    text = 'patch it <<call shell {"command": ["ls", "-la"]}>>'
    stream = stub.openai().responses.create(model="gpt-5", input=text, stream=True)
    events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-2:] == ["response.output_item.done", "response.completed"]
    assert kinds.count("response.function_call_arguments.delta") >= 3
    assert [event.sequence_number for event in events] == list(range(len(events)))
    call = events[-1].response.output[0]
    assert call.type == "function_call"
    assert json.loads(call.arguments) == {"command": ["ls", "-la"]}


def test_responses_function_call_output_answer(stub):
    items = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<<call shell {}>>"}]},
        {"type": "function_call", "name": "shell", "arguments": "{}", "call_id": "call_1"},
        {"type": "function_call_output", "call_id": "call_1", "output": "done"},
    ]
    response = stub.openai().responses.create(model="gpt-5", input=items)
    assert response.output_text == "stub received 1 tool result."


# --- Ollama ----------------------------------------------------------------------------------------


def test_ollama_streams_ndjson_by_default(stub):
    response = httpx.post(stub.url + "/api/chat", json={"model": "llama3", "messages": user("hello there")})
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert all(not line["done"] for line in lines[:-1])
    assert lines[-1]["done"] is True
    assert "".join(line["message"]["content"] for line in lines) == "stub answer to: hello there"
    assert lines[-1]["prompt_eval_count"] == tokens.count_request({"messages": user("hello there")})
    assert lines[-1]["eval_count"] == tokens.count_text("stub answer to: hello there")


def test_ollama_single_object_when_not_streaming(stub):
    answer = httpx.post(stub.url + "/api/chat", json={"model": "llama3", "stream": False, "messages": user("hello")}).json()
    assert answer["done"] is True
    assert answer["message"]["content"] == "stub answer to: hello"


def test_ollama_tool_calls_have_object_arguments(stub):
    text = '<<call get_weather {"city": "Tokyo"}>> <<call get_time {"zone": "JST"}>>'
    answer = httpx.post(stub.url + "/api/chat", json={"model": "llama3", "stream": False, "messages": user(text)}).json()
    calls = answer["message"]["tool_calls"]
    assert calls == [
        {"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}},
        {"function": {"name": "get_time", "arguments": {"zone": "JST"}}},
    ]
    assert answer["done_reason"] == "stop"


def test_ollama_tool_results_answer(stub):
    messages = user("<<call get_weather {}>>") + [
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {}}}]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ]
    answer = httpx.post(stub.url + "/api/chat", json={"model": "llama3", "stream": False, "messages": messages}).json()
    assert answer["message"]["content"] == "stub received 1 tool result."


def test_ollama_num_ctx_caps_prompt_count(stub):
    long_text = "word " * 500
    answer = httpx.post(
        stub.url + "/api/chat", json={"model": "llama3", "stream": False, "options": {"num_ctx": 100}, "messages": user(long_text)}
    ).json()
    assert answer["prompt_eval_count"] == 100


def test_ollama_invalid_body_is_400(stub):
    response = httpx.post(stub.url + "/api/chat", json={"model": "llama3", "messages": "hello"})
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)


# --- faults ----------------------------------------------------------------------------------------


def test_fault_status_with_retry_after(stub):
    body = {"model": "m", "max_tokens": 10, "messages": user("hi <<fault status=429,retry_after=2>>")}
    response = httpx.post(stub.url + "/v1/messages", json=body)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.json()["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize(
    ("path", "body", "check"),
    [
        ("/v1/chat/completions", {"model": "m", "messages": user("x <<fault status=503>>")}, lambda error: error["error"]["type"] == "server_error"),
        ("/v1/responses", {"model": "m", "input": "x <<fault status=503>>"}, lambda error: "message" in error["error"]),
        ("/api/chat", {"model": "m", "messages": user("x <<fault status=503>>")}, lambda error: isinstance(error["error"], str)),
    ],
)
def test_fault_status_in_each_error_shape(stub, path, body, check):
    response = httpx.post(stub.url + path, json=body)
    assert response.status_code == 503
    assert check(response.json())


def test_fault_times_fails_only_first_requests(stub):
    body = {"model": "m", "max_tokens": 10, "messages": user("hi <<fault status=500,times=2,retry_after=0>>")}
    statuses = [httpx.post(stub.url + "/v1/messages", json=body).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]


def test_sdk_retry_recovers_after_times(stub):
    client = stub.anthropic(max_retries=2)
    message = client.messages.create(model="m", max_tokens=10, messages=user("hi <<fault status=529,times=1,retry_after=0.1>>"))
    assert message.content[0].text.startswith("stub answer to: hi")


def test_fault_reset_closes_connection(stub):
    body = {"model": "m", "messages": user("hi <<fault reset>>")}
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(stub.url + "/v1/chat/completions", json=body)
    assert httpx.get(stub.url + "/health").status_code == 200


def test_fault_slow_first_byte(stub):
    started = time.monotonic()
    response = httpx.post(stub.url + "/api/chat", json={"model": "m", "stream": False, "messages": user("hi <<fault slow_first_byte=300>>")})
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_fault_cut_after_anthropic(stub):
    body = {"model": "m", "max_tokens": 50, "stream": True, "messages": user("tell me more <<fault cut_after=3>>")}
    events = sse_events(httpx.post(stub.url + "/v1/messages", json=body).text)
    assert [name for name, _ in events] == ["message_start", "content_block_start", "content_block_delta"]


def test_fault_cut_after_chat_has_no_done(stub):
    body = {"model": "m", "stream": True, "messages": user("tell me more <<fault cut_after=2>>")}
    events = sse_events(httpx.post(stub.url + "/v1/chat/completions", json=body).text)
    assert len(events) == 2
    assert (None, "[DONE]") not in events


def test_fault_cut_beyond_stream_end(stub):
    body = {"model": "m", "stream": True, "input": "hi <<fault cut_after=1000>>"}
    events = sse_events(httpx.post(stub.url + "/v1/responses", json=body).text)
    assert events[-1][0] != "response.completed"
    assert "response.completed" not in [name for name, _ in events]


def test_fault_midstream_error_anthropic(stub):
    body = {"model": "m", "max_tokens": 50, "stream": True, "messages": user("tell me more <<fault midstream_error=2>>")}
    events = sse_events(httpx.post(stub.url + "/v1/messages", json=body).text)
    assert [name for name, _ in events] == ["message_start", "content_block_start", "error"]
    assert json.loads(events[-1][1])["error"]["type"] == "overloaded_error"
    with pytest.raises(anthropic.APIStatusError):
        with stub.anthropic().messages.stream(model="m", max_tokens=50, messages=user("tell me more <<fault midstream_error=2>>")) as stream:
            stream.get_final_message()


def test_fault_midstream_error_openai(stub):
    stream = stub.openai().chat.completions.create(model="m", messages=user("more <<fault midstream_error=2>>"), stream=True)
    with pytest.raises(openai.APIError):
        list(stream)


def test_fault_midstream_error_ollama(stub):
    response = httpx.post(stub.url + "/api/chat", json={"model": "m", "messages": user("more words here <<fault midstream_error=2>>")})
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert len(lines) == 3
    assert "error" in lines[-1]


def test_fault_midstream_error_responses(stub):
    stream = stub.openai().responses.create(model="m", input="more <<fault midstream_error=3>>", stream=True)
    events = list(stream)
    assert len(events) == 4
    assert events[-1].type == "error"
    assert events[-1].code == "server_error"


def test_fault_cut_after_ollama(stub):
    response = httpx.post(stub.url + "/api/chat", json={"model": "m", "messages": user("more words here <<fault cut_after=2>>")})
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert len(lines) == 2
    assert not any(line["done"] for line in lines)


def test_fault_applies_to_count_tokens(stub):
    body = {"model": "m", "messages": user("count me <<fault status=429,retry_after=1>>")}
    response = httpx.post(stub.url + "/v1/messages/count_tokens", json=body)
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "rate_limit_error"


def test_bad_fault_marker_is_400(stub):
    response = httpx.post(stub.url + "/v1/chat/completions", json={"model": "m", "messages": user("<<fault status=200>>")})
    assert response.status_code == 400
    assert "between 400 and 599" in response.json()["error"]["message"]


def test_command_line_faults_and_latency(tmp_path):
    stub = start_stub(tmp_path, "--fault", "status=503,times=1", "--latency-ms", "150")
    try:
        body = {"model": "m", "max_tokens": 10, "messages": user("hi")}
        started = time.monotonic()
        first = httpx.post(stub.url + "/v1/messages", json=body)
        second = httpx.post(stub.url + "/v1/messages", json=body)
        elapsed = time.monotonic() - started
    finally:
        stub.stop()
    assert first.status_code == 503
    assert second.status_code == 200
    assert elapsed >= 0.3


# --- recording -------------------------------------------------------------------------------------


def test_record_writes_body_and_redacted_sidecar(stub, record_dir):
    raw = json.dumps({"model": "m", "max_tokens": 10, "messages": user("recorded request 7f3a")}).encode()
    headers = {"content-type": "application/json", "x-api-key": "secret-one", "authorization": "Bearer secret-two", "api-key": "secret-three"}
    httpx.post(stub.url + "/v1/messages", content=raw, headers=headers)
    matches = [path for path in record_dir.glob("*-anthropic.json") if path.read_bytes() == raw]
    assert len(matches) == 1
    sidecar = matches[0].with_name(matches[0].name.replace(".json", ".meta.json"))
    metadata = json.loads(sidecar.read_text())
    assert metadata["path"] == "/v1/messages"
    assert metadata["headers"]["x-api-key"] == "<redacted>"
    assert metadata["headers"]["authorization"] == "<redacted>"
    assert metadata["headers"]["api-key"] == "<redacted>"
    assert metadata["input_tokens"] == tokens.count_request(json.loads(raw))
    assert "secret" not in sidecar.read_text()


def test_record_keeps_malformed_body(stub, record_dir):
    httpx.post(stub.url + "/v1/chat/completions", content=b"not json 91c2", headers={"content-type": "application/json"})
    matches = [path for path in record_dir.glob("*-openai-chat.json") if path.read_bytes() == b"not json 91c2"]
    assert len(matches) == 1
    assert json.loads(matches[0].with_name(matches[0].name.replace(".json", ".meta.json")).read_text())["input_tokens"] is None


def test_record_names_are_numbered(stub, record_dir):
    httpx.post(stub.url + "/api/chat", json={"model": "m", "stream": False, "options": {"num_ctx": 8192}, "messages": user("numbered")})
    names = sorted(path.name for path in record_dir.glob("*.json") if not path.name.endswith(".meta.json"))
    assert all(name[:6].isdigit() and name[6] == "-" for name in names)
    last = record_dir / names[-1]
    assert last.name.endswith("-ollama.json")
    assert json.loads(last.with_name(last.name.replace(".json", ".meta.json")).read_text())["num_ctx"] == 8192


# --- prompt caching through the stub ---------------------------------------------------------------


def cached_anthropic_body(question: str) -> dict:
    system = [{"type": "text", "text": text} for text in SYSTEM_TEXTS]
    system[-1]["cache_control"] = {"type": "ephemeral"}
    return {"model": "claude-sonnet-4-5", "max_tokens": 100, "tools": TOOLS, "system": system, "messages": user(question)}


def test_anthropic_prompt_cache_write_then_read(cache_stub):
    client = cache_stub.anthropic()
    first = client.messages.create(**cached_anthropic_body("first question"))
    second = client.messages.create(**cached_anthropic_body("second question"))
    total = tokens.count_request(cached_anthropic_body("second question"))
    assert first.usage.cache_creation_input_tokens > 1024
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.input_tokens + second.usage.cache_read_input_tokens + second.usage.cache_creation_input_tokens == total


def test_anthropic_prompt_cache_in_stream_message_delta(cache_stub):
    body = cached_anthropic_body("streamed question")
    body["model"] = "claude-opus-4-1"
    client = cache_stub.anthropic()
    client.messages.create(**body)
    events = sse_events(httpx.post(cache_stub.url + "/v1/messages", json={**body, "stream": True}).text)
    start = json.loads(events[0][1])["message"]["usage"]
    closing = json.loads(events[-2][1])["usage"]
    assert closing["cache_read_input_tokens"] > 0
    assert closing["cache_read_input_tokens"] == start["cache_read_input_tokens"]


def test_anthropic_five_breakpoints_is_400(cache_stub):
    body = cached_anthropic_body("x")
    body["tools"] = [dict(tool, cache_control={"type": "ephemeral"}) for tool in TOOLS[:5]]
    with pytest.raises(anthropic.BadRequestError) as caught:
        cache_stub.anthropic().messages.create(**body)
    assert "at most 4" in caught.value.body["error"]["message"]


def test_chat_prompt_cache_reports_cached_tokens(cache_stub):
    client = cache_stub.openai()
    messages = [{"role": "system", "content": SYSTEM_TEXTS[1]}]
    first = client.chat.completions.create(model="gpt-4o", messages=messages + user("first"))
    second = client.chat.completions.create(model="gpt-4o", messages=messages + user("second"))
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= 1024
    assert cached % 128 == 0
    assert cached <= second.usage.prompt_tokens


def test_responses_prompt_cache_reports_cached_tokens(cache_stub):
    client = cache_stub.openai()
    client.responses.create(model="gpt-5", instructions=SYSTEM_TEXTS[1], input="first")
    second = client.responses.create(model="gpt-5", instructions=SYSTEM_TEXTS[1], input="second")
    assert second.usage.input_tokens_details.cached_tokens >= 1024
