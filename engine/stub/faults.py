"""Fault specs for the stub upstream: errors, resets, slow starts and broken streams.

A spec is a comma-separated list of items, e.g. `status=429,retry_after=2,times=1` or
`slow_first_byte=300,cut_after=4`. It comes from `--fault` (every request) or from a
`<<fault SPEC>>` marker in the last user text (that request only).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace


class FaultSpecError(ValueError):
    """Raised for a fault spec that cannot be parsed."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One parsed fault spec. `text` is the spec as written; `times` counts per distinct text."""

    text: str
    status: int | None = None
    retry_after: float | None = None
    times: int | None = None
    reset: bool = False
    slow_first_byte_ms: int = 0
    cut_after: int | None = None
    midstream_error: int | None = None


NO_FAULT = Fault(text="")

_INTEGER_ITEMS = {"status", "times", "slow_first_byte", "cut_after", "midstream_error"}
_KNOWN_ITEMS = _INTEGER_ITEMS | {"retry_after", "reset"}


def parse_fault(spec: str) -> Fault:
    """Parse one spec; raise FaultSpecError naming the bad item."""
    text = spec.strip()
    if not text:
        raise FaultSpecError("empty fault spec; expected e.g. status=429,retry_after=2 or reset")
    fields: dict = {}
    for item in text.split(","):
        name, has_value, raw = item.strip().partition("=")
        name = name.strip()
        if name not in _KNOWN_ITEMS:
            raise FaultSpecError(f"unknown fault item {name!r} in {text!r}; known items: {', '.join(sorted(_KNOWN_ITEMS))}")
        if name == "reset":
            if has_value:
                raise FaultSpecError(f"fault item reset takes no value, in {text!r}")
            fields["reset"] = True
            continue
        if not has_value:
            raise FaultSpecError(f"fault item {name!r} needs a value, e.g. {name}=2, in {text!r}")
        try:
            value = int(raw) if name in _INTEGER_ITEMS else float(raw)
        except ValueError:
            raise FaultSpecError(f"fault item {name}={raw!r} is not a number, in {text!r}") from None
        if value < 0:
            raise FaultSpecError(f"fault item {name}={raw} must not be negative, in {text!r}")
        fields[name] = value

    status = fields.get("status")
    if status is not None and not 400 <= status <= 599:
        raise FaultSpecError(f"fault status={status} must be an HTTP error status between 400 and 599, in {text!r}")
    if "retry_after" in fields and status is None:
        raise FaultSpecError(f"fault item retry_after needs a status, e.g. status=429,retry_after=2, in {text!r}")
    if fields.get("times") == 0:
        raise FaultSpecError(f"fault item times must be at least 1, in {text!r}")
    return Fault(
        text=text,
        status=status,
        retry_after=fields.get("retry_after"),
        times=fields.get("times"),
        reset=fields.get("reset", False),
        slow_first_byte_ms=fields.get("slow_first_byte", 0),
        cut_after=fields.get("cut_after"),
        midstream_error=fields.get("midstream_error"),
    )


class FaultCounter:
    """Request counts per spec text, so that a spec with `times=N` applies to its first N requests only."""

    def __init__(self) -> None:
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def combine(self, faults: Iterable[Fault]) -> Fault:
        """Return the single fault to apply to one request, from every spec it carries.

        A spec whose `times` budget is spent is skipped. The first status wins; delays add up;
        the earliest stream cut wins.
        """
        combined = NO_FAULT
        for fault in faults:
            if fault.times is not None:
                with self._lock:
                    self._seen[fault.text] += 1
                    if self._seen[fault.text] > fault.times:
                        continue
            combined = replace(
                combined,
                text=f"{combined.text};{fault.text}" if combined.text else fault.text,
                status=combined.status if combined.status is not None else fault.status,
                retry_after=combined.retry_after if combined.status is not None else fault.retry_after,
                reset=combined.reset or fault.reset,
                slow_first_byte_ms=combined.slow_first_byte_ms + fault.slow_first_byte_ms,
                cut_after=_earliest(combined.cut_after, fault.cut_after),
                midstream_error=_earliest(combined.midstream_error, fault.midstream_error),
            )
        return combined


def _earliest(first: int | None, second: int | None) -> int | None:
    if first is None:
        return second
    if second is None:
        return first
    return min(first, second)
