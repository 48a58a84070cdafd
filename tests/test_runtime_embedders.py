"""The runtime's embedder wrappers: batching of concurrent calls and the memo of recent texts."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from engine.embedding import load_embedder
from engine.pipeline.runtime import BatchingEmbedder, MemoizedEmbedder


class CountingEmbedder:
    """The hashing embedder, recording the size of every batch it is given."""

    def __init__(self) -> None:
        self.inner = load_embedder({"kind": "hashing"})
        self.name = self.inner.name
        self.dim = self.inner.dim
        self.batches: list[int] = []
        self.gate = threading.Event()

    def embed(self, texts):
        self.gate.wait(timeout=5)
        self.batches.append(len(texts))
        return self.inner.embed(texts)


def test_batching_returns_each_callers_vector():
    inner = CountingEmbedder()
    inner.gate.set()
    batching = BatchingEmbedder(inner)
    texts = [f"text number {index}" for index in range(40)]
    with ThreadPoolExecutor(8) as pool:
        vectors = list(pool.map(lambda text: batching.embed([text]), texts))
    for text, vector in zip(texts, vectors):
        assert vector.shape == (1, inner.dim)
        assert np.allclose(vector[0], inner.inner.embed([text])[0])


def test_concurrent_calls_share_a_batch():
    inner = CountingEmbedder()
    batching = BatchingEmbedder(inner)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(batching.embed, [f"text {index}"]) for index in range(8)]
        # The first call blocks inside the inner embedder until the other seven are queued behind it.
        while len(batching._pending) < 7:
            pass
        inner.gate.set()
        for future in futures:
            future.result(timeout=5)
    assert inner.batches[0] == 1
    assert inner.batches[1] == 7


def test_batching_passes_errors_to_every_caller():
    class Failing:
        name, dim = "failing", 4

        def embed(self, texts):
            raise RuntimeError("model broke")

    batching = BatchingEmbedder(Failing())
    with pytest.raises(RuntimeError, match="model broke"):
        batching.embed(["a"])


def test_memo_embeds_a_repeated_text_once():
    inner = CountingEmbedder()
    inner.gate.set()
    memo = MemoizedEmbedder(inner)
    first = memo.embed(["same text"])
    second = memo.embed(["same text", "other text"])
    assert inner.batches == [1, 1]
    assert np.array_equal(first[0], second[0])
