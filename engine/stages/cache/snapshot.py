"""Reading and writing the cache's snapshot file.

One file, `semantic-cache.npz`, holds the entries (JSON) and their vectors, so a snapshot is replaced
in one `os.replace` and a crash never leaves entries and vectors from different snapshots. Loading
never runs code: `numpy.load` with `allow_pickle=False` and `json.loads`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

logger = logging.getLogger(__name__)

SNAPSHOT_NAME = "semantic-cache.npz"
FORMAT_VERSION = 1


def encode_message(message: dict[str, Any]) -> bytes:
    """Encode a response as JSON bytes. Lone surrogates, which orjson rejects, are written as escapes."""
    try:
        # orjson returns its 4 KB write buffer as the bytes object; a copy keeps only the JSON.
        return bytes(memoryview(orjson.dumps(message)))
    except orjson.JSONEncodeError:
        return json.dumps(message, ensure_ascii=True).encode("ascii")


def decode_message(encoded: bytes) -> dict[str, Any]:
    """Decode what `encode_message` wrote."""
    try:
        return orjson.loads(encoded)
    except orjson.JSONDecodeError:
        return json.loads(encoded)


@dataclass(slots=True)
class Entry:
    """One cached response. Times are Unix seconds, so they survive a restart."""

    entry_id: int
    scope: str
    exact: str
    text: str  # the last user text, which the guards compare with later requests
    message: bytes  # the response, a canonical Message as JSON
    created: float
    used: float
    hits: int = 0
    has_vector: bool = False
    output_tokens: int | None = field(default=None)


@dataclass(slots=True)
class Snapshot:
    embedder: str
    dim: int
    entries: list[Entry]
    ids: np.ndarray  # int64 entry ids of the rows of `vectors`
    vectors: np.ndarray  # float32, shape (len(ids), dim)


def write_snapshot(directory: Path, snapshot: Snapshot) -> Path:
    """Write `snapshot` atomically: a temporary file in the same folder, then `os.replace`."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / SNAPSHOT_NAME
    header = {
        "format": FORMAT_VERSION,
        "embedder": snapshot.embedder,
        "dim": snapshot.dim,
        "written": time.time(),
        "entries": [{**asdict(entry), "message": decode_message(entry.message)} for entry in snapshot.entries],
    }
    # surrogatepass keeps lone surrogates from request text, which strict UTF-8 rejects.
    encoded = np.frombuffer(json.dumps(header, ensure_ascii=False).encode("utf-8", "surrogatepass"), dtype=np.uint8)
    handle, temporary = tempfile.mkstemp(prefix=".semantic-cache-", suffix=".npz.tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, header=encoded, ids=snapshot.ids.astype(np.int64), vectors=snapshot.vectors)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def read_snapshot(directory: Path, embedder: str, dim: int) -> Snapshot | None:
    """Read the snapshot in `directory`, or return None when there is none or it cannot be used.

    A corrupt or mismatched file is logged and renamed to `*.corrupt-<unix time>` so the next
    snapshot does not overwrite the evidence; the cache then starts empty.
    """
    path = directory / SNAPSHOT_NAME
    if not path.exists():
        return None
    try:
        snapshot = _parse(path)
    except Exception as error:  # noqa: BLE001 -- a damaged file (BadZipFile, bad JSON, wrong shapes) must not stop startup
        _set_aside(path, f"unreadable ({type(error).__name__}: {error})")
        return None

    if snapshot.embedder != embedder or snapshot.dim != dim:
        logger.warning(
            "semantic cache snapshot %s was written with embedder %s (%d dimensions), not %s (%d); starting empty",
            path,
            snapshot.embedder,
            snapshot.dim,
            embedder,
            dim,
        )
        return None
    return snapshot


def _parse(path: Path) -> Snapshot:
    with np.load(path, allow_pickle=False) as archive:
        header = json.loads(archive["header"].tobytes().decode("utf-8", "surrogatepass"))
        ids = archive["ids"].astype(np.int64)
        vectors = archive["vectors"].astype(np.float32)
    if header.get("format") != FORMAT_VERSION:
        raise ValueError(f"format {header.get('format')!r}, expected {FORMAT_VERSION}")
    dim = int(header["dim"])
    if vectors.ndim != 2 or vectors.shape != (len(ids), dim):
        raise ValueError(f"vectors have shape {vectors.shape}, expected ({len(ids)}, {dim})")
    entries = [Entry(**{**item, "message": encode_message(item["message"])}) for item in header["entries"]]
    with_vectors = {entry.entry_id for entry in entries if entry.has_vector}
    if with_vectors != set(ids.tolist()):
        raise ValueError("vector ids do not match the entries that have vectors")
    return Snapshot(embedder=str(header["embedder"]), dim=dim, entries=entries, ids=ids, vectors=vectors)


def _set_aside(path: Path, reason: str) -> None:
    aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    try:
        os.replace(path, aside)
    except OSError as error:
        logger.error("semantic cache snapshot %s is %s; could not rename it: %s; starting empty", path, reason, error)
        return
    logger.error("semantic cache snapshot %s is %s; moved it to %s and starting empty", path, reason, aside.name)
