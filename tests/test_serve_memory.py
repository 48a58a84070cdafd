"""Tests of the memory settings that `leangate serve` and the token counter apply at start."""

from __future__ import annotations

import ctypes
import sys

import pytest

from engine import tokens
from engine.cli.serve import limit_malloc_arenas


def glibc_present() -> bool:
    try:
        ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return sys.platform.startswith("linux")


@pytest.mark.skipif(not glibc_present(), reason="mallopt is a glibc function")
def test_arena_cap_applies_on_glibc(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)

    assert limit_malloc_arenas(2) is True


def test_arena_cap_leaves_explicit_setting(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")

    assert limit_malloc_arenas(2) is False


def test_encoding_counts_without_merge_dict():
    encoding = tokens.encoding()

    assert "_mergeable_ranks" not in vars(encoding)
    assert encoding.encode("hello world") == [15339, 1917]
    assert tokens.count_text("hello world " * 50) == 101  # "hello", then " world" and " hello" pairs, then " "
