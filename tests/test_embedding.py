"""Tests of the embedders: the bundled MiniLM model, the hashing test embedder and the HTTP kinds."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from pydantic import ValidationError

from engine.embedding import EmbedderConfig, EmbeddingError, ModelFileError, load_embedder
from engine.embedding.onnx_minilm import MODEL_SHA256, _verified_bytes


@pytest.fixture(scope="module")
def minilm():
    return load_embedder()


def cosine(embedder, first: str, second: str) -> float:
    vectors = embedder.embed([first, second])
    return float(vectors[0] @ vectors[1])


# --- onnx-minilm ---------------------------------------------------------------------------------


def test_minilm_rows_are_unit_float32(minilm):
    vectors = minilm.embed(["reverse a list in python", "", "Ünïcödé ✓ 漢字"])

    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_minilm_paraphrase_beats_unrelated(minilm):
    paraphrase = cosine(
        minilm,
        "How do I convert a string to an int in JavaScript?",
        "What's the way to parse a string into an integer in JS?",
    )
    unrelated = cosine(minilm, "How do I convert a string to an int in JavaScript?", "Write a haiku about autumn leaves.")

    assert paraphrase > 0.7
    assert unrelated < 0.2
    assert paraphrase - unrelated > 0.5


def test_minilm_reference_similarity(minilm):
    # This int8 build scored 0.7535 when the test was written; a pooling or normalisation change moves it.
    assert cosine(minilm, "A man is eating food.", "A man is eating a piece of bread.") == pytest.approx(0.755, abs=0.03)


def test_minilm_padding_does_not_change_vectors(minilm):
    alone = minilm.embed(["hello world"])[0]
    padded = minilm.embed(["hello world", "a much longer text that forces the first one to be padded " * 5])[0]

    assert float(alone @ padded) == pytest.approx(1.0, abs=1e-5)


def test_minilm_truncates_at_max_tokens(minilm):
    prefix = "token " * 300
    first, second = minilm.embed([prefix + "python", prefix + "completely different ending in rust"])

    assert float(first @ second) == pytest.approx(1.0, abs=1e-6)


def test_minilm_is_deterministic(minilm):
    assert np.array_equal(minilm.embed(["sort a dict by value"]), minilm.embed(["sort a dict by value"]))


def test_minilm_empty_batch(minilm):
    assert minilm.embed([]).shape == (0, 384)


def test_minilm_rejects_bare_string(minilm):
    with pytest.raises(TypeError, match="sequence of texts"):
        minilm.embed("a bare string")


def test_minilm_batches_past_batch_size(minilm):
    texts = [f"question number {index}" for index in range(70)]
    vectors = minilm.embed(texts)

    assert vectors.shape == (70, 384)
    # The int8 products round activations per call, so a text embedded in a batch and alone can
    # differ slightly; 1e-3 in cosine is ten times what this build shows.
    assert float(vectors[65] @ minilm.embed([texts[65]])[0]) > 1 - 1e-3


def test_minilm_name_carries_model_hash(minilm):
    assert MODEL_SHA256[:12] in minilm.name


def test_verified_bytes_rejects_altered_file(tmp_path):
    altered = tmp_path / "model.onnx"
    altered.write_bytes(b"not the model")

    with pytest.raises(ModelFileError, match="expected " + MODEL_SHA256):
        _verified_bytes(altered, MODEL_SHA256)


def test_verified_bytes_reports_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="cannot read"):
        _verified_bytes(tmp_path / "absent.onnx", MODEL_SHA256)


# --- load_embedder and config --------------------------------------------------------------------


def test_load_embedder_caches_per_config():
    assert load_embedder() is load_embedder({"kind": "onnx-minilm"})
    assert load_embedder({"kind": "hashing", "dim": 64}) is load_embedder(EmbedderConfig(kind="hashing", dim=64))
    assert load_embedder({"kind": "hashing", "dim": 64}) is not load_embedder({"kind": "hashing", "dim": 32})


def test_config_remote_kind_needs_url_and_model():
    with pytest.raises(ValidationError, match="needs base_url and model"):
        EmbedderConfig(kind="ollama")


def test_config_rejects_non_http_url():
    with pytest.raises(ValidationError, match="http:// or https://"):
        EmbedderConfig(kind="ollama", base_url="file:///etc/passwd", model="m")


def test_config_rejects_unknown_key():
    with pytest.raises(ValidationError):
        EmbedderConfig.model_validate({"kind": "hashing", "dimension": 8})


# --- hashing -------------------------------------------------------------------------------------


def test_hashing_is_deterministic_and_unit():
    embedder = load_embedder({"kind": "hashing"})
    first = embedder.embed(["parse a date in python", "parse a date in python"])

    assert first.shape == (2, 256)
    assert np.array_equal(first[0], first[1])
    assert np.linalg.norm(first[0]) == pytest.approx(1.0, abs=1e-5)


def test_hashing_scores_shared_words_higher():
    embedder = load_embedder({"kind": "hashing"})

    assert cosine(embedder, "parse a date in python", "parse a date in python please") > cosine(
        embedder, "parse a date in python", "bake bread tonight"
    )


# --- ollama and openai-compatible, against a loopback server ------------------------------------


class _EmbeddingServer:
    """A loopback HTTP server that answers both embedding APIs with fixed, unnormalised vectors."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict, dict]] = []
        self.status = 200
        self.raw_body: bytes | None = None
        self.dim = 3
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length))
                server.requests.append((self.path, dict(self.headers), body))
                vectors = [[float(index + 1)] + [0.0] * (server.dim - 2) + [1.0] for index in range(len(body["input"]))]
                if self.path == "/api/embed":
                    payload = {"model": body["model"], "embeddings": vectors}
                else:
                    items = [{"object": "embedding", "index": index, "embedding": vector} for index, vector in enumerate(vectors)]
                    payload = {"object": "list", "data": list(reversed(items))}
                data = server.raw_body if server.raw_body is not None else json.dumps(payload).encode()
                self.send_response(server.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def embedding_server():
    server = _EmbeddingServer()
    yield server
    server.close()


def test_ollama_embedder_normalises(embedding_server):
    embedder = load_embedder({"kind": "ollama", "base_url": embedding_server.url, "model": "nomic-embed-text"})
    vectors = embedder.embed(["a", "b"])

    path, _, body = embedding_server.requests[-1]
    assert path == "/api/embed"
    assert body["model"] == "nomic-embed-text"
    assert body["input"] == ["a", "b"]
    assert vectors.shape == (2, 3)
    assert np.allclose(vectors[0], np.array([1, 0, 1]) / np.sqrt(2), atol=1e-6)
    assert embedder.dim == 3


def test_openai_compatible_orders_by_index_and_sends_key(embedding_server):
    embedder = load_embedder(
        {"kind": "openai-compatible", "base_url": embedding_server.url, "model": "text-embedding-3-small", "api_key": "sk-test-123"}
    )
    vectors = embedder.embed(["first", "second"])

    path, headers, _ = embedding_server.requests[-1]
    assert path == "/v1/embeddings"
    assert headers.get("authorization") == "Bearer sk-test-123"
    assert vectors[0][0] < vectors[1][0]  # row 0 has the smaller first value although the server listed it last


def test_remote_dim_probe_when_unset(embedding_server):
    embedding_server.dim = 5
    embedder = load_embedder({"kind": "ollama", "base_url": embedding_server.url, "model": "probe-model"})

    assert embedder.dim == 5
    assert len(embedding_server.requests) == 1


def test_remote_dim_mismatch_raises(embedding_server):
    embedder = load_embedder({"kind": "ollama", "base_url": embedding_server.url, "model": "m", "dim": 8})

    with pytest.raises(EmbeddingError, match="3 dimensions, expected 8"):
        embedder.embed(["x"])


def test_remote_http_error_raises_without_key(embedding_server):
    embedding_server.status = 500
    embedding_server.raw_body = b'{"error": "model not loaded"}'
    embedder = load_embedder(
        {"kind": "openai-compatible", "base_url": embedding_server.url, "model": "m", "api_key": "sk-secret-value"}
    )

    with pytest.raises(EmbeddingError, match="HTTP 500") as caught:
        embedder.embed(["x"])
    assert "sk-secret-value" not in str(caught.value)


def test_remote_malformed_answer_raises(embedding_server):
    embedding_server.raw_body = b'{"embeddings": "nope"}'
    embedder = load_embedder({"kind": "ollama", "base_url": embedding_server.url, "model": "m2"})

    with pytest.raises(EmbeddingError, match="expected"):
        embedder.embed(["x"])


def test_remote_connection_refused_raises():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    embedder = load_embedder({"kind": "ollama", "base_url": f"http://127.0.0.1:{port}", "model": "m", "timeout": 2})

    with pytest.raises(EmbeddingError, match="failed"):
        embedder.embed(["x"])


def test_minilm_accepts_lone_surrogates(minilm):
    vectors = minilm.embed(["broken \ud800 text"])

    assert vectors.shape == (1, 384)
    assert np.isfinite(vectors).all()


# --- int8 graph rewrite -----------------------------------------------------------------------------


def test_int8_and_float32_graphs_give_the_same_vectors(minilm):
    from engine.embedding.onnx_minilm import OnnxMiniLMEmbedder

    texts = [
        "How do I convert a string to an int in JavaScript?",
        "What's the way to parse a string into an integer in JS?",
        "Write a haiku about autumn leaves.",
        "Refactor parse_line in src/shop/importer.py to return a dataclass.",
        "ok",
    ]
    reference = OnnxMiniLMEmbedder(compute="float32", threads=1)
    assert minilm.compute == "int8"
    assert reference.compute == "float32"
    assert reference.name == minilm.name

    expected, actual = reference.embed(texts), minilm.embed(texts)

    drift = 1.0 - np.sum(expected * actual, axis=1)
    assert drift.max() < 1e-2
    assert np.median(drift) < 2e-3
    # Pairwise similarities, which the cache threshold and the tier feature read, move by less than 0.01.
    assert np.abs(expected @ expected.T - actual @ actual.T).max() < 0.01


def test_rewritten_model_is_cached_and_checked(tmp_path, monkeypatch):
    from engine.embedding import int8_graph
    from engine.embedding.onnx_minilm import model_path

    monkeypatch.setenv(int8_graph.CACHE_ENV, str(tmp_path))
    first = int8_graph.cached_model(model_path(), MODEL_SHA256)
    record = json.loads(first.with_suffix(".json").read_text(encoding="utf-8"))

    assert first.parent == tmp_path
    assert record["sha256"] == int8_graph.file_sha256(first)
    assert record["matmul_nodes"] == 36  # six layers, six weight products each
    assert record["probe_cosine_drift"] < int8_graph.MAX_COSINE_DRIFT

    written = first.stat().st_mtime_ns
    assert int8_graph.cached_model(model_path(), MODEL_SHA256) == first
    assert first.stat().st_mtime_ns == written

    first.write_bytes(first.read_bytes()[:1000])  # a cut file no longer matches its recorded sha256
    again = int8_graph.cached_model(model_path(), MODEL_SHA256)
    assert int8_graph.file_sha256(again) == record["sha256"]


def test_unwritable_cache_folder_falls_back_to_float32(tmp_path, monkeypatch, caplog):
    from engine.embedding import int8_graph
    from engine.embedding.onnx_minilm import OnnxMiniLMEmbedder

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv(int8_graph.CACHE_ENV, str(blocker / "cache"))

    with caplog.at_level("WARNING"):
        embedder = OnnxMiniLMEmbedder(threads=1)

    assert embedder.compute == "float32"
    assert "cannot create the cache folder" in caplog.text
    assert embedder.embed(["still works"]).shape == (1, 384)


def test_rewrite_refuses_a_graph_without_int8_weights():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from engine.embedding.int8_graph import RewriteError, rewrite

    weight = numpy_helper.from_array(np.ones((128, 4), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="plain")], "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 128])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weight],
    )
    model = helper.make_model(graph)

    with pytest.raises(RewriteError, match="no MatMul fed by int8 weights"):
        rewrite(model)
    assert [node.op_type for node in model.graph.node] == ["MatMul"]
