"""The semantic cache through the running gateway, with the official anthropic and openai SDKs."""

from __future__ import annotations

from pathlib import Path

import anthropic
import openai
import pytest

from tests.conftest import wait_for_decisions

STORED = "How can I reverse a list in Python?"
PARAPHRASE = "how do I reverse a python list"


def enable_cache(policy_dir: Path) -> None:
    """Check that the shipped policy turns the cache on; the tests rely on its default section."""
    text = (policy_dir / "default.yaml").read_text(encoding="utf-8")
    assert "cache:\n  enabled: true\n" in text


@pytest.fixture
def cached_gateway(start_gateway):
    return start_gateway(edit=enable_cache)


def test_anthropic_streamed_paraphrase_hit(cached_gateway):
    client = anthropic.Anthropic(base_url=cached_gateway.url, api_key="client-key", max_retries=0)
    first = client.messages.with_raw_response.create(
        model="leangate-auto", max_tokens=256, messages=[{"role": "user", "content": STORED}]
    )
    stored = first.parse()

    with client.messages.stream(
        model="leangate-auto", max_tokens=256, messages=[{"role": "user", "content": PARAPHRASE}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        headers = stream.response.headers

    assert first.headers.get("x-leangate-cache") != "hit"
    assert headers["x-leangate-cache"] == "hit"
    assert float(headers["x-leangate-cache-similarity"]) >= 0.9
    assert text == stored.content[0].text
    assert final.stop_reason == "end_turn"


def test_openai_streamed_paraphrase_hit(cached_gateway):
    client = openai.OpenAI(base_url=f"{cached_gateway.url}/v1", api_key="client-key", max_retries=0)
    stored = client.chat.completions.create(
        model="leangate-auto", max_tokens=256, messages=[{"role": "user", "content": STORED}]
    )

    raw = client.chat.completions.with_raw_response.create(
        model="leangate-auto", max_tokens=256, stream=True, messages=[{"role": "user", "content": PARAPHRASE}]
    )
    chunks = list(raw.parse())
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)

    assert raw.headers["x-leangate-cache"] == "hit"
    assert text == stored.choices[0].message.content
    assert any(chunk.choices and chunk.choices[0].finish_reason == "stop" for chunk in chunks)


def test_near_miss_is_refused_through_gateway(cached_gateway):
    client = anthropic.Anthropic(base_url=cached_gateway.url, api_key="client-key", max_retries=0)
    client.messages.create(
        model="leangate-auto", max_tokens=256,
        messages=[{"role": "user", "content": "How do I convert a string to an int in JavaScript?"}],
    )
    second = client.messages.with_raw_response.create(
        model="leangate-auto", max_tokens=256,
        messages=[{"role": "user", "content": "How do I convert an int to a string in JavaScript?"}],
    )

    assert second.headers.get("x-leangate-cache") != "hit"
    record = wait_for_decisions(cached_gateway.extra["decisions"], 2)[-1]
    assert record["cache"]["result"] == "refused"
    assert record["cache"]["guard"] == "word_order"


def test_no_cache_header_bypasses_through_gateway(cached_gateway):
    client = anthropic.Anthropic(base_url=cached_gateway.url, api_key="client-key", max_retries=0)
    client.messages.create(model="leangate-auto", max_tokens=256, messages=[{"role": "user", "content": STORED}])

    second = client.messages.with_raw_response.create(
        model="leangate-auto", max_tokens=256, messages=[{"role": "user", "content": STORED}],
        extra_headers={"cache-control": "no-cache"},
    )

    assert second.headers.get("x-leangate-cache") != "hit"
    assert wait_for_decisions(cached_gateway.extra["decisions"], 2)[-1]["cache"]["result"] == "bypass"


def test_persisted_entries_survive_gateway_restart(start_gateway, tmp_path):
    folder = tmp_path / "cache-snapshots"

    def enable_with_persistence(policy_dir: Path) -> None:
        enable_cache(policy_dir)
        default = policy_dir / "default.yaml"
        text = default.read_text(encoding="utf-8")
        old = "  persistence: {directory: null, interval: 30s}\n"
        assert old in text
        default.write_text(text.replace(old, f"  persistence: {{directory: '{folder}', interval: 30s}}\n"), encoding="utf-8")

    first = start_gateway(edit=enable_with_persistence, name="first")
    client = anthropic.Anthropic(base_url=first.url, api_key="client-key", max_retries=0)
    stored = client.messages.create(model="leangate-auto", max_tokens=256, messages=[{"role": "user", "content": STORED}])
    first.stop()

    assert (folder / "semantic-cache.npz").exists()
    second = start_gateway(edit=enable_with_persistence, name="second")
    client = anthropic.Anthropic(base_url=second.url, api_key="client-key", max_retries=0)
    response = client.messages.with_raw_response.create(
        model="leangate-auto", max_tokens=256, messages=[{"role": "user", "content": PARAPHRASE}]
    )

    assert response.headers["x-leangate-cache"] == "hit"
    assert response.parse().content[0].text == stored.content[0].text
