"""Codex's protocol end to end: the official `openai` SDK against `leangate serve` in front of
`leangate stub-upstream`, once through every provider adapter the policy offers."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import openai
import pytest
from engine.localrun import LocalService as Process, start_stub
from tests.conftest import ADAPTER_TEAMS, launch_gateway

DATA = Path(__file__).parent / "data"
PNG_DATA_URL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch"

# The OpenAI provider speaking the Responses API upstream, added by the fixture below because the
# shipped policy has no team for it.
RESPONSES_TEAM = "via-openai-responses"
RESPONSES_TEAM_YAML = """extends: default
providers:
  openai-responses:
    kind: openai
    wire_api: responses
    base_url: ${LEANGATE_OPENAI_BASE_URL}
    api_key: ${OPENAI_API_KEY:-}
tiers:
  - {name: fast, provider: openai-responses, model: gpt-4o-mini, below: 0.35}
  - {name: strong, provider: openai-responses, model: gpt-4o}
"""
TEAMS = [*ADAPTER_TEAMS, RESPONSES_TEAM]
# Adapters whose upstream caches a long prompt prefix without cache_control breakpoints (the
# OpenAI-style automatic caching that the stub simulates).
AUTOMATIC_CACHE_TEAMS = {"via-openai", "via-azure", "via-compatible", RESPONSES_TEAM}


@pytest.fixture(scope="module")
def responses_stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """A stub of its own, with prompt caching simulated so the usage mapping is seen with cached tokens."""
    workdir = tmp_path_factory.mktemp("responses-stub")
    record = workdir / "record"
    process = start_stub(workdir, "--record", str(record), "--prompt-cache")
    process.extra["record"] = record
    yield process
    process.stop()


@pytest.fixture(scope="module")
def responses_gateway(tmp_path_factory: pytest.TempPathFactory, responses_stub: Process) -> Iterator[Process]:
    def add_responses_team(policy_dir: Path) -> None:
        (policy_dir / "teams" / f"{RESPONSES_TEAM}.yaml").write_text(RESPONSES_TEAM_YAML, encoding="utf-8")

    process = launch_gateway(tmp_path_factory.mktemp("responses-gateway"), responses_stub, add_responses_team)
    yield process
    process.stop()


@pytest.fixture
def gateway_url(responses_gateway: Process) -> str:
    return responses_gateway.url


@pytest.fixture(params=TEAMS)
def team(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def client(team: str, gateway_url: str) -> openai.OpenAI:
    """An SDK client configured as Codex would be, routed to one adapter by the team header."""
    return openai.OpenAI(
        base_url=gateway_url + "/v1",
        api_key="codex-key",
        max_retries=0,
        timeout=60,
        # These tests check the upstream round trip; repeated prompts must not be served from the cache.
        default_headers={"x-leangate-team": team, "session_id": str(uuid.uuid4()), "x-leangate-cache": "bypass"},
    )


def codex_tools() -> list[dict[str, Any]]:
    tools = json.loads((DATA / "codex_cli.openai_responses_format.json").read_text())
    tools.append(
        {
            "type": "custom",
            "name": "apply_patch",
            "description": "Edit files with a patch.",
            "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch" LF hunk+ "*** End Patch"'},
        }
    )
    return tools


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def create(client: openai.OpenAI, items: list[dict[str, Any]], **extra: Any) -> Any:
    return client.responses.create(
        model="gpt-5-codex", instructions="You are Codex.", input=items, tools=codex_tools(), store=False, **extra
    )


def stream_events(client: openai.OpenAI, items: list[dict[str, Any]]) -> list[Any]:
    with client.responses.stream(
        model="gpt-5-codex", instructions="You are Codex.", input=items, tools=codex_tools(), store=False
    ) as stream:
        return list(stream)


def check_stream_shape(events: list[Any]) -> Any:
    """Check the lifecycle events and sequence numbers; return the final response."""
    types = [event.type for event in events]
    finals = [event for event in events if event.type in ("response.completed", "response.incomplete", "response.failed")]

    assert types[:2] == ["response.created", "response.in_progress"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert len(finals) == 1
    assert events[-1] is finals[0]
    assert {event.response.id for event in events if hasattr(event, "response")} == {events[0].response.id}
    return finals[0].response


def check_usage(usage: Any) -> None:
    assert usage.input_tokens > 0
    assert usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert 0 <= usage.input_tokens_details.cached_tokens <= usage.input_tokens


def test_plain_text_create(client):
    response = create(client, [user("Say hello to the team")])

    assert response.status == "completed"
    assert response.output_text == "stub answer to: Say hello to the team"
    assert [item.type for item in response.output] == ["message"]
    check_usage(response.usage)


def test_plain_text_stream(client):
    events = stream_events(client, [user("Say hello to the team")])
    final = check_stream_shape(events)
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]

    assert final.status == "completed"
    assert "".join(deltas) == "stub answer to: Say hello to the team"
    assert final.output_text == "stub answer to: Say hello to the team"
    assert [event.type for event in events[2:4]] == ["response.output_item.added", "response.content_part.added"]
    check_usage(final.usage)


def test_function_call_and_output(client):
    first_turn = [user('List the files. <<call shell {"command":["ls","-la"]}>>')]
    response = create(client, first_turn)
    calls = [item for item in response.output if item.type == "function_call"]

    assert response.status == "completed"
    assert len(calls) == 1
    assert calls[0].name == "shell"
    assert json.loads(calls[0].arguments) == {"command": ["ls", "-la"]}

    second_turn = [
        *first_turn,
        *(item.model_dump(exclude_none=True) for item in response.output),
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "a.py\nb.py"},
    ]
    follow_up = create(client, second_turn)

    assert follow_up.status == "completed"
    assert follow_up.output_text == "stub received 1 tool result."


def test_function_call_stream(client):
    events = stream_events(client, [user('Show the plan. <<call update_plan {"plan":[{"step":"a","status":"pending"}]}>>')])
    final = check_stream_shape(events)
    done = [event for event in events if event.type == "response.function_call_arguments.done"]
    streamed = "".join(event.delta for event in events if event.type == "response.function_call_arguments.delta")

    assert final.status == "completed"
    assert len(done) == 1
    assert json.loads(done[0].arguments) == {"plan": [{"step": "a", "status": "pending"}]}
    assert streamed == done[0].arguments
    assert [item.type for item in final.output] == ["function_call"]
    assert final.output[0].arguments == done[0].arguments


def test_custom_tool_call_round_trip(client):
    first_turn = [user("Create hello.txt. <<call apply_patch " + json.dumps({"input": PATCH}) + ">>")]
    events = stream_events(client, first_turn)
    final = check_stream_shape(events)
    input_done = [event for event in events if event.type == "response.custom_tool_call_input.done"]

    assert final.status == "completed"
    assert [item.type for item in final.output] == ["custom_tool_call"]
    assert final.output[0].name == "apply_patch"
    assert final.output[0].input == PATCH
    assert input_done[0].input == PATCH

    second_turn = [
        *first_turn,
        final.output[0].model_dump(exclude_none=True),
        {"type": "custom_tool_call_output", "call_id": final.output[0].call_id, "output": "Success. Updated hello.txt"},
    ]
    follow_up = create(client, second_turn)

    assert follow_up.output_text == "stub received 1 tool result."


def test_image_input(client, responses_stub):
    marker = f"image-{uuid.uuid4().hex[:12]}"
    items = [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": f"Describe {marker}"}, {"type": "input_image", "image_url": PNG_DATA_URL}],
        }
    ]

    response = create(client, items)

    assert response.status == "completed"
    assert response.output_text == f"stub answer to: Describe {marker}"
    forwarded = recorded_request(responses_stub, marker)
    assert "iVBORw0KGgo" in forwarded


def test_error_before_stream(client):
    with pytest.raises(openai.RateLimitError) as caught:
        stream_events(client, [user("Hi <<fault status=429>>")])

    assert caught.value.status_code == 429
    assert caught.value.body["code"] == "rate_limit_exceeded"


def test_error_during_stream(client):
    events = stream_events(client, [user("Tell me a long story about a gateway <<fault midstream_error=3>>")])
    final = check_stream_shape(events)

    assert events[-1].type == "response.failed"
    assert final.status == "failed"
    assert final.error.code == "server_error"
    assert "Overloaded" in final.error.message


def test_stream_cut_ends_failed(client):
    events = stream_events(client, [user("Tell me a long story about a gateway <<fault cut_after=3>>")])
    final = check_stream_shape(events)

    assert events[-1].type == "response.failed"
    assert final.error.code == "server_error"


def test_usage_matches_upstream(client, team, responses_gateway):
    # A long, repeated prefix, so that adapters with prompt caching report cached tokens.
    instructions = "You are Codex. " + " ".join(f"Rule {number}: keep diffs small." for number in range(400))
    items = [user(f"Count tokens for usage-{uuid.uuid4().hex[:12]}")]
    responses = [
        client.responses.create(model="gpt-5-codex", instructions=instructions, input=items, store=False),
        client.responses.create(model="gpt-5-codex", instructions=instructions, input=items, store=False),
    ]
    with client.responses.stream(model="gpt-5-codex", instructions=instructions, input=items, store=False) as stream:
        responses.append(check_stream_shape(list(stream)))

    for response in responses:
        check_usage(response.usage)
        upstream = decision_usage(responses_gateway, response.id)
        uncached = upstream.get("input_tokens", 0)
        cache_read = upstream.get("cache_read_input_tokens", 0)
        cache_write = upstream.get("cache_creation_input_tokens", 0)
        assert response.usage.input_tokens == uncached + cache_read + cache_write
        assert response.usage.input_tokens_details.cached_tokens == cache_read
        assert response.usage.output_tokens == upstream["output_tokens"]
    if team in AUTOMATIC_CACHE_TEAMS:
        assert responses[1].usage.input_tokens_details.cached_tokens > 0
        assert responses[2].usage.input_tokens_details.cached_tokens > 0


# --- adapter-independent -----------------------------------------------------------------------


def test_previous_response_id_rejected(gateway_url):
    client = openai.OpenAI(base_url=gateway_url + "/v1", api_key="codex-key", max_retries=0)

    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt-5-codex", input="hi", previous_response_id="resp_123")

    assert caught.value.status_code == 400
    assert caught.value.body["type"] == "invalid_request_error"
    assert caught.value.body["message"].startswith("previous_response_id: ")
    assert "stateless" in caught.value.body["message"]


def test_malformed_input_rejected(gateway_url):
    response = httpx.post(
        gateway_url + "/v1/responses",
        json={"model": "gpt-5-codex", "input": [{"type": "function_call", "name": "shell", "arguments": "{}"}]},
        timeout=30,
    )

    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("input.0.call_id: ")
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_codex_models_list(gateway_url):
    response = httpx.get(gateway_url + "/v1/models", params={"client_version": "0.60.0"}, timeout=30)
    models = response.json()["models"]

    assert response.status_code == 200
    assert models
    assert all(model["visibility"] == "list" for model in models)
    assert "claude-sonnet-4-5" in [model["slug"] for model in models]


def decision_usage(gateway: Process, request_id: str) -> dict[str, Any]:
    """Return the canonical usage that the decision log recorded for one request."""
    path = Path(gateway.extra["decisions"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                if record.get("request_id") == request_id:
                    return record["usage"]
        # A stream's record is written after its last byte, so it may lag the client a little.
        time.sleep(0.1)
    raise AssertionError(f"no decision record for {request_id} in {path}")


def recorded_request(stub: Process, marker: str) -> str:
    """Return the upstream request body the stub recorded with `marker` in it."""
    record = Path(stub.extra["record"])
    for path in sorted(record.glob("*.json"), reverse=True):
        if path.name.endswith(".meta.json"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if marker in text:
            return text
    raise AssertionError(f"the stub recorded no request containing {marker!r}")


def test_reasoning_effort_request(client, team, responses_stub):
    marker = f"plan-{uuid.uuid4().hex[:12]}"
    response = client.responses.create(
        model="gpt-5-codex",
        instructions="You are Codex.",
        input=[user(f"Plan the refactor {marker}")],
        reasoning={"effort": "low", "summary": "auto"},
        include=["reasoning.encrypted_content"],
        store=False,
    )
    forwarded = json.loads(recorded_request(responses_stub, marker))

    assert response.status == "completed"
    assert response.output_text == f"stub answer to: Plan the refactor {marker}"
    if team == "via-anthropic":
        assert forwarded["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    if team == RESPONSES_TEAM:
        assert forwarded["reasoning"] == {"effort": "low"}
        assert forwarded["max_output_tokens"] == 16384
        assert forwarded["include"] == ["reasoning.encrypted_content"]
        assert forwarded["store"] is False
