"""Tests of the per-scope FAISS index: flat and HNSW, removal, rebuilds."""

from __future__ import annotations

import numpy as np
import pytest

from engine.stages.cache.index import ScopeIndex
from engine.stages.cache.policy import CacheIndex

DIM = 32


@pytest.fixture
def vectors() -> np.ndarray:
    rows = np.random.default_rng(3).normal(size=(200, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def filled(vectors: np.ndarray, count: int, exact_up_to: int) -> ScopeIndex:
    index = ScopeIndex(DIM, CacheIndex(exact_up_to=exact_up_to))
    for entry_id in range(count):
        index.add(1000 + entry_id, vectors[entry_id])
    return index


def test_flat_search_finds_itself(vectors):
    index = filled(vectors, 50, exact_up_to=100)
    results = index.search(vectors[7], 3)

    assert index.kind == "flat"
    assert results[0][0] == 1007
    assert results[0][1] == pytest.approx(1.0, abs=1e-5)
    assert len(results) == 3


def test_flat_remove_by_id(vectors):
    index = filled(vectors, 50, exact_up_to=100)
    index.remove(1007)

    assert len(index) == 49
    assert all(entry_id != 1007 for entry_id, _ in index.search(vectors[7], 10))


def test_switches_to_hnsw_past_bound(vectors):
    index = filled(vectors, 60, exact_up_to=40)

    assert index.kind == "hnsw"
    assert len(index) == 60
    assert index.search(vectors[55], 1)[0][0] == 1055


def test_hnsw_removed_ids_are_filtered(vectors):
    index = filled(vectors, 100, exact_up_to=40)
    index.remove(1010)

    assert len(index) == 99
    assert all(entry_id != 1010 for entry_id, _ in index.search(vectors[10], 5))


def test_hnsw_rebuilds_after_many_removals(vectors):
    index = filled(vectors, 100, exact_up_to=40)
    for entry_id in range(1000, 1070):
        index.remove(entry_id)

    assert len(index) == 30
    assert index.kind == "flat"  # 30 live entries fit the exact bound again
    assert index.search(vectors[80], 1)[0][0] == 1080


def test_vectors_round_trip(vectors):
    index = filled(vectors, 60, exact_up_to=40)
    index.remove(1003)
    ids, stored = index.vectors()

    assert 1003 not in ids.tolist()
    assert len(ids) == 59
    position = ids.tolist().index(1020)
    assert np.allclose(stored[position], vectors[20], atol=1e-6)


def test_empty_index_search():
    assert ScopeIndex(DIM, CacheIndex()).search(np.ones(DIM, dtype=np.float32), 5) == []
