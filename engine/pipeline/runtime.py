"""State that outlives a request: session memories, the semantic cache, the embedder, upstream
clients. Stages stay functions of (request, policy); the runtime hands them the state they need."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from engine.embedding import Embedder, EmbedderConfig, load_embedder
from engine.pipeline.context import RequestContext
from engine.policy.models import Policy
from engine.providers.dispatch import Upstreams
from engine.stages.cache import cache_for, close_caches
from engine.stages.compress.stage import compress
from engine.stages.prompt_cache.stage import apply_prompt_caching
from engine.stages.tier.route import route_tier
from engine.stages.tier.sessions import TierSessions
from engine.stages.tools.select import select_tools
from engine.stages.tools.sessions import ToolSessions

log = logging.getLogger(__name__)

# In an agent loop the last user text stays the same for many turns while tool results pile up,
# so remembering recent embeddings saves most of the embedding work of a session.
EMBEDDING_MEMORY = 4096


class _Slot:
    __slots__ = ("text", "vector", "error", "done")

    def __init__(self, text: str):
        self.text = text
        self.vector: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()


class BatchingEmbedder:
    """Runs single-text embed calls that arrive while another batch runs as one batch.

    The first caller becomes the leader and embeds what is pending; callers that arrive meanwhile
    wait, and the leader embeds them together next. At low load nothing waits, and under load one
    MiniLM batch of 16 short texts costs about half as much per text as 16 single calls (2 cores).
    """

    def __init__(self, inner: Embedder, max_batch: int = 16):
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self._max_batch = max_batch
        self._pending: list[_Slot] = []
        self._leading = False
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) != 1:
            return self.inner.embed(texts)
        slot = _Slot(texts[0])
        with self._lock:
            self._pending.append(slot)
            lead = not self._leading
            self._leading = True
        if lead:
            self._lead()
        slot.done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.vector.reshape(1, -1)

    def _lead(self) -> None:
        while True:
            with self._lock:
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch:]
                if not batch:
                    self._leading = False
                    return
            try:
                vectors = self.inner.embed([slot.text for slot in batch])
            except BaseException as exc:  # noqa: BLE001 - every waiting caller gets the error
                for slot in batch:
                    slot.error = exc
                    slot.done.set()
                continue
            for index, slot in enumerate(batch):
                slot.vector = vectors[index]
                slot.done.set()


class MemoizedEmbedder:
    """Wraps an embedder with a bounded LRU of recent texts' vectors (keyed by a hash of the text)."""

    def __init__(self, inner: Embedder, size: int = EMBEDDING_MEMORY):
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self._size = size
        self._vectors: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        keys = [hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest() for text in texts]
        rows: list[np.ndarray | None] = []
        with self._lock:
            for key in keys:
                vector = self._vectors.get(key)
                if vector is not None:
                    self._vectors.move_to_end(key)
                rows.append(vector)
        missing = [index for index, row in enumerate(rows) if row is None]
        if missing:
            computed = self.inner.embed([texts[index] for index in missing])
            with self._lock:
                for offset, index in enumerate(missing):
                    # A copy, so that the memo does not keep the whole batch's array alive per row.
                    rows[index] = self._vectors[keys[index]] = computed[offset].copy()
                while len(self._vectors) > self._size:
                    self._vectors.popitem(last=False)
        return np.vstack(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)


class Runtime:
    def __init__(self) -> None:
        self.upstreams = Upstreams()
        self.tool_sessions = ToolSessions()
        self.tier_sessions = TierSessions()
        self._embedders: dict[EmbedderConfig, MemoizedEmbedder] = {}
        # cache section object id -> (section, cache): found once per policy, not per request.
        self._caches: dict[int, tuple[Any, Any]] = {}
        self._embedder_failures: set[EmbedderConfig] = set()

    def embedder(self, policy: Policy) -> MemoizedEmbedder | None:
        """Return the policy's embedder, loaded once per config, or None when it cannot be loaded."""
        config = policy.cache.embedder
        embedder = self._embedders.get(config)
        if embedder is not None or config in self._embedder_failures:
            return embedder
        try:
            embedder = MemoizedEmbedder(BatchingEmbedder(load_embedder(config)))
        except Exception as exc:  # noqa: BLE001 - routing must keep working without feature 15
            log.error("cannot load the embedder (%s); semantic features are off: %s", config.kind, exc)
            self._embedder_failures.add(config)
            return None
        self._embedders[config] = embedder
        return embedder

    def warm_up(self, policy: Policy) -> None:
        """Load what the first request would otherwise wait for: the tokenizer, the embedder, and the
        lazily imported parts of each stage, by running the pipeline once as a dry run."""
        import asyncio

        from engine.pipeline.run import run_pipeline

        body = {
            "model": "warm-up",
            "max_tokens": 16,
            "tools": [{"name": "Read", "description": "Read a file.", "input_schema": {"type": "object", "properties": {}}}],
            "messages": [
                {"role": "user", "content": "Where is the entry point of this project?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_warm", "name": "Read", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_warm",
                                              "content": '[{"file": "main.py", "line": 1}, {"file": "app.py", "line": 2}]'}]},
            ],
        }
        ctx = RequestContext(request_id="warm-up", protocol="anthropic", body=body, headers={}, requested_model="warm-up")
        try:
            asyncio.run(run_pipeline(ctx, policy, self, dry_run=True))
        except Exception as exc:  # noqa: BLE001 - a failed warm-up only costs the first request time
            log.warning("warm-up run of the pipeline failed: %s", exc)

    def select_tools(self, ctx: RequestContext, policy: Policy) -> dict[str, Any] | None:
        return select_tools(ctx, policy, self.tool_sessions)

    def compress(self, ctx: RequestContext, policy: Policy) -> list[dict[str, Any]]:
        return compress(ctx, policy)

    def semantic_cache(self, policy: Policy) -> Any:
        entry = self._caches.get(id(policy.cache))
        if entry is None or entry[0] is not policy.cache:
            if len(self._caches) > 256:
                self._caches.clear()
            entry = (policy.cache, cache_for(policy.cache, self.embedder(policy)))
            self._caches[id(policy.cache)] = entry
        return entry[1]

    async def cache_lookup(self, ctx: RequestContext, policy: Policy, *, dry_run: bool) -> tuple[dict | None, dict | None]:
        if not policy.cache.enabled:
            return None, None
        return await self.semantic_cache(policy).lookup(ctx, policy, dry_run=dry_run)

    async def cache_store(self, ctx: RequestContext, policy: Policy, message: dict[str, Any]) -> None:
        if not policy.cache.enabled:
            return
        decision = ctx.record.get("cache") or {}
        if decision.get("result") in ("bypass", "ineligible"):
            return  # a bypass header skips the store too, and an ineligible request is never stored
        await self.semantic_cache(policy).store(ctx, policy, message)

    def route_tier(self, ctx: RequestContext, policy: Policy) -> dict[str, Any]:
        # A tier model without centroids (trained with --lexical-only) never embeds, so it loads nothing.
        needs_embedder = policy.tier_model is not None and policy.tier_model.centroids is not None
        embedder = self.embedder(policy) if needs_embedder else None
        return route_tier(ctx, policy, self.tier_sessions, embedder)

    def apply_prompt_caching(self, ctx: RequestContext, policy: Policy, tier: dict[str, Any]) -> dict[str, Any] | None:
        return apply_prompt_caching(ctx, policy, tier)

    async def aclose(self) -> None:
        await self.upstreams.aclose()
        await close_caches()
