"""`--record DIR`: keep every request body the stub receives, with a sidecar of its metadata."""

from __future__ import annotations

import itertools
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path

import orjson

REDACTED_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "proxy-authorization", "cookie"})
_NUMBERED = re.compile(r"^(\d{6})-")


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Return headers with lower-case names and the credential values replaced by `<redacted>`."""
    return {name.lower(): ("<redacted>" if name.lower() in REDACTED_HEADERS else value) for name, value in headers.items()}


class Recorder:
    """Writes `NNNNNN-<protocol>.json` (the body as received) and `NNNNNN-<protocol>.meta.json`.

    Numbering continues after the highest number already in the folder, so a second run never
    overwrites the first.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        highest = 0
        for path in self.directory.iterdir():
            match = _NUMBERED.match(path.name)
            if match:
                highest = max(highest, int(match.group(1)))
        self._numbers = itertools.count(highest + 1)
        self._lock = threading.Lock()

    def write(self, protocol: str, raw_body: bytes, metadata: dict) -> Path:
        """Write one request; metadata should already hold path, redacted headers and token count."""
        with self._lock:
            number = next(self._numbers)
        stem = f"{number:06d}-{protocol}"
        # The sidecar goes first and each file appears whole (rename), so a reader that finds a
        # body file can always open its sidecar.
        _write_whole(self.directory / f"{stem}.meta.json", orjson.dumps(metadata, option=orjson.OPT_INDENT_2))
        body_path = self.directory / f"{stem}.json"
        _write_whole(body_path, raw_body)
        return body_path


def _write_whole(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".partial")
    temporary.write_bytes(data)
    os.replace(temporary, path)
