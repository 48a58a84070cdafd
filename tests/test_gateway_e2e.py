"""The gateway end to end: official SDKs -> `leangate serve` -> `leangate stub-upstream`, over HTTP,
through every adapter kind, including the cases that broke other gateways."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.conftest import ADAPTER_TEAMS

ADAPTERS = list(ADAPTER_TEAMS)
READ_TOOL = {
    "name": "Read",
    "description": "Read a file from the local filesystem.",
    "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]},
}
GREP_TOOL = {
    "name": "Grep",
    "description": "Search file contents with a regular expression.",
    "input_schema": {"type": "object", "properties": {"pattern": {"type": "string"}}, "required": ["pattern"]},
}
OPENAI_READ_TOOL = {"type": "function", "function": {"name": "Read", "description": READ_TOOL["description"],
                                                     "parameters": READ_TOOL["input_schema"]}}


def anthropic_client(gateway, team: str | None = None, **kwargs) -> anthropic.Anthropic:
    headers = {"x-leangate-team": team} if team else {}
    return anthropic.Anthropic(base_url=gateway.url, api_key="client-key", max_retries=0, default_headers=headers, **kwargs)


def openai_client(gateway, team: str | None = None) -> openai.OpenAI:
    headers = {"x-leangate-team": team} if team else {}
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="client-key", max_retries=0, default_headers=headers)


def unique(text: str) -> str:
    """Tag a prompt so the stub's recording of it can be found again."""
    return f"{text} [{uuid.uuid4().hex[:12]}]"


def recorded(stub, needle: str, timeout: float = 5.0) -> list[tuple[dict, dict]]:
    """Return (body, metadata) of every recorded upstream request whose body contains `needle`."""
    directory: Path = stub.extra["record"]
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for path in sorted(directory.glob("*.json")):
            if path.name.endswith(".meta.json"):
                continue
            raw = path.read_text(encoding="utf-8", errors="replace")
            if needle in raw:
                meta = path.with_name(path.name[:-5] + ".meta.json")
                found.append((json.loads(raw), json.loads(meta.read_text()) if meta.exists() else {}))
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def decisions(gateway) -> list[dict]:
    path: Path = gateway.extra["decisions"]
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def decision_for(gateway, request_id: str, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in decisions(gateway):
            if record["request_id"] == request_id:
                return record
        time.sleep(0.05)
    raise AssertionError(f"no decision record for {request_id}")


# --- text and tool calls through every adapter -----------------------------------------------------


@pytest.mark.parametrize("team", ADAPTERS)
def test_anthropic_create_text(gateway, team):
    client = anthropic_client(gateway, team)
    raw = client.messages.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=256, messages=[{"role": "user", "content": unique("Say hello")}]
    )
    message = raw.parse()
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert message.content[0].text
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0
    for header in ("x-leangate-request-id", "x-leangate-policy-version", "x-leangate-tier", "x-leangate-model"):
        assert raw.headers.get(header), header


@pytest.mark.parametrize("team", ADAPTERS)
def test_anthropic_stream_tool_call(gateway, team):
    client = anthropic_client(gateway, team)
    prompt = unique('Read the file. <<call Read {"file_path": "/src/app.py"}>>')
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=256, tools=[READ_TOOL],
                                messages=[{"role": "user", "content": prompt}]) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "tool_use"
    tool_uses = [block for block in message.content if block.type == "tool_use"]
    assert len(tool_uses) == 1
    assert tool_uses[0].name == "Read"
    assert tool_uses[0].input == {"file_path": "/src/app.py"}
    assert all(block.text for block in message.content if block.type == "text"), "no empty text blocks"


@pytest.mark.parametrize("team", ADAPTERS)
def test_anthropic_stream_text(gateway, team):
    client = anthropic_client(gateway, team)
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=256,
                                messages=[{"role": "user", "content": unique("Tell me a fact")}]) as stream:
        text = "".join(stream.text_stream)
        message = stream.get_final_message()
    assert text
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0


@pytest.mark.parametrize("team", ADAPTERS)
def test_openai_create_with_tools(gateway, team):
    client = openai_client(gateway, team)
    completion = client.chat.completions.create(
        model="leangate-auto",
        messages=[{"role": "user", "content": unique('Open it <<call Read {"file_path": "a.py"}>>')}],
        tools=[OPENAI_READ_TOOL],
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].function.name == "Read"
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"file_path": "a.py"}
    assert completion.usage.prompt_tokens > 0


@pytest.mark.parametrize("team", ADAPTERS)
def test_openai_stream_text_with_usage(gateway, team):
    client = openai_client(gateway, team)
    chunks = list(client.chat.completions.create(
        model="leangate-auto", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": unique("Hello there")}],
    ))
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens > 0
    assert all(chunk.usage is None for chunk in chunks[:-1])
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert finishes == ["stop"]


@pytest.mark.parametrize("team", ADAPTERS)
def test_openai_stream_tool_call_fragments(gateway, team):
    client = openai_client(gateway, team)
    stream = client.chat.completions.create(
        model="leangate-auto", stream=True, tools=[OPENAI_READ_TOOL],
        messages=[{"role": "user", "content": unique('<<call Read {"file_path": "/very/long/path/to/file.py"}>>')}],
    )
    arguments = ""
    names = []
    fragments = 0
    for chunk in stream:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if call.function and call.function.name:
                names.append(call.function.name)
            if call.function and call.function.arguments:
                arguments += call.function.arguments
                fragments += 1
    assert names == ["Read"]
    assert json.loads(arguments) == {"file_path": "/very/long/path/to/file.py"}
    # Ollama sends a tool call whole; the others stream its arguments in fragments.
    assert fragments >= (1 if team == "via-ollama" else 2)


# --- cases that broke other gateways -----------------------------------------------------------------


def test_beta_query_string_is_ignored(gateway):
    response = httpx.post(gateway.url + "/v1/messages?beta=true", headers={"anthropic-version": "2023-06-01"},
                          json={"model": "claude-sonnet-4-5", "max_tokens": 64,
                                "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "message"
    count = httpx.post(gateway.url + "/v1/messages/count_tokens?beta=true", headers={"anthropic-version": "2023-06-01"},
                       json={"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert count.status_code == 200
    assert count.json()["input_tokens"] > 0


def test_tool_results_lead_the_next_user_turn(gateway, stub):
    needle = unique("and now summarise")
    client = openai_client(gateway, "via-anthropic")
    client.chat.completions.create(
        model="leangate-auto",
        tools=[OPENAI_READ_TOOL],
        messages=[
            {"role": "user", "content": "Read two files"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "Read", "arguments": '{"file_path": "a"}'}},
                {"id": "call_b", "type": "function", "function": {"name": "Read", "arguments": '{"file_path": "b"}'}},
            ]},
            {"role": "tool", "tool_call_id": "call_a", "content": "contents of a"},
            {"role": "tool", "tool_call_id": "call_b", "content": "contents of b"},
            {"role": "user", "content": needle},
        ],
    )
    (body, _), = recorded(stub, needle)
    last = body["messages"][-1]
    assert last["role"] == "user"
    kinds = [block["type"] for block in last["content"]]
    assert kinds[:2] == ["tool_result", "tool_result"]
    assert [block["tool_use_id"] for block in last["content"][:2]] == ["call_a", "call_b"]
    assert kinds[2:] == ["text"]


@pytest.mark.parametrize("team", ["via-anthropic", "via-openai"])
def test_parallel_tool_calls(gateway, team):
    client = anthropic_client(gateway, team)
    prompt = unique('<<call Read {"file_path": "a"}>> <<call Grep {"pattern": "TODO"}>>')
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=256, tools=[READ_TOOL, GREP_TOOL],
                                     messages=[{"role": "user", "content": prompt}])
    uses = [block for block in message.content if block.type == "tool_use"]
    assert [block.name for block in uses] == ["Read", "Grep"]
    assert len({block.id for block in uses}) == 2


def test_stop_with_tool_calls_becomes_tool_use(gateway):
    client = anthropic_client(gateway, "via-openai")
    prompt = unique('<<quirk finish_reason_stop>> <<call Read {"file_path": "x"}>>')
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=256, tools=[READ_TOOL],
                                     messages=[{"role": "user", "content": prompt}])
    assert message.stop_reason == "tool_use"
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=256, tools=[READ_TOOL],
                                messages=[{"role": "user", "content": prompt + " again"}]) as stream:
        assert stream.get_final_message().stop_reason == "tool_use"


def test_stream_usage_is_not_double_counted(gateway, stub):
    client = anthropic_client(gateway, "via-anthropic")
    needle = unique("Count my tokens please")
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=128,
                                messages=[{"role": "user", "content": needle}]) as stream:
        message = stream.get_final_message()
        request_id = stream.response.headers["x-leangate-request-id"]
    (_, meta), = recorded(stub, needle)
    stub_count = meta["input_tokens"]
    # The stub repeats input usage in message_start and message_delta; the SDK and the log count it once.
    assert message.usage.input_tokens == stub_count
    record = decision_for(gateway, request_id)
    assert record["usage"]["input_tokens"] == stub_count
    assert record["usage"]["output_tokens"] == message.usage.output_tokens


def test_midstream_error_reaches_anthropic_client(gateway):
    client = anthropic_client(gateway, "via-anthropic")
    with pytest.raises(anthropic.APIError) as caught:
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=256,
                                    messages=[{"role": "user", "content": unique("<<fault midstream_error=3>> long answer")}]) as stream:
            for _ in stream:
                pass
    assert "error" in str(caught.value).lower() or caught.value.body


@pytest.mark.parametrize("team", ["via-openai", "via-ollama"])
def test_midstream_error_reaches_openai_client(gateway, team):
    client = openai_client(gateway, team)
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(
            model="leangate-auto", stream=True,
            messages=[{"role": "user", "content": unique("<<fault midstream_error=3>> long answer")}],
        ):
            pass


def test_pre_stream_error_keeps_its_status(gateway):
    client = anthropic_client(gateway, "via-anthropic")
    with pytest.raises(anthropic.BadRequestError) as caught:
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64,
                                    messages=[{"role": "user", "content": unique("<<fault status=400>>")}]) as stream:
            stream.get_final_message()
    assert caught.value.status_code == 400


def test_upstream_overload_is_retried_then_succeeds(gateway):
    client = anthropic_client(gateway, "via-anthropic")
    # The stub counts `times` per spec text, so a spec made unique by its retry_after fails only once.
    spec = f"status=529,times=1,retry_after=0.0{uuid.uuid4().int % 10**8:08d}"
    raw = client.messages.with_raw_response.create(model="claude-sonnet-4-5", max_tokens=64,
                                                   messages=[{"role": "user", "content": f"<<fault {spec}>> retry me"}])
    assert raw.parse().stop_reason == "end_turn"
    record = decision_for(gateway, raw.headers["x-leangate-request-id"])
    assert record["upstream"]["attempts"] == 2
    assert record["status"] == 200


def test_upstream_error_status_reaches_openai_client(gateway):
    client = openai_client(gateway, "via-openai")
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="leangate-auto",
                                       messages=[{"role": "user", "content": unique("<<fault status=400>>")}])
    assert caught.value.status_code == 400


def test_max_tokens_clamped_to_model_limit(gateway, stub):
    needle = unique("clamp me")
    client = anthropic_client(gateway, "via-openai", timeout=60)
    client.messages.create(model="claude-sonnet-4-5", max_tokens=32000, messages=[{"role": "user", "content": needle}])
    (body, _), = recorded(stub, needle)
    sent = body.get("max_completion_tokens") or body.get("max_tokens")
    assert sent == 16384


def test_ollama_gets_num_ctx(gateway, stub):
    needle = unique("context window")
    anthropic_client(gateway, "via-ollama").messages.create(model="claude-sonnet-4-5", max_tokens=64,
                                                            messages=[{"role": "user", "content": needle}])
    (body, _), = recorded(stub, needle)
    assert body["options"]["num_ctx"] == 32768


def test_azure_uses_deployment_path_and_api_key(gateway, stub):
    needle = unique("azure please")
    anthropic_client(gateway, "via-azure").messages.create(model="claude-sonnet-4-5", max_tokens=64,
                                                           messages=[{"role": "user", "content": needle}])
    (_, meta), = recorded(stub, needle)
    assert "/openai/deployments/" in meta["path"]
    assert meta["headers"].get("api-key") == "<redacted>"


# --- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [
    b"not json",
    b"[]",
    b"{}",
    b'{"model": "x", "max_tokens": 10}',
    b'{"model": "x", "max_tokens": "ten", "messages": [{"role": "user", "content": "hi"}]}',
    b'{"model": "x", "max_tokens": 10, "messages": [{"role": "robot", "content": "hi"}]}',
    b'{"model": "x", "max_tokens": 10, "messages": [{"role": "user", "content": ""}]}',
    b'{"model": "x", "max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}',
    b"",
])
def test_malformed_anthropic_request_gets_4xx(gateway, payload):
    response = httpx.post(gateway.url + "/v1/messages", content=payload,
                          headers={"content-type": "application/json", "anthropic-version": "2023-06-01"}, timeout=30)
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"]


@pytest.mark.parametrize("payload", [
    b"{",
    b'{"model": "x"}',
    b'{"model": "x", "messages": "hello"}',
    b'{"model": "x", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{bad"}}]}]}',
    b'{"model": "x", "messages": [{"role": "user", "content": "hi"}], "n": 3}',
])
def test_malformed_openai_request_gets_4xx(gateway, payload):
    response = httpx.post(gateway.url + "/v1/chat/completions", content=payload,
                          headers={"content-type": "application/json"}, timeout=30)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["message"]


def test_unknown_path_gets_404_in_protocol_shape(gateway):
    response = httpx.post(gateway.url + "/v1/messages/nope", json={}, timeout=10)
    assert response.status_code == 404
    assert response.json()["type"] == "error"
    response = httpx.get(gateway.url + "/v1/unknown", timeout=10)
    assert response.status_code == 404
    assert "error" in response.json()


# --- other endpoints -----------------------------------------------------------------------------------


def test_models_list_shapes(gateway):
    anthropic_shape = httpx.get(gateway.url + "/v1/models", headers={"anthropic-version": "2023-06-01"}, timeout=10).json()
    assert anthropic_shape["data"][0]["type"] == "model"
    ids = [entry["id"] for entry in anthropic_shape["data"]]
    assert "leangate-auto" in ids
    assert "claude-sonnet-4-5" in ids
    assert "*" not in ids
    openai_ids = [model.id for model in openai_client(gateway).models.list()]
    assert openai_ids == ids


def test_probe_and_health_endpoints(gateway):
    assert httpx.head(gateway.url + "/api/hello", timeout=10).status_code == 200
    assert httpx.get(gateway.url + "/api/hello", timeout=10).status_code == 200
    assert httpx.get(gateway.url + "/health/live", timeout=10).status_code == 200
    ready = httpx.get(gateway.url + "/health/ready", timeout=10)
    assert ready.status_code == 200
    assert ready.json()["policy_version"]


def test_count_tokens_counts_tools_and_images(gateway):
    client = anthropic_client(gateway)
    plain = client.messages.count_tokens(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}])
    with_tools = client.messages.count_tokens(model="claude-sonnet-4-5", tools=[READ_TOOL],
                                              messages=[{"role": "user", "content": "hi"}])
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    with_image = client.messages.count_tokens(model="claude-sonnet-4-5",
                                              messages=[{"role": "user", "content": [image, {"type": "text", "text": "hi"}]}])
    assert with_tools.input_tokens > plain.input_tokens
    assert with_image.input_tokens > plain.input_tokens


def test_decision_log_has_no_secrets_or_prompt_text(gateway):
    needle = unique("a private prompt text")
    anthropic_client(gateway, "via-anthropic").messages.create(model="claude-sonnet-4-5", max_tokens=32,
                                                               messages=[{"role": "user", "content": needle}])
    text = gateway.extra["decisions"].read_text()
    assert needle not in text
    for secret in ("sk-ant-test-secret-value", "sk-openai-test-secret-value", "azure-test-secret-value", "client-key"):
        assert secret not in text
        assert secret not in gateway.log()
    record = decisions(gateway)[-1]
    for key in ("request_id", "time", "team", "policy_version", "protocol", "requested_model", "tier", "tokens",
                "upstream", "status", "latency_ms", "usage"):
        assert key in record, key


def test_cut_stream_is_recorded_as_error(gateway):
    client = anthropic_client(gateway, "via-anthropic")
    with pytest.raises(anthropic.APIError):
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=256,
                                    messages=[{"role": "user", "content": unique("<<fault cut_after=3>> long answer")}]) as stream:
            request_id = stream.response.headers["x-leangate-request-id"]
            for _ in stream:
                pass
    record = decision_for(gateway, request_id)
    assert record["error"] == "upstream stream ended before message_stop"
    assert "stream ended before message_stop" in gateway.log()


def test_every_response_carries_gateway_headers(gateway):
    for method, path in (("GET", "/health/live"), ("GET", "/health/ready"), ("HEAD", "/api/hello"),
                         ("GET", "/metrics"), ("GET", "/admin/policy"), ("GET", "/v1/nope")):
        response = httpx.request(method, gateway.url + path, timeout=10)
        for header in ("x-leangate-request-id", "x-leangate-policy-version", "x-leangate-tier", "x-leangate-model"):
            assert response.headers.get(header), (path, header)
