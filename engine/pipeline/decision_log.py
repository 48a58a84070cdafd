"""The decision log: one JSON line per request, at the path the policy sets.

Records hold decisions and counts. Prompt text appears only when the policy opts in, and no secret
is ever written: the record is built from the pipeline's decisions, never from request headers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path
from typing import IO, Any

import orjson

log = logging.getLogger(__name__)


# Records are written through a buffer and flushed at most this long after they were written, so a
# busy gateway makes one write system call per batch rather than one per request.
FLUSH_DELAY_S = 0.2


class DecisionLog:
    def __init__(self) -> None:
        self._path: Path | None = None
        self._file: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._failures = 0
        self._flush_scheduled = False

    def write(self, path: str | None, record: dict[str, Any]) -> None:
        if not path:
            return
        line = orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS) + b"\n"
        with self._lock:
            try:
                handle = self._open(Path(path))
                handle.write(line)
                self._schedule_flush()
            except OSError as exc:
                self._failures += 1
                # Count repeats so a full disk does not flood the log.
                if self._failures == 1 or self._failures % 1000 == 0:
                    log.error("cannot write the decision log %s (%d failures so far): %s", path, self._failures, exc)

    def _schedule_flush(self) -> None:
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the event loop: write through
            self._flush()
            return
        self._flush_scheduled = True
        loop.call_later(FLUSH_DELAY_S, self.flush)

    def flush(self) -> None:
        with self._lock:
            self._flush_scheduled = False
            self._flush()

    def _flush(self) -> None:
        if self._file is None:
            return
        try:
            self._file.flush()
        except OSError as exc:
            self._failures += 1
            log.error("cannot write the decision log %s: %s", self._path, exc)

    def _open(self, path: Path) -> IO[bytes]:
        if self._file is not None and self._path == path:
            return self._file
        self.close()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab")  # noqa: SIM115 - kept open for the life of the process
        self._path = path
        log.info("writing decisions to %s", os.fspath(path))
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._flush()
            self._file.close()
        self._file = None
        self._path = None
