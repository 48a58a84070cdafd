"""Tests of SemanticCache.lookup / store on real embedders, real FAISS indexes and real files."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import numpy as np
import pytest

from engine.embedding import load_embedder
from engine.pipeline.context import RequestContext
from engine.policy.models import Policy
from engine.stages.cache import SemanticCache, cache_for
from engine.stages.cache.snapshot import SNAPSHOT_NAME


def make_policy(**cache: object) -> Policy:
    section = {"enabled": True, "embedder": {"kind": "onnx-minilm"}, **cache}
    return Policy.model_validate(
        {
            "providers": {"stub": {"kind": "anthropic", "base_url": "http://127.0.0.1:9"}},
            "tiers": [{"name": "only", "provider": "stub", "model": "claude-haiku-4-5"}],
            "cache": section,
        }
    )


def make_ctx(text: str, *, team: str = "web", system: str = "You are a coding assistant.", model: str = "claude-haiku-4-5",
             tools: list | None = None, headers: dict | None = None, **body: object) -> RequestContext:
    request = {
        "model": model,
        "max_tokens": 1024,
        "system": system,
        "messages": [{"role": "user", "content": text}],
        **body,
    }
    if tools is not None:
        request["tools"] = tools
    return RequestContext(
        request_id="req-test", protocol="anthropic", body=request, headers=headers or {}, team=team,
        requested_model=model,
    )


def answer(text: str, **extra: object) -> dict:
    return {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 12}, **extra,
    }


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def minilm():
    return load_embedder()


@pytest.fixture
def cache(minilm):
    return SemanticCache(make_policy().cache, minilm)


async def store_then_lookup(cache: SemanticCache, policy: Policy, stored: RequestContext, asked: RequestContext,
                            message: dict | None = None):
    await cache.store(stored, policy, message or answer("use parseInt"))
    return await cache.lookup(asked, policy)


# --- hits ---------------------------------------------------------------------------------------


def test_exact_repeat_hits(cache):
    policy = make_policy()
    cached, decision = run(store_then_lookup(
        cache, policy, make_ctx("How do I convert a string to an int in JavaScript?"),
        make_ctx("How do I convert a string to an int in JavaScript?  "),
    ))

    assert decision["result"] == "hit"
    assert decision["match"] == "exact"
    assert cached["content"][0]["text"] == "use parseInt"


def test_paraphrase_hits_semantically(cache):
    policy = make_policy()
    cached, decision = run(store_then_lookup(
        cache, policy, make_ctx("How can I reverse a list in Python?"),
        make_ctx("how do I reverse a python list"),
    ))

    assert decision["result"] == "hit"
    assert decision["match"] == "semantic"
    assert decision["similarity"] >= policy.cache.similarity
    assert decision["entry_age_s"] >= 0
    assert cached is not None


def test_hit_returns_a_copy(cache):
    policy = make_policy()
    cached, _ = run(store_then_lookup(cache, policy, make_ctx("what is a closure?"), make_ctx("what is a closure?")))
    cached["content"][0]["text"] = "changed by the caller"

    again, _ = run(cache.lookup(make_ctx("what is a closure?"), policy))
    assert again["content"][0]["text"] == "use parseInt"


def test_lookup_shares_embedding_in_scratch(cache, minilm):
    ctx = make_ctx("How can I reverse a list in Python?")
    run(cache.lookup(ctx, make_policy()))

    assert ctx.scratch["embedding"].shape == (minilm.dim,)
    assert ctx.scratch["embedding_model"] == minilm.name


def test_lookup_reuses_scratch_embedding(cache, minilm):
    policy = make_policy()
    run(cache.store(make_ctx("How can I reverse a list in Python?"), policy, answer("reversed()")))
    ctx = make_ctx("how do I reverse a python list")
    ctx.scratch["embedding"] = minilm.embed(["How can I reverse a list in Python?"])[0]
    ctx.scratch["embedding_model"] = minilm.name

    _, decision = run(cache.lookup(ctx, policy))

    assert decision["result"] == "hit"
    assert decision["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert "embed_ms" not in decision


def test_lookup_uses_tool_stage_text(cache):
    policy = make_policy()
    run(cache.store(make_ctx("How can I reverse a list in Python?"), policy, answer("reversed()")))
    ctx = make_ctx("<system-reminder>ignore</system-reminder> how do I reverse a python list")
    ctx.scratch["last_user_text"] = "how do I reverse a python list"

    _, decision = run(cache.lookup(ctx, policy))

    assert decision["result"] == "miss"  # the reminder is attached context, which is part of the scope
    assert ctx.scratch["cache_state"]["text"] == "how do I reverse a python list"


# --- near misses --------------------------------------------------------------------------------

NEAR_MISSES = [
    ("convert a string to an int in JavaScript", "convert an int to a string in JavaScript", "word_order"),
    ("How do I unit test parse_date?", "How do I unit test parse_time?", "identifiers"),
    ("How do I reverse a list in Python?", "How do I reverse a list in JavaScript?", "languages"),
    ("Is this regex safe to run on user input?", "Is this regex unsafe to run on user input?", "negations"),
]


@pytest.mark.parametrize(("stored", "asked", "guard"), NEAR_MISSES)
def test_near_miss_is_refused(minilm, stored, asked, guard):
    policy = make_policy(similarity=0.5)  # low, so the candidate reaches the guards
    cache = SemanticCache(policy.cache, minilm)

    cached, decision = run(store_then_lookup(cache, policy, make_ctx(stored), make_ctx(asked)))

    assert cached is None
    assert decision["result"] == "refused"
    assert decision["guard"] == guard
    assert decision["similarity"] >= 0.5


def test_string_int_similarity_is_above_threshold(minilm):
    # The reason the guards exist: similarity alone would serve this pair.
    vectors = minilm.embed(["convert a string to an int in JavaScript", "convert an int to a string in JavaScript"])

    assert float(vectors[0] @ vectors[1]) > make_policy().cache.similarity


# --- scope --------------------------------------------------------------------------------------

SCOPE_CHANGES = {
    "team": {"team": "mobile"},
    "system": {"system": "You are a terse assistant."},
    "model": {"model": "claude-sonnet-4-5"},
    "tools": {"tools": [{"name": "Read", "description": "Read a file", "input_schema": {"type": "object"}}]},
    "temperature": {"temperature": 0.0},
}


@pytest.mark.parametrize("change", sorted(SCOPE_CHANGES))
def test_other_scope_misses(cache, change):
    policy = make_policy()
    text = "How can I reverse a list in Python?"

    cached, decision = run(store_then_lookup(cache, policy, make_ctx(text), make_ctx(text, **SCOPE_CHANGES[change])))

    assert cached is None
    assert decision["result"] == "miss"


def test_scope_header_separates_entries(cache):
    policy = make_policy(scope={"headers": ["X-Repository"]})
    text = "How can I reverse a list in Python?"

    cached, _ = run(store_then_lookup(
        cache, policy, make_ctx(text, headers={"x-repository": "a"}), make_ctx(text, headers={"x-repository": "b"}),
    ))

    assert cached is None


def test_scope_without_model_shares_entries(cache):
    policy = make_policy(scope={"model": False})
    text = "How can I reverse a list in Python?"

    cached, _ = run(store_then_lookup(cache, policy, make_ctx(text), make_ctx("how do I reverse a python list", model="gpt-4o")))

    assert cached is not None


# --- eligibility and bypass ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{"cache-control": "no-cache"}, {"x-leangate-cache": "bypass"}, {"cache-control": "no-store"}],
)
def test_bypass_headers_skip_lookup(cache, headers):
    policy = make_policy()
    text = "How can I reverse a list in Python?"

    cached, decision = run(store_then_lookup(cache, policy, make_ctx(text), make_ctx(text, headers=headers)))

    assert cached is None
    assert decision["result"] == "bypass"
    assert decision["eligible"] is False


def test_no_store_header_skips_store(cache):
    policy = make_policy()
    run(cache.store(make_ctx("what is a monad?", headers={"cache-control": "no-store"}), policy, answer("a monoid")))

    assert len(cache) == 0


def test_disabled_cache_bypasses(cache):
    policy = make_policy(enabled=False)

    _, decision = run(cache.lookup(make_ctx("what is a monad?"), policy))

    assert decision["result"] == "bypass"
    assert decision["reason"] == "cache disabled by policy"


def test_multi_turn_is_ineligible(cache):
    ctx = make_ctx("and in Rust?")
    ctx.body["messages"] = [
        {"role": "user", "content": "reverse a list in Python"},
        {"role": "assistant", "content": "use reversed()"},
        {"role": "user", "content": "and in Rust?"},
    ]

    _, decision = run(cache.lookup(ctx, make_policy()))

    assert decision["result"] == "ineligible"
    assert "max_messages" in decision["reason"]


def test_tool_results_are_ineligible(cache):
    ctx = make_ctx("x")
    ctx.body["messages"] = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}]

    _, decision = run(cache.lookup(ctx, make_policy()))

    assert decision["result"] == "ineligible"


def test_high_temperature_is_ineligible(cache):
    _, decision = run(cache.lookup(make_ctx("what is a monad?", temperature=0.9), make_policy(eligibility={"max_temperature": 0.5})))

    assert decision["result"] == "ineligible"
    assert "temperature" in decision["reason"]


def test_class_outside_list_is_ineligible(cache):
    ctx = make_ctx("what is a monad?")
    ctx.scratch["class"] = "agent-loop"

    _, decision = run(cache.lookup(ctx, make_policy(eligibility={"classes": ["quick-question"]})))

    assert decision["result"] == "ineligible"


def test_tool_call_answers_are_not_stored(cache):
    message = answer("let me look")
    message["content"].append({"type": "tool_use", "id": "t1", "name": "Read", "input": {"path": "a.py"}})
    message["stop_reason"] = "tool_use"

    run(cache.store(make_ctx("read a.py"), make_policy(), message))

    assert len(cache) == 0


def test_truncated_answers_are_not_stored(cache):
    run(cache.store(make_ctx("write a long essay"), make_policy(), answer("partial", stop_reason="max_tokens")))

    assert len(cache) == 0


def test_answer_longer_than_max_tokens_is_not_served(cache):
    policy = make_policy()
    text = "How can I reverse a list in Python?"

    cached, _ = run(store_then_lookup(cache, policy, make_ctx(text), make_ctx(text, max_tokens=5)))

    assert cached is None


def test_long_text_gets_exact_match_only(cache):
    policy = make_policy(eligibility={"semantic_max_tokens": 5})

    _, decision = run(cache.lookup(make_ctx("How can I reverse a list in Python quickly and safely?"), policy))

    assert decision["result"] == "miss"
    assert "semantic_max_tokens" in decision["reason"]


# --- lifetime -----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_ttl_expiry(minilm):
    clock = Clock()
    policy = make_policy(ttl="1h")
    cache = SemanticCache(policy.cache, minilm, clock=clock)
    run(cache.store(make_ctx("what is a monad?"), policy, answer("a monoid")))

    clock.now += 3599
    assert run(cache.lookup(make_ctx("what is a monad?"), policy))[0] is not None
    clock.now += 2
    cached, decision = run(cache.lookup(make_ctx("what is a monad?"), policy))

    assert cached is None
    assert decision["result"] == "miss"
    assert len(cache) == 0


def test_lru_eviction_removes_vectors(minilm):
    policy = make_policy(max_entries=2)
    cache = SemanticCache(policy.cache, minilm)
    questions = ["what is a monad?", "How can I reverse a list in Python?", "explain big O notation"]
    run(cache.store(make_ctx(questions[0]), policy, answer("0")))
    run(cache.store(make_ctx(questions[1]), policy, answer("1")))
    run(cache.lookup(make_ctx(questions[0]), policy))  # now the most recently used
    run(cache.store(make_ctx(questions[2]), policy, answer("2")))

    assert len(cache) == 2
    assert cache.stats()["vectors"] == 2
    assert run(cache.lookup(make_ctx(questions[0]), policy))[0] is not None
    assert run(cache.lookup(make_ctx(questions[1]), policy))[0] is None
    assert run(cache.lookup(make_ctx(questions[2]), policy))[0] is not None


def test_index_switches_to_hnsw_and_still_hits():
    policy = make_policy(embedder={"kind": "hashing"}, index={"exact_up_to": 10}, max_entries=40)
    cache = SemanticCache(policy.cache)
    for number in range(60):
        run(cache.store(make_ctx(f"question {number} about topic {number}"), policy, answer(str(number))))

    assert cache.stats()["hnsw_scopes"] == 1
    assert len(cache) == 40
    assert run(cache.lookup(make_ctx("question 59 about topic 59"), policy))[0]["content"][0]["text"] == "59"
    assert run(cache.lookup(make_ctx("question 3 about topic 3"), policy))[0] is None


def test_dry_run_changes_nothing(minilm):
    clock = Clock()
    policy = make_policy(ttl="1h")
    cache = SemanticCache(policy.cache, minilm, clock=clock)
    run(cache.store(make_ctx("what is a monad?"), policy, answer("a monoid")))
    clock.now += 7200

    run(cache.lookup(make_ctx("what is a monad?"), policy, dry_run=True))

    assert len(cache) == 1


# --- persistence --------------------------------------------------------------------------------


def test_persistence_survives_restart(tmp_path, minilm):
    policy = make_policy(persistence={"directory": str(tmp_path)})
    first = SemanticCache(policy.cache, minilm)
    run(first.store(make_ctx("How can I reverse a list in Python?"), policy, answer("reversed()")))
    assert first.flush() == tmp_path / SNAPSHOT_NAME

    second = SemanticCache(policy.cache, minilm)
    cached, decision = run(second.lookup(make_ctx("how do I reverse a python list"), policy))

    assert decision["result"] == "hit"
    assert cached["content"][0]["text"] == "reversed()"
    assert [path.name for path in tmp_path.iterdir()] == [SNAPSHOT_NAME]


def test_persistence_flushes_on_close(tmp_path, minilm):
    policy = make_policy(persistence={"directory": str(tmp_path)})
    cache = SemanticCache(policy.cache, minilm)
    run(cache.store(make_ctx("what is a monad?"), policy, answer("a monoid")))
    run(cache.aclose())

    assert len(SemanticCache(policy.cache, minilm)) == 1


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong-ids"])
def test_corrupt_snapshot_starts_empty(tmp_path, minilm, damage, caplog):
    policy = make_policy(persistence={"directory": str(tmp_path)})
    cache = SemanticCache(policy.cache, minilm)
    run(cache.store(make_ctx("what is a monad?"), policy, answer("a monoid")))
    cache.flush()
    path = tmp_path / SNAPSHOT_NAME
    if damage == "garbage":
        path.write_bytes(b"not a snapshot at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    else:
        with np.load(path) as archive:
            parts = {name: archive[name] for name in archive.files}
        parts["ids"] = parts["ids"] + 100
        with open(path, "wb") as stream:
            np.savez(stream, **parts)

    restarted = SemanticCache(policy.cache, minilm)

    assert len(restarted) == 0
    assert "starting empty" in caplog.text
    assert any(name.name.startswith(SNAPSHOT_NAME + ".corrupt-") for name in tmp_path.iterdir())
    run(restarted.store(make_ctx("what is a monad?"), policy, answer("a monoid")))
    assert restarted.flush() is not None


def test_snapshot_of_other_embedder_is_ignored(tmp_path, minilm):
    hashing_policy = make_policy(embedder={"kind": "hashing"}, persistence={"directory": str(tmp_path)})
    cache = SemanticCache(hashing_policy.cache)
    run(cache.store(make_ctx("what is a monad?"), hashing_policy, answer("a monoid")))
    cache.flush()

    policy = make_policy(persistence={"directory": str(tmp_path)})
    assert len(SemanticCache(policy.cache, minilm)) == 0


# --- concurrency ------------------------------------------------------------------------------


def test_concurrent_identical_requests_keep_one_entry(minilm):
    policy = make_policy()
    cache = SemanticCache(policy.cache, minilm)

    async def one_request(number: int) -> None:
        ctx = make_ctx("How can I reverse a list in Python?")
        cached, _ = await cache.lookup(ctx, policy)
        if cached is None:
            await cache.store(ctx, policy, answer(f"answer {number}"))

    async def main() -> None:
        await asyncio.gather(*(one_request(number) for number in range(16)))

    run(main())

    assert len(cache) == 1
    assert cache.stats()["vectors"] == 1
    cached, decision = run(cache.lookup(make_ctx("how do I reverse a python list"), policy))
    assert decision["result"] == "hit"


def test_threads_storing_different_prompts(minilm):
    policy = make_policy(embedder={"kind": "hashing"})
    cache = SemanticCache(policy.cache)

    async def main() -> None:
        await asyncio.gather(*(
            asyncio.to_thread(lambda n=number: asyncio.run(cache.store(make_ctx(f"prompt {n}"), policy, answer(str(n)))))
            for number in range(40)
        ))

    run(main())

    assert len(cache) == 40
    assert cache.stats()["vectors"] == 40


def test_cache_for_shares_by_store_settings():
    first = make_policy(embedder={"kind": "hashing"}, similarity=0.9).cache
    second = make_policy(embedder={"kind": "hashing"}, similarity=0.8).cache
    third = make_policy(embedder={"kind": "hashing"}, max_entries=5).cache

    assert cache_for(first) is cache_for(second)
    assert cache_for(first) is not cache_for(third)


# --- embedder failure ---------------------------------------------------------------------------


def test_embedder_failure_leaves_exact_matching(caplog):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    policy = make_policy(embedder={"kind": "ollama", "base_url": f"http://127.0.0.1:{port}", "model": "m", "dim": 8, "timeout": 2})
    cache = SemanticCache(policy.cache)

    cached, decision = run(cache.lookup(make_ctx("what is a monad?"), policy))
    assert cached is None
    assert decision["result"] == "miss"
    assert decision["reason"].startswith("embedding failed")
    assert "embedding for the semantic cache failed" in caplog.text

    run(cache.store(make_ctx("what is a monad?"), policy, answer("a monoid")))
    cached, decision = run(cache.lookup(make_ctx("what is a monad?"), policy))
    assert decision["match"] == "exact"
    assert cached["content"][0]["text"] == "a monoid"
    assert cache.stats()["vectors"] == 0


def test_cache_for_hands_entries_to_replacement(tmp_path, minilm):
    first_policy = make_policy(persistence={"directory": str(tmp_path)}, max_entries=50)
    first = cache_for(first_policy.cache, minilm)
    run(first.store(make_ctx("what is a monad?"), first_policy, answer("a monoid")))

    second_policy = make_policy(persistence={"directory": str(tmp_path)}, max_entries=60)
    second = cache_for(second_policy.cache, minilm)

    assert second is not first
    assert run(second.lookup(make_ctx("what is a monad?"), second_policy))[0]["content"][0]["text"] == "a monoid"


ODD_BODIES = [
    {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": None}]},
    {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "text"}]}]},
    {"model": "m", "max_tokens": 10, "messages": ["not a message"]},
    {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "image"}]}], "system": 42},
    {"model": "m", "max_tokens": "many", "temperature": "hot", "messages": [{"role": "user", "content": "hi"}]},
    {"messages": [{"role": "user", "content": "\x00\ud800 odd text"}]},
]


@pytest.mark.parametrize("body", ODD_BODIES)
def test_odd_bodies_do_not_raise(minilm, body):
    policy = make_policy()
    cache = SemanticCache(policy.cache, minilm)
    ctx = RequestContext(request_id="odd", protocol="anthropic", body=body, headers={}, team="web")

    cached, decision = run(cache.lookup(ctx, policy))
    run(cache.store(ctx, policy, answer("ok")))

    assert cached is None
    assert decision["result"] in {"miss", "ineligible"}


def test_lone_surrogate_survives_restart(tmp_path, minilm):
    policy = make_policy(persistence={"directory": str(tmp_path)})
    text = "why does \ud800 break my parser?"
    cache = SemanticCache(policy.cache, minilm)
    run(cache.store(make_ctx(text), policy, answer("\udfff in the response")))
    cache.flush()

    restarted = SemanticCache(policy.cache, minilm)
    cached, decision = run(restarted.lookup(make_ctx(text), policy))

    assert decision["match"] == "exact"
    assert cached["content"][0]["text"] == "\udfff in the response"


def test_entry_facts_follow_changed_guard_settings(minilm):
    plain = make_policy()
    with_language = make_policy(guards={"extra_languages": ["zorblang"]})
    cache = SemanticCache(plain.cache, minilm)
    stored = make_ctx("How do I sort a list of records by date in zorblang?")
    asked = make_ctx("How can I sort a list of records by their date in zorblang?")
    run(cache.store(stored, plain, answer("use sort_by")))

    # The first lookup extracts the entry's facts without the extra language and keeps them.
    first, first_decision = run(cache.lookup(asked, plain))
    # The second runs with a guard setting that adds "zorblang" to both texts' languages. Facts kept
    # from the first lookup would lack it on the entry's side, so the language guard would reject it.
    second, second_decision = run(cache.lookup(make_ctx(asked.body["messages"][0]["content"]), with_language))

    assert first_decision["result"] == "hit"
    assert second_decision["result"] == "hit"
    assert second["content"][0]["text"] == "use sort_by"
