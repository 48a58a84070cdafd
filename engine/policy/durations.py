"""Durations written as numbers of seconds or as `500ms`, `5s`, `10m`, `1h`, `2d`."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string such as 5s, 10m, 1h")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a duration must not be negative, got {value}")
        return float(value)
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2) or "s"]
    raise ValueError(f"invalid duration {value!r}: use seconds or a string such as 500ms, 5s, 10m, 1h, 2d")


Duration = Annotated[float, BeforeValidator(parse_duration)]
