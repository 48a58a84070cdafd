"""The FAISS index of one cache scope: exact inner product while small, HNSW when large.

Vectors are unit rows, so inner product is cosine similarity. Up to `exact_up_to` entries a scope
uses `IndexIDMap2(IndexFlatIP)`, which removes vectors by id at once. Above that it moves to
`IndexIDMap2(IndexHNSWFlat)`. HNSW graphs in FAISS cannot remove vectors, so removed ids are
filtered out of results and the graph is rebuilt once a quarter of it is removed ids.
"""

from __future__ import annotations

import faiss
import numpy as np

from engine.stages.cache.policy import CacheIndex

_REBUILD_SHARE = 0.25

# Every search here is a single query, for which FAISS's OpenMP threads cost more than they save. On a
# busy 2-core machine, one flat search over 10,000 vectors took 72 ms at p50 with 2 threads and 0.4 ms
# with 1. This setting applies to the whole process.
faiss.omp_set_num_threads(1)


class ScopeIndex:
    """Vectors of one scope, addressed by int64 entry ids. Not thread-safe: callers hold a lock."""

    def __init__(self, dim: int, settings: CacheIndex) -> None:
        self.dim = dim
        self.settings = settings
        self._index = self._new_flat()
        self._hnsw = False
        self._removed: set[int] = set()

    def __len__(self) -> int:
        return self._index.ntotal - len(self._removed)

    @property
    def kind(self) -> str:
        return "hnsw" if self._hnsw else "flat"

    def add(self, entry_id: int, vector: np.ndarray) -> None:
        row = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dim)
        self._index.add_with_ids(row, np.array([entry_id], dtype=np.int64))
        if not self._hnsw and self._index.ntotal > self.settings.exact_up_to:
            self._rebuild(hnsw=True)

    def remove(self, entry_id: int) -> None:
        if not self._hnsw:
            self._index.remove_ids(np.array([entry_id], dtype=np.int64))
            return
        self._removed.add(entry_id)
        if len(self._removed) > _REBUILD_SHARE * self._index.ntotal:
            self._rebuild(hnsw=len(self) > self.settings.exact_up_to)

    def search(self, vector: np.ndarray, count: int) -> list[tuple[int, float]]:
        """Return up to `count` (entry id, cosine similarity) pairs, best first."""
        if len(self) == 0:
            return []
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dim)
        # Removed ids still in an HNSW graph can take result slots, so ask for a few more. The cap keeps
        # k small: a large k makes an HNSW search much slower.
        wanted = min(count + min(len(self._removed), 64), self._index.ntotal)
        scores, ids = self._index.search(query, wanted)
        results = []
        for entry_id, score in zip(ids[0].tolist(), scores[0].tolist()):
            if entry_id < 0 or entry_id in self._removed:
                continue
            results.append((entry_id, score))
            if len(results) == count:
                break
        return results

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (ids, vectors) of every live entry, for snapshots and rebuilds."""
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        if ids.size == 0:
            return ids, np.zeros((0, self.dim), dtype=np.float32)
        # IDMap2 keeps its id list in the storage order of the wrapped index.
        vectors = faiss.downcast_index(self._index.index).reconstruct_n(0, int(ids.size))
        if self._removed:
            keep = np.isin(ids, np.fromiter(self._removed, dtype=np.int64), invert=True)
            ids, vectors = ids[keep], vectors[keep]
        return ids, np.ascontiguousarray(vectors, dtype=np.float32)

    def _new_flat(self) -> faiss.IndexIDMap2:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def _new_hnsw(self) -> faiss.IndexIDMap2:
        graph = faiss.IndexHNSWFlat(self.dim, self.settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = self.settings.hnsw_ef_construction
        graph.hnsw.efSearch = self.settings.hnsw_ef_search
        return faiss.IndexIDMap2(graph)

    def _rebuild(self, hnsw: bool) -> None:
        ids, vectors = self.vectors()
        self._index = self._new_hnsw() if hnsw else self._new_flat()
        self._hnsw = hnsw
        self._removed = set()
        if len(ids):
            self._index.add_with_ids(vectors, ids)
