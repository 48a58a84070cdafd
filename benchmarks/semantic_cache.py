"""Measure the semantic cache: precision and recall on the evaluation pairs, latency, memory.

Run from the repository root:

    python benchmarks/semantic_cache.py [--sizes 10000,100000] [--json benchmarks/out/semantic_cache.json]

Part 1 stores the first prompt of every pair in `examples/cache-pairs/` and looks up the second,
through `SemanticCache` with the default policy's settings (each pair in its own team, so pairs do
not see each other). A hit on a paraphrase is a true positive, a hit on a near miss a false
positive. It also sweeps the threshold, with and without the guards, to show what each costs.

Part 2 times `embed` on one prompt, and `lookup` (embedding, FAISS search and guards) against a
cache filled to each size in one scope: a hit is a paraphrase of a stored prompt, a miss an
unrelated prompt. The fill uses real embeddings of 2,000 generated coding prompts plus noisy copies
of them, because embedding 100,000 distinct prompts would take about ten minutes on two cores.

Part 3 reports the resident memory that 100,000 entries add (vectors, FAISS index, entry records
with a 1 kB response each), read from /proc/self/status, so Linux only.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.embedding import load_embedder  # noqa: E402
from engine.pipeline.context import RequestContext  # noqa: E402
from engine.policy.models import Policy  # noqa: E402
from engine.stages.cache import SemanticCache  # noqa: E402
from engine.stages.cache.guards import check_guards, extract_facts  # noqa: E402
from engine.stages.cache.policy import CacheSection  # noqa: E402
from engine.stages.cache.snapshot import encode_message  # noqa: E402

PAIRS = ROOT / "examples" / "cache-pairs"
PAIR_FILES = ("paraphrases", "near-misses", "paraphrases-holdout", "near-misses-holdout", "near-misses-fresh")
THRESHOLDS = (0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.92, 0.94, 0.96)


def make_policy(**cache: Any) -> Policy:
    return Policy.model_validate(
        {
            "providers": {"stub": {"kind": "anthropic", "base_url": "http://127.0.0.1:9"}},
            "tiers": [{"name": "only", "provider": "stub", "model": "claude-haiku-4-5"}],
            "cache": {"enabled": True, **cache},
        }
    )


def make_ctx(text: str, team: str = "bench") -> RequestContext:
    body = {"model": "claude-haiku-4-5", "max_tokens": 1024, "messages": [{"role": "user", "content": text}]}
    return RequestContext(request_id="bench", protocol="anthropic", body=body, headers={}, team=team,
                          requested_model="claude-haiku-4-5")


def answer(text: str) -> dict:
    return {"id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 20, "output_tokens": 200}}


def load_pairs(name: str) -> list[dict]:
    return [json.loads(line) for line in (PAIRS / f"{name}.jsonl").read_text().splitlines() if line.strip()]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


# --- part 1: precision and recall -----------------------------------------------------------------


async def evaluate_pairs(policy: Policy, embedder) -> dict[str, Any]:
    cache = SemanticCache(policy.cache, embedder)
    results: dict[str, Any] = {}
    for name in PAIR_FILES:
        hits, refused_by = 0, {}
        false_hits = []
        for number, pair in enumerate(load_pairs(name)):
            team = f"{name}-{number}"
            await cache.store(make_ctx(pair["stored"], team), policy, answer("cached answer"))
            cached, decision = await cache.lookup(make_ctx(pair["asked"], team), policy)
            if cached is not None:
                hits += 1
                if "near" in name:
                    false_hits.append(pair["id"])
            elif decision["guard"]:
                refused_by[decision["guard"]] = refused_by.get(decision["guard"], 0) + 1
        results[name] = {"pairs": number + 1, "hits": hits, "refused_by": refused_by, "false_hits": false_hits}
    return results


def sweep(embedder, section: CacheSection) -> list[dict[str, Any]]:
    scored: dict[str, list[tuple[float, bool]]] = {}
    for name in PAIR_FILES:
        rows = []
        for pair in load_pairs(name):
            vectors = embedder.embed([pair["stored"], pair["asked"]])
            guard = check_guards(
                extract_facts(pair["asked"], section.guards), extract_facts(pair["stored"], section.guards), section.guards
            )
            rows.append((float(vectors[0] @ vectors[1]), guard is None))
        scored[name] = rows

    table = []
    for threshold in THRESHOLDS:
        row: dict[str, Any] = {"threshold": threshold}
        for name, rows in scored.items():
            row[f"{name} (similarity only)"] = sum(1 for similarity, _ in rows if similarity >= threshold)
            row[f"{name} (with guards)"] = sum(1 for similarity, passed in rows if similarity >= threshold and passed)
        table.append(row)
    return table


# --- part 2: latency ------------------------------------------------------------------------------

TOPICS = ["a list", "a dict", "a string", "a file", "a date", "an array", "a set", "a map", "a class", "a thread",
          "a socket", "a regex", "a JSON document", "a CSV file", "a tree", "a queue", "a promise", "a struct"]
ACTIONS = ["sort", "reverse", "copy", "parse", "validate", "serialize", "compare", "filter", "print", "hash",
           "lock", "search", "split", "test", "profile", "cache", "stream", "log"]
LANGUAGES = ["Python", "JavaScript", "TypeScript", "Go", "Rust", "Java", "C#"]
FORMS = ["How do I {action} {topic} in {language}?", "What is the fastest way to {action} {topic} in {language}?"]


def generated_prompts(count: int) -> list[str]:
    combos = itertools.product(FORMS, ACTIONS, TOPICS, LANGUAGES)
    return [form.format(action=action, topic=topic, language=language) for form, action, topic, language in
            itertools.islice(combos, count)]


def fill(cache: SemanticCache, size: int, prompts: list[str], vectors: np.ndarray, answer_text: str) -> float:
    """Insert `size` entries in one scope and return the seconds it took.

    Uses the cache's private `_insert`, because going through `store` would embed every prompt.
    """
    rng = np.random.default_rng(7)
    scope_state = cache._request_state(make_ctx(prompts[0]), cache.section)  # noqa: SLF001
    started = time.perf_counter()
    with cache._lock:  # noqa: SLF001
        for number in range(size):
            base = number % len(prompts)
            vector = vectors[base]
            if number >= len(prompts):
                noisy = vector + rng.normal(scale=0.04, size=vector.shape).astype(np.float32)
                vector = noisy / np.linalg.norm(noisy)
            state = {"exact": f"bench-{number}", "scope": scope_state["scope"], "text": prompts[base],
                     "max_tokens": None}
            message = answer(answer_text)
            cache._insert(state, message, encode_message(message), vector, time.time())  # noqa: SLF001
    return time.perf_counter() - started


async def time_lookups(
    cache: SemanticCache, policy: Policy, hit_texts: list[str], miss_texts: list[str], rounds: int
) -> dict[str, dict[str, list[float]]]:
    """Time hits and misses interleaved, so that load from other processes affects both alike.

    Returns, per kind, the whole lookup time and the part outside the embedder (`cache_ms`).
    """
    timings: dict[str, dict[str, list[float]]] = {
        kind: {"lookup_ms": [], "cache_ms": [], "results": []} for kind in ("hit", "miss")
    }
    for number in range(rounds):
        for kind, texts in (("hit", hit_texts), ("miss", miss_texts)):
            ctx = make_ctx(texts[number % len(texts)])
            started = time.perf_counter()
            _, decision = await cache.lookup(ctx, policy)
            elapsed = (time.perf_counter() - started) * 1000
            timings[kind]["lookup_ms"].append(elapsed)
            timings[kind]["cache_ms"].append(elapsed - decision.get("embed_ms", 0.0))
            timings[kind]["results"].append(decision["result"])
    return timings


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def measure_sizes(embedder, sizes: list[int], rounds: int) -> list[dict[str, Any]]:
    prompts = generated_prompts(2000)
    vectors = embedder.embed(prompts)
    hit_texts = [prompt.replace("How do I", "How can I") for prompt in prompts[:200:7]]
    miss_texts = ["Write a haiku about autumn leaves", "Plan a trip to Lisbon in May", "Summarise the plot of Hamlet"]
    answer_text = "x" * 1000
    # Inline embedding at every size, a worker-thread embedding at the smallest, and an exact flat
    # index at the largest size for comparison with HNSW.
    configs = [(size, 20_000, False) for size in sizes]
    configs += [(sizes[0], 20_000, True), (max(sizes), max(sizes) + 1, False)]
    rows = []

    for size, exact_up_to, in_thread in configs:
        policy = make_policy(max_entries=size + 10, index={"exact_up_to": exact_up_to})
        gc.collect()
        before = rss_mib()
        cache = SemanticCache(policy.cache, embedder, embed_in_thread=in_thread)
        fill_s = fill(cache, size, prompts, vectors, answer_text)
        after = rss_mib()

        await time_lookups(cache, policy, hit_texts, miss_texts, 10)  # warm-up
        timings = await time_lookups(cache, policy, hit_texts, miss_texts, rounds)

        row: dict[str, Any] = {
            "entries": size, "index": "hnsw" if cache.stats()["hnsw_scopes"] else "flat",
            "embed": "thread" if in_thread else "inline", "fill_s": round(fill_s, 1),
            "rss_added_mib": round(after - before, 1),
        }
        for kind, values in timings.items():
            row[f"{kind}_p50_ms"] = round(statistics.median(values["lookup_ms"]), 2)
            row[f"{kind}_p99_ms"] = round(percentile(values["lookup_ms"], 0.99), 2)
            row[f"{kind}_cache_p50_ms"] = round(statistics.median(values["cache_ms"]), 2)
            row[f"{kind}_results"] = {result: values["results"].count(result) for result in set(values["results"])}
        rows.append(row)
        print(json.dumps(rows[-1]), flush=True)
        del cache
    return rows


async def compare_embedding_modes(embedder, size: int, rounds: int) -> dict[str, Any]:
    """Compare embedding on the event loop with embedding in a worker thread, alternating per lookup.

    Also measures how long a concurrent coroutine that wakes every millisecond is kept waiting,
    which is what other requests on the same event loop feel.
    """
    prompts = generated_prompts(2000)
    vectors = embedder.embed(prompts)
    hit_texts = [prompt.replace("How do I", "How can I") for prompt in prompts[:200:7]]
    policy = make_policy(max_entries=size + 10)
    cache = SemanticCache(policy.cache, embedder)
    fill(cache, size, prompts, vectors, "x" * 1000)
    results: dict[str, Any] = {}
    samples: dict[bool, list[float]] = {False: [], True: []}
    stalls: dict[bool, list[float]] = {False: [], True: []}

    async def ticker(mode: bool, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            stalls[mode].append((time.perf_counter() - started) * 1000 - 1.0)

    for number in range(rounds):
        for mode in (False, True):
            cache._embed_in_thread = mode  # noqa: SLF001
            stop = asyncio.Event()
            tick = asyncio.create_task(ticker(mode, stop))
            await asyncio.sleep(0)
            started = time.perf_counter()
            await cache.lookup(make_ctx(hit_texts[number % len(hit_texts)]), policy)
            samples[mode].append((time.perf_counter() - started) * 1000)
            stop.set()
            await tick
    for mode, name in ((False, "inline"), (True, "thread")):
        results[name] = {
            "lookup_p50_ms": round(statistics.median(samples[mode]), 2),
            "lookup_p99_ms": round(percentile(samples[mode], 0.99), 2),
            "loop_stall_p50_ms": round(statistics.median(stalls[mode]), 2) if stalls[mode] else None,
            "loop_stall_p99_ms": round(percentile(stalls[mode], 0.99), 2) if stalls[mode] else None,
        }
    return results


def time_embed(embedder, rounds: int) -> dict[str, float]:
    prompts = [pair["asked"] for pair in load_pairs("paraphrases")]
    embedder.embed(prompts[:4])
    timings = []
    for number in range(rounds):
        started = time.perf_counter()
        embedder.embed([prompts[number % len(prompts)]])
        timings.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(statistics.median(timings), 2), "p99_ms": round(percentile(timings, 0.99), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="Comma-separated entry counts to time lookups at.")
    parser.add_argument("--rounds", type=int, default=300, help="Lookups timed per size and kind.")
    parser.add_argument("--json", type=Path, help="Also write all results to this JSON file.")
    parser.add_argument("--pairs-only", action="store_true", help="Run part 1 only (no latency or memory).")
    parser.add_argument("--skip-pairs", action="store_true", help="Skip part 1.")
    args = parser.parse_args()

    policy = make_policy()
    embedder = load_embedder(policy.cache.embedder)
    report: dict[str, Any] = {"threshold": policy.cache.similarity}

    if not args.skip_pairs:
        report["pairs"] = asyncio.run(evaluate_pairs(policy, embedder))
        print(json.dumps(report["pairs"], indent=1))
        report["sweep"] = sweep(embedder, policy.cache)
        for row in report["sweep"]:
            print(json.dumps(row))
    if args.pairs_only:
        return 0
    report["embed"] = time_embed(embedder, args.rounds)
    print("embed", report["embed"])
    report["embedding_modes"] = asyncio.run(compare_embedding_modes(embedder, 10_000, args.rounds))
    print("embedding modes", json.dumps(report["embedding_modes"]))
    report["sizes"] = asyncio.run(measure_sizes(embedder, [int(size) for size in args.sizes.split(",")], args.rounds))

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
