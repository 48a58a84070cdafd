"""Tests of the cache's lexical guards and request keys, on plain text and request dicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.embedding import load_embedder
from engine.pipeline.context import RequestContext
from engine.stages.cache.guards import check_guards, extract_facts, stem
from engine.stages.cache.keys import exact_key, ineligible_reason, last_user_context, scope_key, storable_reason
from engine.stages.cache.policy import CacheEligibility, CacheGuards, CacheScope, CacheSection

GUARDS = CacheGuards()
PAIRS = Path(__file__).resolve().parent.parent / "examples" / "cache-pairs"


def guard_for(query: str, candidate: str, guards: CacheGuards = GUARDS) -> str | None:
    return check_guards(extract_facts(query, guards), extract_facts(candidate, guards), guards)


# --- each guard ---------------------------------------------------------------------------------

REJECTED = [
    ("convert a string to an int in JavaScript", "convert an int to a string in JavaScript", "word_order"),
    ("parse an int from a string", "parse a string from an int", "word_order"),
    ("Is Python faster than Go?", "Is Go faster than Python?", "word_order"),
    ("Write tests for parse_date", "Write tests for parse_time", "identifiers"),
    ("Why does getUserById fail?", "Why does getUserByName fail?", "identifiers"),
    ("What does ENOENT mean?", "What does EACCES mean?", "identifiers"),
    ("What does grep -r do?", "What does grep -v do?", "identifiers"),
    ("Why does `npm install` fail?", "Why does `npm ci` fail?", "literals"),
    ("Split on ','", "Split on ';'", "literals"),
    ("Upgrade to Python 3.12", "Upgrade to Python 3.11", "numbers"),
    ("Explain src/auth/session.py", "Explain src/auth/token.py", "paths"),
    ("Read config.yaml", "Read settings.yaml", "paths"),
    ("Explain src/utils", "Explain src/helpers", "paths"),
    ("Reverse a list in Python", "Reverse a list in JavaScript", "languages"),
    ("Write a loop in Go code", "Write a loop in Rust code", "languages"),
    ("Merge two lists in Python", "Merge two dictionaries in Python", "data_types"),
    ("Is this regex safe?", "Is this regex unsafe?", "negations"),
    ("Why should I not use var?", "Why should I use var?", "negations"),
    ("Make a column nullable", "Make a column non-nullable", "negations"),
    ("Sort a list ascending", "Sort a list descending", "opposites"),
    ("How do I insert into a hash map?", "How do I delete from a hash map?", "opposites"),
    ("Wait for all promises", "Wait for the first promise", "opposites"),
    ("How do I run a single test with pytest?", "How do I skip a single test with pytest?", "substitution"),
]


@pytest.mark.parametrize(("query", "candidate", "guard"), REJECTED)
def test_guard_rejects_near_miss(query, candidate, guard):
    assert guard_for(query, candidate) == guard


ACCEPTED = [
    ("How can I reverse a list in Python?", "how do I reverse a python list"),
    ("How do I convert a string to an int in JavaScript?", "In JS, how do I turn a string into an integer?"),
    ("How do I parse an int from a string in Go?", "How do I convert a string to an int in Go?"),
    ("What does async/await do in Python?", "Explain async and await in Python."),
    ("Is Node.js single threaded?", "Is Node single-threaded?"),
    ("How do I check if a key exists in a Python dictionary?", "Test whether a dict has a given key in Python"),
    ("What is the GIL in Python?", "Can you explain Python's GIL?"),
    ("How do I delete a remote branch in git?", "How can I remove a branch on the remote in git?"),
    ("Explain JavaScript closures, e.g. counters", "Explain closures in JavaScript, e.g. counters"),
]


@pytest.mark.parametrize(("query", "candidate"), ACCEPTED)
def test_guard_accepts_paraphrase(query, candidate):
    assert guard_for(query, candidate) is None


def test_disabled_guard_is_skipped():
    guards = CacheGuards(word_order=False)

    assert guard_for("convert a string to an int", "convert an int to a string", guards) is None


def test_extra_opposites_from_policy():
    guards = CacheGuards(extra_opposites=[("staging", "canary")])

    assert guard_for("deploy to staging now", "deploy to canary now", guards) == "opposites"


def test_extra_languages_from_policy():
    guards = CacheGuards(extra_languages=["mojo"], substitution=False)

    assert guard_for("write a loop in mojo please", "write a loop please", guards) == "languages"


def test_stem_folds_common_suffixes():
    assert stem("deleting") == stem("delete") == stem("deleted")
    assert stem("files") == stem("file")
    assert stem("go") == "go"


@pytest.mark.parametrize("text", ["", "   ", "🙂🙂", "((((", "`", "a" * 5000, "\x00\x01 binary"])
def test_extract_facts_survives_odd_text(text):
    facts = extract_facts(text, GUARDS)

    assert check_guards(facts, facts, GUARDS) is None


@pytest.mark.parametrize("name", ["near-misses", "near-misses-holdout", "near-misses-fresh"])
def test_evaluation_near_misses_never_hit(name):
    # Every near miss of examples/cache-pairs that MiniLM scores at or above the shipped threshold
    # must be rejected by a guard.
    embedder = load_embedder()
    threshold = CacheSection().similarity
    passed = []
    for line in (PAIRS / f"{name}.jsonl").read_text().splitlines():
        pair = json.loads(line)
        vectors = embedder.embed([pair["stored"], pair["asked"]])
        if float(vectors[0] @ vectors[1]) >= threshold and guard_for(pair["asked"], pair["stored"]) is None:
            passed.append(pair["id"])

    assert passed == []


# --- keys ---------------------------------------------------------------------------------------


def ctx_for(body: dict, team: str = "web", headers: dict | None = None) -> RequestContext:
    return RequestContext(request_id="r", protocol="anthropic", body=body, headers=headers or {}, team=team,
                          requested_model=body.get("model", ""))


BODY = {
    "model": "claude-haiku-4-5",
    "max_tokens": 100,
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "messages": [{"role": "user", "content": "what is a monad?"}],
}


def test_exact_key_ignores_cache_control_and_string_form():
    other = {
        **BODY,
        "max_tokens": 500,
        "stream": True,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "what is a monad? "}]}],
    }

    assert exact_key(ctx_for(BODY), CacheScope()) == exact_key(ctx_for(other), CacheScope())


@pytest.mark.parametrize(
    "change",
    [{"temperature": 0}, {"model": "gpt-4o"}, {"tools": [{"name": "Read"}]}, {"system": "Be verbose."}],
)
def test_exact_key_changes_with_answer_fields(change):
    assert exact_key(ctx_for(BODY), CacheScope()) != exact_key(ctx_for({**BODY, **change}), CacheScope())


def test_keys_change_with_team():
    assert exact_key(ctx_for(BODY), CacheScope()) != exact_key(ctx_for(BODY, team="other"), CacheScope())
    assert scope_key(ctx_for(BODY), CacheScope()) != scope_key(ctx_for(BODY, team="other"), CacheScope())


def test_scope_key_ignores_the_question_text():
    other = {**BODY, "messages": [{"role": "user", "content": "explain monads"}]}

    assert scope_key(ctx_for(BODY), CacheScope()) == scope_key(ctx_for(other), CacheScope())


def test_scope_key_follows_scope_switches():
    other = {**BODY, "system": "Be verbose."}

    assert scope_key(ctx_for(BODY), CacheScope()) != scope_key(ctx_for(other), CacheScope())
    assert scope_key(ctx_for(BODY), CacheScope(system=False)) == scope_key(ctx_for(other), CacheScope(system=False))


def test_last_user_context_collects_reminders_and_images():
    body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>file a.py</system-reminder>"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        {"type": "text", "text": "what is wrong here?"},
    ]}]}

    context = last_user_context(body)

    assert context[0] == "<system-reminder>file a.py</system-reminder>"
    assert context[1]["type"] == "image"
    assert len(context) == 2


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"messages": []}, "no messages"),
        ({"messages": "oops"}, "no messages"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, "max_messages"),
        ({"messages": [{"role": "user", "content": "a"}], "temperature": 1.5}, "temperature"),
    ],
)
def test_ineligible_reasons(body, reason):
    assert reason in ineligible_reason(ctx_for(body), CacheEligibility())


def test_storable_reasons():
    good = {"role": "assistant", "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn"}

    assert storable_reason(good, CacheEligibility()) is None
    assert "incomplete" in storable_reason({**good, "stop_reason": "max_tokens"}, CacheEligibility())
    assert storable_reason({**good, "content": []}, CacheEligibility()) == "empty content"
    assert storable_reason("not a dict", CacheEligibility()) == "not an assistant message"


def test_section_rejects_bad_threshold():
    with pytest.raises(ValueError, match="must be above 0"):
        CacheSection(class_similarity={"explain": 1.5})


def test_section_rejects_bad_scope_header():
    with pytest.raises(ValueError, match="invalid header name"):
        CacheSection(scope={"headers": ["bad header"]})
