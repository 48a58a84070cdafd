"""Read policy YAML into plain data while remembering where every key came from.

ruamel.yaml's round-trip loader keeps line and column numbers; this module turns its nodes into
plain dicts and lists, expands `${NAME}` and `${NAME:-default}` from the environment, follows
`!include path.yaml` (relative to the including file), and records a position for every key path so
that validation errors can name `file:line:col`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from engine.policy.errors import PolicyIssue

# Aliases let a tiny document expand into a huge one ("billion laughs"). Expansion is bounded by the
# number of nodes produced while converting, counted across includes.
MAX_NODES = 200_000
MAX_INCLUDE_DEPTH = 8
MAX_FILE_BYTES = 4 * 1024 * 1024

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    file: str
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class SourceDocument:
    """A policy file as plain data plus the position of each key path inside it."""

    data: Any
    positions: dict[KeyPath, Position] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    # Environment variables that were referenced but not set and had no default.
    missing_env: list[tuple[str, Position]] = field(default_factory=list)
    # Raw scalar strings before `${...}` expansion, for checks such as "keys come from env".
    raw_strings: dict[KeyPath, str] = field(default_factory=dict)


class _Include:
    def __init__(self, target: str, line: int, column: int):
        self.target = target
        self.line = line
        self.column = column


def _make_yaml() -> YAML:
    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False

    def construct_include(constructor: Any, node: Any) -> _Include:
        return _Include(str(node.value), node.start_mark.line + 1, node.start_mark.column + 1)

    yaml.constructor.add_constructor("!include", construct_include)
    return yaml


def display_path(path: Path) -> str:
    """Show a policy file path relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def format_key_path(path: KeyPath) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


class _Converter:
    def __init__(self, environ: dict[str, str]):
        self.environ = environ
        self.nodes = 0
        self.document = SourceDocument(data=None)

    def load_file(self, path: Path, key_prefix: KeyPath, depth: int, stack: tuple[Path, ...]) -> Any:
        name = display_path(path)
        if depth > MAX_INCLUDE_DEPTH:
            raise _Failure(PolicyIssue(name, 1, 1, format_key_path(key_prefix), f"includes nest deeper than {MAX_INCLUDE_DEPTH} levels"))
        resolved = path.resolve()
        if resolved in stack:
            chain = " -> ".join(display_path(p) for p in (*stack, resolved))
            raise _Failure(PolicyIssue(name, 1, 1, format_key_path(key_prefix), f"include cycle: {chain}"))
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise _Failure(PolicyIssue(name, 1, 1, "", f"file is {size} bytes; the limit is {MAX_FILE_BYTES}"))
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise _Failure(PolicyIssue(name, 1, 1, format_key_path(key_prefix), "file not found")) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise _Failure(PolicyIssue(name, 1, 1, "", f"cannot read file: {exc}")) from None
        self.document.files.append(path)
        try:
            node = _make_yaml().load(text)
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 1
            column = mark.column + 1 if mark else 1
            problem = exc.problem or exc.context or "invalid YAML"
            raise _Failure(PolicyIssue(name, line, column, "", f"invalid YAML: {problem}")) from None
        except Exception as exc:  # ruamel raises a handful of non-marked errors (e.g. duplicate keys)
            raise _Failure(PolicyIssue(name, 1, 1, "", f"invalid YAML: {exc}")) from None
        self.document.positions.setdefault(key_prefix, Position(name, 1, 1))
        return self.convert(node, key_prefix, name, path.parent, depth, (*stack, resolved))

    def convert(self, node: Any, path: KeyPath, file: str, base_dir: Path, depth: int, stack: tuple[Path, ...]) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            position = self.document.positions.get(path, Position(file, 1, 1))
            raise _Failure(
                PolicyIssue(position.file, position.line, position.column, format_key_path(path),
                            f"document expands to more than {MAX_NODES} nodes (alias expansion is bounded)")
            )
        if isinstance(node, _Include):
            target = (base_dir / node.target).resolve()
            self.document.positions[path] = Position(file, node.line, node.column)
            if not target.exists():
                # Reported where the !include is written, which is the line to fix.
                raise _Failure(PolicyIssue(file, node.line, node.column, format_key_path(path),
                                           f"!include {node.target}: file {display_path(target)} not found"))
            return self.load_file(target, path, depth + 1, stack)
        if isinstance(node, CommentedMap):
            result: dict[str, Any] = {}
            for key in node:
                line, column = _key_position(node, key)
                key_text = str(key)
                child_path = (*path, key_text)
                self.document.positions[child_path] = Position(file, line, column)
                result[key_text] = self.convert(node[key], child_path, file, base_dir, depth, stack)
            return result
        if isinstance(node, CommentedSeq):
            items = []
            for index, item in enumerate(node):
                line, column = _item_position(node, index)
                child_path = (*path, index)
                self.document.positions[child_path] = Position(file, line, column)
                items.append(self.convert(item, child_path, file, base_dir, depth, stack))
            return items
        if isinstance(node, str):
            text = str(node)
            if "${" in text:
                self.document.raw_strings[path] = text
                return self._expand(text, path, file)
            return text
        if node is None or isinstance(node, (bool, int, float)):
            return node
        # Timestamps and other tagged scalars become their text; the models decide what is valid.
        return str(node)

    def _expand(self, text: str, path: KeyPath, file: str) -> str:
        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = self.environ.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    position = self.document.positions.get(path, Position(file, 1, 1))
                    self.document.missing_env.append((name, position))
                    return ""
                return default
            return value

        return _ENV_PATTERN.sub(replace, text)


class _Failure(Exception):
    def __init__(self, issue: PolicyIssue):
        self.issue = issue


def _key_position(node: CommentedMap, key: Any) -> tuple[int, int]:
    try:
        line, column = node.lc.key(key)
        return line + 1, column + 1
    except (KeyError, TypeError, AttributeError):
        return node.lc.line + 1, node.lc.col + 1


def _item_position(node: CommentedSeq, index: int) -> tuple[int, int]:
    try:
        line, column = node.lc.item(index)
        return line + 1, column + 1
    except (KeyError, TypeError, AttributeError, IndexError):
        return node.lc.line + 1, node.lc.col + 1


def read_policy_file(path: Path, environ: dict[str, str] | None = None) -> SourceDocument:
    """Read one policy file (and its includes). Raises PolicyError with the file's position."""
    from engine.policy.errors import PolicyError

    converter = _Converter(dict(os.environ) if environ is None else environ)
    try:
        converter.document.data = converter.load_file(path, (), 0, ())
    except _Failure as failure:
        raise PolicyError([failure.issue]) from None
    return converter.document
