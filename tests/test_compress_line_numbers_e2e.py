"""line_numbers end to end: an Anthropic SDK client replays a growing Claude Code session through
`leangate serve` to `leangate stub-upstream --prompt-cache --record`.

A tool result that the gateway rewrites must reach the provider with the same bytes on every later
request of the session, or the provider's prompt cache stops hitting from that result on. The stub
simulates prompt caching, so its usage shows whether it did.
"""

from __future__ import annotations

import random
import re

import anthropic
import pytest

from benchmarks.sessions import EDIT_PROMPTS, agent_session, anthropic_request
from tests.conftest import recorded_bodies, recording_gateway, wait_for_decisions

TURNS = 7


@pytest.fixture(scope="module")
def caching_gateway(tmp_path_factory):
    """A stub started with --prompt-cache and --record, and a gateway on the shipped policies."""
    with recording_gateway(tmp_path_factory.mktemp("line-numbers")) as gateway:
        yield gateway


def session_with_reads(turns: int):
    """A generated session with at least two Read results before its last request."""
    rng = random.Random(20261204)
    for _ in range(200):
        session = agent_session(turns, seed=rng.randrange(1 << 40), prompts=EDIT_PROMPTS)
        reads = [block for message in session.history(turns - 2) if isinstance(message["content"], list)
                 for block in message["content"] if block.get("type") == "tool_use" and block["name"] == "Read"]
        if len(reads) >= 2:
            return session
    raise AssertionError("no generated session has two Read results")


def tool_results(body: dict) -> dict[str, str]:
    """Return the text of every tool result in a body, by tool_use_id."""
    found = {}
    for message in body["messages"]:
        if isinstance(message["content"], list):
            for block in message["content"]:
                if block.get("type") == "tool_result":
                    content = block["content"]
                    found[block["tool_use_id"]] = content if isinstance(content, str) else "".join(
                        part["text"] for part in content)
    return found


def repad(text: str) -> str:
    return re.sub(r"^(\d+)\t", lambda match: match.group(1).rjust(6) + "\t", text, flags=re.MULTILINE)


def test_rewritten_reads_keep_prompt_cache_hitting(caching_gateway) -> None:
    session = session_with_reads(TURNS)
    tag = f"cart-{session.session_id}"
    headers = {"x-claude-code-session-id": session.session_id, "x-leangate-team": "via-anthropic"}
    client = anthropic.Anthropic(base_url=caching_gateway.url, api_key="client-key", max_retries=0,
                                 default_headers=headers)
    usages = []
    request_ids: list[str] = []
    originals: dict[str, str] = {}
    for index in range(TURNS):
        body = anthropic_request(session, index, "leangate-strong")
        body["messages"][0]["content"].insert(0, {"type": "text", "text": tag})
        originals.update(tool_results(body))
        raw = client.messages.with_raw_response.create(**body)
        usages.append(raw.parse().usage)
        request_ids.append(raw.headers["x-leangate-request-id"])

    bodies = recorded_bodies(caching_gateway.extra["stub"].extra["record"], tag, TURNS)
    assert len(bodies) == TURNS

    # Every Read result was rewritten, losing nothing but padding.
    read_ids = [block["id"] for message in session.messages if isinstance(message["content"], list)
                for block in message["content"] if block.get("type") == "tool_use" and block["name"] == "Read"]
    forwarded_last = tool_results(bodies[-1])
    rewritten = [tool_id for tool_id in read_ids if tool_id in forwarded_last]
    assert len(rewritten) >= 2
    for tool_id in rewritten:
        assert forwarded_last[tool_id] != originals[tool_id]
        assert repad(forwarded_last[tool_id]) == originals[tool_id]

    # Each forwarded tool result has the same bytes in every later request.
    for earlier, later in zip(bodies, bodies[1:]):
        earlier_results, later_results = tool_results(earlier), tool_results(later)
        for tool_id, text in earlier_results.items():
            assert later_results[tool_id] == text, tool_id

    # The stub reads the previous request's whole input from its cache on every later turn.
    totals = [usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens for usage in usages]
    assert usages[0].cache_creation_input_tokens > 0
    for turn in range(1, TURNS):
        assert usages[turn].cache_read_input_tokens == totals[turn - 1], f"turn {turn}"

    # The decision record of the last request names the action for each rewritten Read result.
    records = {record.get("request_id"): record for record in wait_for_decisions(caching_gateway.extra["decisions"], TURNS)}
    last = records[request_ids[-1]]
    decisions = [entry for entry in last["compression"] if entry["target"] == "numbered-file-lines"]
    assert len(decisions) >= len(rewritten)
    for decision in decisions:
        assert decision["action"] == "line_numbers"
        assert decision["lossless"] is True
        assert decision["verified"] is True
        assert decision["tokens_after"] < decision["tokens_before"]
