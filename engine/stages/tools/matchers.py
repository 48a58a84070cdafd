"""Name and regex matchers shared by the tool-selection policy models."""

from __future__ import annotations

import fnmatch
import re
from typing import Any


class NameMatcher:
    """Exact names and shell-style globs (`mcp__github__*`), compiled into one case-sensitive regex."""

    __slots__ = ("patterns", "_regex")

    def __init__(self, patterns: list[str]):
        self.patterns = list(patterns)
        if self.patterns:
            alternatives = "|".join(f"(?:{fnmatch.translate(pattern)})" for pattern in self.patterns)
            self._regex: re.Pattern[str] | None = re.compile(alternatives)
        else:
            self._regex = None

    def matches(self, name: str) -> bool:
        return self._regex is not None and self._regex.match(name) is not None

    def __repr__(self) -> str:
        return f"NameMatcher({self.patterns!r})"


def compile_regex(pattern: str) -> re.Pattern[str]:
    """Compile a policy regex, or raise ValueError with the regex error (the loader adds the pattern)."""
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(f"invalid regular expression: {error}") from None


def as_pattern_list(value: Any) -> Any:
    # A single glob may be written without a list: `last_tool: Bash`.
    if isinstance(value, str):
        return [value]
    return value
