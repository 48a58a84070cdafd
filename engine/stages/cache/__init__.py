"""The cache stage: exact and semantic response caching inside a scope (team, model, system, tools).

`cache_for(policy.cache)` returns the shared `SemanticCache` for that section's store settings;
the pipeline calls `await cache.lookup(ctx, policy)` before tier routing and
`await cache.store(ctx, policy, message)` after an upstream response.
"""

from __future__ import annotations

import json
import logging
import threading

from engine.embedding import Embedder
from engine.stages.cache.policy import CacheSection
from engine.stages.cache.stage import BYPASS, HIT, INELIGIBLE, MISS, REFUSED, SemanticCache

__all__ = ["BYPASS", "HIT", "INELIGIBLE", "MISS", "REFUSED", "SemanticCache", "cache_for", "close_caches"]

logger = logging.getLogger(__name__)

_caches: dict[str, SemanticCache] = {}
_caches_lock = threading.Lock()


def cache_for(section: CacheSection, embedder: Embedder | None = None) -> SemanticCache:
    """Return the `SemanticCache` for the store settings of `section`, building it on first use.

    Teams whose sections differ only in per-request settings (threshold, TTL, scope, guards,
    eligibility) share one cache, because the scope key keeps their entries apart. A section with
    another embedder, size, index or persistence folder gets its own cache. `embedder` replaces the
    one `section.embedder` names when the cache is first built (it must be that same model).
    """
    # NOTE: a memory-only cache built for settings that a reload replaced stays in memory until the
    # process ends. A persisted one is written and dropped when a cache for its folder replaces it, so
    # two teams with different store settings must not share a persistence folder.
    key = json.dumps(section.store_settings(), sort_keys=True)
    with _caches_lock:
        cache = _caches.get(key)
        if cache is None:
            _retire_caches_of(section.persistence.directory)
            cache = SemanticCache(section, embedder)
            _caches[key] = cache
            logger.info("semantic cache created (%d in use)", len(_caches))
        return cache


def _retire_caches_of(directory: str | None) -> None:
    """Write and drop the caches that persist to `directory`, so the new cache reads their entries."""
    if directory is None:
        return
    for key, cache in list(_caches.items()):
        if cache.section.persistence.directory == directory:
            cache.flush()
            del _caches[key]
            logger.info("semantic cache for %s replaced after a settings change", directory)


async def close_caches() -> None:
    """Write the last snapshot of every cache; call it when the gateway shuts down."""
    with _caches_lock:
        caches = list(_caches.values())
    for cache in caches:
        await cache.aclose()
