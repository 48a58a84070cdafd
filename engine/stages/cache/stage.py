"""The cache stage: `SemanticCache.lookup` before tier routing, `SemanticCache.store` after the response.

One `SemanticCache` serves every team. Isolation comes from the scope key, which always contains
the team, so no FAISS search ever sees another team's vectors: each scope has its own index.
Settings read per request (threshold, TTL, scope, eligibility, guards) come from the policy passed
to `lookup` and `store`, so team overrides apply. Settings that shape the store (embedder, size,
index, persistence) come from the section the cache was built with; `cache_for` builds a new cache
when they change.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine.embedding import Embedder, EmbeddingError, load_embedder
from engine.pipeline.context import RequestContext
from engine.stages.cache import keys
from engine.stages.cache.guards import TextFacts, check_guards, extract_facts
from engine.stages.cache.index import ScopeIndex
from engine.stages.cache.policy import CacheGuards, CacheSection
from engine.stages.cache.snapshot import Entry, Snapshot, decode_message, encode_message, read_snapshot, write_snapshot
from engine.tokens import count_text

# Entries whose guard facts stay extracted; a lookup checks at most `index.candidates` entries.
FACTS_MEMORY = 1024

logger = logging.getLogger(__name__)

HIT, MISS, BYPASS, INELIGIBLE, REFUSED = "hit", "miss", "bypass", "ineligible", "refused"
_SWEEP_INTERVAL = 60.0


class SemanticCache:
    """Exact and semantic response cache over per-scope FAISS indexes, with TTL, LRU and snapshots.

    Safe to call from the event loop and from worker threads: every change to the entries and
    indexes happens under one lock, and embedding runs outside it.
    """

    def __init__(
        self,
        section: CacheSection,
        embedder: Embedder | None = None,
        *,
        embed_in_thread: bool | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.section = section
        self._embedder = embedder
        # Embedding runs in a worker thread by default (ONNX Runtime and httpx release the GIL). Inline
        # embedding held the event loop for the whole embed, while the thread hop added about 1 to 2 ms
        # per lookup (benchmarks/semantic_cache.py, "embedding modes"). The hashing test embedder is
        # fast enough to run inline.
        self._embed_in_thread = embed_in_thread if embed_in_thread is not None else section.embedder.kind != "hashing"
        self._clock = clock
        self._lock = threading.RLock()
        self._entries: OrderedDict[int, Entry] = OrderedDict()  # least recently used first
        self._by_exact: dict[str, int] = {}
        # Guard facts of entry texts, kept per entry id with the guard settings they were extracted
        # with, so that a lookup does not re-extract them from every candidate it checks.
        self._facts: OrderedDict[int, tuple[CacheGuards, TextFacts]] = OrderedDict()
        self._indexes: dict[str, ScopeIndex] = {}
        self._next_id = 1
        self._dirty = False
        self._last_flush = clock()
        self._last_sweep = clock()
        self._flushing = False
        self._directory = Path(section.persistence.directory) if section.persistence.directory else None
        if self._directory is not None:
            try:
                self._restore()
            except EmbeddingError as error:
                logger.error("semantic cache could not restore %s, starting empty: %s", self._directory, error)

    # --- public API ------------------------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = load_embedder(self.section.embedder)
        return self._embedder

    def __len__(self) -> int:
        return len(self._entries)

    async def lookup(self, ctx: RequestContext, policy: Any, *, dry_run: bool = False) -> tuple[dict | None, dict]:
        """Return the cached response (a canonical Message dict) or None, and the cache decision.

        With `dry_run` (for `leangate explain`) the cache itself is left unchanged: no LRU update,
        no hit count, no removal of expired entries.

        The decision has `eligible`, `result` (hit, miss, bypass, ineligible or refused),
        `similarity`, `guard` (the guard that rejected a candidate above the threshold),
        `entry_age_s`, and also `match` (exact or semantic), `threshold` and `reason`.
        Sets `ctx.scratch["embedding"]` and `ctx.scratch["embedding_model"]` when it embeds.
        """
        section: CacheSection = policy.cache
        decision: dict[str, Any] = {
            "eligible": False, "result": BYPASS, "similarity": None, "guard": None, "entry_age_s": None,
            "match": None, "threshold": None, "reason": None,
        }
        skip = _skip_reason(ctx, section)
        if skip is not None:
            decision["reason"] = skip
            return None, decision
        reason = keys.ineligible_reason(ctx, section.eligibility)
        if reason is not None:
            decision.update(result=INELIGIBLE, reason=reason)
            return None, decision

        decision["eligible"] = True
        state = self._request_state(ctx, section)
        now = self._clock()

        with self._lock:
            entry = self._exact_entry(state["exact"], state["max_tokens"], section, now, dry_run)
            if entry is not None:
                decision.update(result=HIT, match="exact", similarity=1.0, entry_age_s=round(now - entry.created, 3))
                return self._serve(entry, now, dry_run), decision

        text_reason = _semantic_skip_reason(state["text"], section)
        if text_reason is not None:
            decision.update(result=MISS, reason=text_reason)
            return None, decision

        vector = await self._query_vector(ctx, state["text"], decision)
        if vector is None:
            decision["result"] = MISS
            return None, decision
        state["vector"] = vector

        threshold = section.threshold_for(ctx.scratch.get("class"))
        decision["threshold"] = threshold
        with self._lock:
            return self._semantic_match(state, section, threshold, now, decision, dry_run)

    async def store(self, ctx: RequestContext, policy: Any, message: dict) -> None:
        """Store the upstream response for this request, when the request and the response qualify.

        Call it only for responses that came from upstream, not for cache hits. A response that may
        not be stored is skipped and logged at debug level.
        """
        section: CacheSection = policy.cache
        if not section.enabled or "no-store" in ctx.headers.get("cache-control", "").lower():
            return
        if keys.ineligible_reason(ctx, section.eligibility) is not None:
            return
        reason = keys.storable_reason(message, section.eligibility)
        if reason is not None:
            logger.debug("request %s: response not cached: %s", ctx.request_id, reason)
            return

        # Entries keep the response as JSON bytes: a fifth of the memory of the dict, and decoding is
        # faster than the deep copy each hit needs otherwise.
        encoded = encode_message(message)
        state = self._request_state(ctx, section)
        vector = state.get("vector")
        if vector is None and _semantic_skip_reason(state["text"], section) is None:
            vector = await self._query_vector(ctx, state["text"], {})
        now = self._clock()
        with self._lock:
            self._insert(state, message, encoded, vector, now)
            self._evict(now)
        await self._maybe_flush(now)

    def flush(self) -> Path | None:
        """Write a snapshot now when persistence is on and entries changed; return its path."""
        if self._directory is None:
            return None
        with self._lock:
            if not self._dirty:
                return None
            snapshot = self._snapshot()
            self._dirty = False
            self._last_flush = self._clock()
        try:
            return write_snapshot(self._directory, snapshot)
        except OSError as error:
            logger.error("writing the semantic cache snapshot to %s failed: %s", self._directory, error)
            with self._lock:
                self._dirty = True
            return None

    async def aclose(self) -> None:
        """Write the last snapshot; call it when the gateway shuts down."""
        await asyncio.to_thread(self.flush)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "entries": len(self._entries),
                "scopes": len(self._indexes),
                "vectors": sum(len(index) for index in self._indexes.values()),
                "hnsw_scopes": sum(1 for index in self._indexes.values() if index.kind == "hnsw"),
            }

    # --- lookup helpers ---------------------------------------------------------------------------

    def _request_state(self, ctx: RequestContext, section: CacheSection) -> dict[str, Any]:
        """Compute the keys and text of this request once, and keep them for `store`."""
        state = ctx.scratch.get("cache_state")
        if state is None:
            text = ctx.scratch.get("last_user_text")
            if text is None:
                from engine.stages.tools.classify import last_user_text

                text = last_user_text(ctx.body.get("messages") or [])
            state = {
                "exact": keys.exact_key(ctx, section.scope),
                "scope": keys.scope_key(ctx, section.scope),
                "text": text,
                "max_tokens": ctx.body.get("max_tokens"),
            }
            ctx.scratch["cache_state"] = state
        return state

    async def _query_vector(self, ctx: RequestContext, text: str, decision: dict) -> np.ndarray | None:
        started = time.perf_counter()
        try:
            shared = ctx.scratch.get("embedding")
            if shared is not None and ctx.scratch.get("embedding_model") == self.embedder.name:
                return np.asarray(shared, dtype=np.float32)
            if self._embed_in_thread:
                vectors = await asyncio.to_thread(self.embedder.embed, [text])
            else:
                vectors = self.embedder.embed([text])
        except EmbeddingError as error:
            logger.warning("request %s: embedding for the semantic cache failed: %s", ctx.request_id, error)
            decision["reason"] = f"embedding failed: {error}"
            return None
        decision["embed_ms"] = round((time.perf_counter() - started) * 1000, 2)
        vector = vectors[0]
        ctx.scratch["embedding"] = vector
        ctx.scratch["embedding_model"] = self.embedder.name
        return vector

    def _exact_entry(
        self, exact: str, max_tokens: Any, section: CacheSection, now: float, dry_run: bool
    ) -> Entry | None:
        entry_id = self._by_exact.get(exact)
        if entry_id is None:
            return None
        entry = self._entries[entry_id]
        if now - entry.created > section.ttl:
            if not dry_run:
                self._remove(entry_id)
            return None
        if not _fits_max_tokens(entry, max_tokens):
            return None
        return entry

    def _semantic_match(
        self, state: dict, section: CacheSection, threshold: float, now: float, decision: dict, dry_run: bool
    ) -> tuple[dict | None, dict]:
        index = self._indexes.get(state["scope"])
        if index is None:
            decision.update(result=MISS, reason="no entries in this scope")
            return None, decision

        query_facts = None
        best_similarity = None
        for entry_id, similarity in index.search(state["vector"], self.section.index.candidates):
            similarity = min(similarity, 1.0)
            if best_similarity is None:
                best_similarity = similarity
            if similarity < threshold:
                break
            entry = self._entries[entry_id]
            if now - entry.created > section.ttl:
                if not dry_run:
                    self._remove(entry_id)
                continue
            if not _fits_max_tokens(entry, state["max_tokens"]):
                continue
            query_facts = query_facts or extract_facts(state["text"], section.guards)
            guard = check_guards(query_facts, self._entry_facts(entry, section.guards), section.guards)
            if guard is not None:
                if decision["guard"] is None:
                    decision.update(result=REFUSED, guard=guard, similarity=round(similarity, 4))
                continue
            decision.update(
                result=HIT, match="semantic", guard=None, similarity=round(similarity, 4),
                entry_age_s=round(now - entry.created, 3),
            )
            return self._serve(entry, now, dry_run), decision

        if decision["result"] != REFUSED:
            decision["result"] = MISS
            decision["similarity"] = None if best_similarity is None else round(best_similarity, 4)
        return None, decision

    def _entry_facts(self, entry: Entry, guards: CacheGuards) -> TextFacts:
        known = self._facts.get(entry.entry_id)
        if known is not None and (known[0] is guards or known[0] == guards):
            self._facts.move_to_end(entry.entry_id)
            return known[1]
        facts = extract_facts(entry.text, guards)
        self._facts[entry.entry_id] = (guards, facts)
        if len(self._facts) > FACTS_MEMORY:
            self._facts.popitem(last=False)
        return facts

    def _serve(self, entry: Entry, now: float, dry_run: bool) -> dict:
        if not dry_run:
            entry.used = now
            entry.hits += 1
            self._entries.move_to_end(entry.entry_id)
            self._dirty = True
        return decode_message(entry.message)

    # --- store helpers ----------------------------------------------------------------------------

    def _insert(self, state: dict, message: dict, encoded: bytes, vector: np.ndarray | None, now: float) -> None:
        existing = self._by_exact.get(state["exact"])
        if existing is not None:
            # A concurrent identical request already stored a response. Keep one entry with the newest.
            entry = self._entries[existing]
            entry.message = encoded
            entry.created = entry.used = now
            entry.output_tokens = _output_tokens(message)
            self._entries.move_to_end(existing)
            self._dirty = True
            return

        entry = Entry(
            entry_id=self._next_id, scope=state["scope"], exact=state["exact"], text=state["text"],
            message=encoded, created=now, used=now, has_vector=vector is not None,
            output_tokens=_output_tokens(message),
        )
        self._next_id += 1
        self._entries[entry.entry_id] = entry
        self._by_exact[entry.exact] = entry.entry_id
        if vector is not None:
            self._index_for(entry.scope).add(entry.entry_id, vector)
        self._dirty = True

    def _index_for(self, scope: str) -> ScopeIndex:
        index = self._indexes.get(scope)
        if index is None:
            index = ScopeIndex(self.embedder.dim, self.section.index)
            self._indexes[scope] = index
        return index

    def _remove(self, entry_id: int) -> None:
        entry = self._entries.pop(entry_id, None)
        if entry is None:
            return
        self._facts.pop(entry_id, None)
        if self._by_exact.get(entry.exact) == entry_id:
            del self._by_exact[entry.exact]
        if entry.has_vector:
            index = self._indexes.get(entry.scope)
            if index is not None:
                index.remove(entry_id)
                if len(index) == 0:
                    del self._indexes[entry.scope]
        self._dirty = True

    def _evict(self, now: float) -> None:
        while len(self._entries) > self.section.max_entries:
            oldest = next(iter(self._entries))
            self._remove(oldest)
        # NOTE: the sweep uses this cache's own TTL. A team whose policy sets a longer TTL loses its
        # entries at this one; lookups apply the request policy's TTL either way.
        if now - self._last_sweep >= _SWEEP_INTERVAL:
            self._last_sweep = now
            expired = [entry_id for entry_id, entry in self._entries.items() if now - entry.created > self.section.ttl]
            for entry_id in expired:
                self._remove(entry_id)
            if expired:
                logger.info("semantic cache removed %d expired entries", len(expired))

    # --- persistence ------------------------------------------------------------------------------

    async def _maybe_flush(self, now: float) -> None:
        if self._directory is None or self._flushing or now - self._last_flush < self.section.persistence.interval:
            return
        self._flushing = True
        try:
            await asyncio.to_thread(self.flush)
        finally:
            self._flushing = False

    def _snapshot(self) -> Snapshot:
        id_parts, vector_parts = [], []
        for index in self._indexes.values():
            ids, vectors = index.vectors()
            id_parts.append(ids)
            vector_parts.append(vectors)
        dim = self.embedder.dim
        ids = np.concatenate(id_parts) if id_parts else np.zeros(0, dtype=np.int64)
        vectors = np.concatenate(vector_parts) if vector_parts else np.zeros((0, dim), dtype=np.float32)
        entries = [copy.copy(entry) for entry in self._entries.values()]
        return Snapshot(embedder=self.embedder.name, dim=dim, entries=entries, ids=ids, vectors=vectors)

    def _restore(self) -> None:
        assert self._directory is not None
        snapshot = read_snapshot(self._directory, self.embedder.name, self.embedder.dim)
        if snapshot is None:
            return
        rows = {int(entry_id): row for row, entry_id in enumerate(snapshot.ids.tolist())}
        now = self._clock()
        for entry in sorted(snapshot.entries, key=lambda item: item.used):
            if now - entry.created > self.section.ttl:
                continue
            self._entries[entry.entry_id] = entry
            self._by_exact[entry.exact] = entry.entry_id
            if entry.has_vector:
                self._index_for(entry.scope).add(entry.entry_id, snapshot.vectors[rows[entry.entry_id]])
        self._next_id = max(self._entries, default=0) + 1
        self._evict(now)
        logger.info("semantic cache restored %d entries from %s", len(self._entries), self._directory)


def _skip_reason(ctx: RequestContext, section: CacheSection) -> str | None:
    if not section.enabled:
        return "cache disabled by policy"
    cache_control = ctx.headers.get("cache-control", "").lower()
    if "no-cache" in cache_control or "no-store" in cache_control:
        return f"cache-control: {cache_control}"
    if ctx.headers.get("x-leangate-cache", "").strip().lower() == "bypass":
        return "x-leangate-cache: bypass"
    return None


def _semantic_skip_reason(text: str, section: CacheSection) -> str | None:
    if not text.strip():
        return "no user text to embed"
    if count_text(text) > section.eligibility.semantic_max_tokens:
        return f"user text longer than semantic_max_tokens {section.eligibility.semantic_max_tokens}"
    return None


def _output_tokens(message: dict) -> int | None:
    usage = message.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("output_tokens"), int):
        return usage["output_tokens"]
    return None


def _fits_max_tokens(entry: Entry, max_tokens: Any) -> bool:
    """A cached response longer than the request's max_tokens is not one the model could have given."""
    return not (isinstance(max_tokens, int) and entry.output_tokens is not None and entry.output_tokens > max_tokens)
