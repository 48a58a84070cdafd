"""Policy models of the compression stage: targets, their JSONPath expressions and their actions.

A target reads like this in YAML:

    - name: grep-results
      path: "$.messages[*].content[?(@.type == 'tool_result')]"
      tool: [Grep, "mcp__*search*"]
      min_tokens: 200
      actions:
        - {project: [file, line, match]}
        - {truncate: {items: 200, keep: head_tail}}
        - toon

Every JSONPath expression, tool glob and render template is compiled here, once, when the policy
is loaded. The stage only uses the compiled objects.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng.ext import parse as parse_jsonpath
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from engine.stages.compress.locate import compile_steps

# Encoders produce the final text of a block, so they must come after every other action.
ENCODERS = ("toon", "minify", "render")
LOSSLESS_ENCODERS = ("toon", "minify")
BARE_ACTIONS = ("toon", "minify", "dedupe", "line_numbers")
ACTION_KEYS = ("toon", "minify", "render", "project", "drop", "truncate", "dedupe", "line_numbers")
# Lossless actions on plain text, which may share a target with the lossy text actions.
LOSSLESS_TEXT_ACTIONS = ("line_numbers",)

_TEMPLATE_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


@functools.lru_cache(maxsize=512)
def compile_jsonpath(expression: str) -> Any:
    """Parse a JSONPath expression with jsonpath-ng's extended parser (filters, arithmetic).

    Raises ValueError with the parser's message when the expression is invalid.
    """
    if not expression.strip():
        raise ValueError("must be a JSONPath expression such as \"$.messages[*].content[*]\", got an empty string")
    try:
        return parse_jsonpath(expression)
    # The last three are defensive: they guard against errors from inside the parser on odd input.
    except (JsonPathParserError, JsonPathLexerError, ValueError, TypeError, AttributeError) as error:
        raise ValueError(f"invalid JSONPath {expression!r}: {error}") from None


def _check_jsonpath(expression: str) -> str:
    compile_jsonpath(expression)
    return expression


class ToonOptions(_Strict):
    delimiter: Literal["comma", "tab", "pipe"] = Field(
        "comma", description="Delimiter of TOON tabular rows and inline arrays."
    )

    @property
    def character(self) -> str:
        return {"comma": ",", "tab": "\t", "pipe": "|"}[self.delimiter]


class RenderOptions(_Strict):
    row: str = Field(description="Template of one line per record, e.g. \"{line}:{match}\".")
    heading: str | None = Field(
        None,
        description="Field printed on its own line whenever its value changes, and left out of the rows "
        "(the layout of `rg --heading`).",
    )
    _fields: tuple[str, ...] = PrivateAttr(())

    @field_validator("row")
    @classmethod
    def _check_row(cls, value: str) -> str:
        fields = _TEMPLATE_FIELD.findall(value)
        if not fields:
            raise ValueError(f"must name at least one field as {{field}}, got {value!r}")
        leftover = _TEMPLATE_FIELD.sub("", value)
        if "{" in leftover or "}" in leftover:
            raise ValueError(f"only {{field}} placeholders are allowed, got {value!r}")
        if "\n" in value:
            raise ValueError("must be a single line")
        return value

    @model_validator(mode="after")
    def _compile(self) -> "RenderOptions":
        self._fields = tuple(_TEMPLATE_FIELD.findall(self.row))
        return self

    @property
    def fields(self) -> tuple[str, ...]:
        return self._fields


class TruncateOptions(_Strict):
    items: int | None = Field(None, ge=1, description="Records kept per record list (JSON results).")
    lines: int | None = Field(None, ge=1, description="Lines kept (text results).")
    chars: int | None = Field(None, ge=1, description="Characters kept (text results).")
    keep: Literal["head", "head_tail"] = Field(
        "head", description="`head` keeps the first N; `head_tail` keeps the first and last halves."
    )

    @model_validator(mode="after")
    def _check_one_limit(self) -> "TruncateOptions":
        given = [name for name in ("items", "lines", "chars") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"set exactly one of items, lines or chars, got {given or 'none'}")
        return self


class DedupeOptions(_Strict):
    by: list[str] | None = Field(
        None,
        min_length=1,
        description="Fields that identify a record; records with the same values are repeats. "
        "Without it, whole records are compared. Text results collapse runs of identical lines.",
    )


class MinifyOptions(_Strict):
    pass


class LineNumbersOptions(_Strict):
    pass


def _expand_bare_action(value: Any) -> Any:
    """Turn the short YAML forms `- toon` and `- {toon: null}` into `{toon: {}}`."""
    if isinstance(value, str):
        if value not in BARE_ACTIONS:
            raise ValueError(
                f"unknown action {value!r}; use one of {', '.join(BARE_ACTIONS)}, "
                f"or a mapping with one key out of {', '.join(ACTION_KEYS)}"
            )
        return {value: {}}
    if isinstance(value, dict):
        return {key: ({} if key in BARE_ACTIONS and option is None else option) for key, option in value.items()}
    return value


class ActionSpec(_Strict):
    """One action of a target: a mapping with exactly one of these keys.

    `toon` and `minify` are lossless and verified by decoding. `line_numbers` removes the padding of
    `cat -n` line-number gutters in text results, and is verified by padding them again. `render`
    writes records as plain text lines and drops field names, so it is lossy. `project`, `drop`,
    `truncate` and `dedupe` remove data and leave a marker in the text.
    """

    toon: ToonOptions | None = Field(None, description="Encode the JSON value as TOON.")
    minify: MinifyOptions | None = Field(None, description="Write the JSON value as compact JSON.")
    render: RenderOptions | None = Field(None, description="Write records as plain text lines.")
    project: list[str] | None = Field(
        None, min_length=1, description="Keep only these top-level fields of each record."
    )
    drop: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None, min_length=1, description="Remove every node these JSONPath expressions match in the result."
    )
    truncate: TruncateOptions | None = Field(None, description="Keep at most N records, lines or characters.")
    dedupe: DedupeOptions | None = Field(
        None, description="Remove repeated records (JSON) or collapse runs of identical lines (text)."
    )
    line_numbers: LineNumbersOptions | None = Field(
        None,
        description="Remove the leading spaces of `cat -n` line-number gutters (`     12<tab>`) in a text "
        "result that is a numbered listing. Lossless: the numbers, separators and lines stay.",
    )

    _name: str = PrivateAttr("")
    _drop_paths: tuple[tuple[str, Any], ...] = PrivateAttr(())

    @field_validator("drop")
    @classmethod
    def _check_drop_paths(cls, value: list[str] | None) -> list[str] | None:
        for expression in value or ():
            _check_jsonpath(expression)
        return value

    @model_validator(mode="after")
    def _check_one_key(self) -> "ActionSpec":
        given = [key for key in ACTION_KEYS if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(
                f"an action is a mapping with exactly one key out of {', '.join(ACTION_KEYS)}, got {given or 'none'}"
            )
        self._name = given[0]
        if self.drop is not None:
            self._drop_paths = tuple((expression, compile_jsonpath(expression)) for expression in self.drop)
        return self

    @property
    def name(self) -> str:
        return self._name

    @property
    def drop_paths(self) -> tuple[tuple[str, Any], ...]:
        return self._drop_paths


Action = Annotated[
    ActionSpec,
    BeforeValidator(
        _expand_bare_action,
        json_schema_input_type=Union[Literal["toon", "minify", "dedupe", "line_numbers"], ActionSpec],
    ),
]


@dataclass(frozen=True, slots=True)
class TargetPlan:
    """The parts of a target that the stage reads on every request, as plain attributes.

    Reading pydantic private attributes goes through `__getattr__`, which costs more than the rest of
    the per-block checks on a request whose tool results are not JSON.
    """

    name: str
    path: str
    compiled_path: Any
    fast_steps: tuple[tuple[Any, ...], ...] | None
    tool_pattern: re.Pattern[str] | None
    min_tokens: int
    has_text_actions: bool
    # True when line_numbers is the only text action, so text without a gutter can be skipped early.
    needs_gutter: bool
    fingerprint: str

    def matches_tool(self, tool_name: str | None) -> bool:
        if self.tool_pattern is None:
            return True
        return tool_name is not None and self.tool_pattern.fullmatch(tool_name) is not None


def _has_text_actions(steps: tuple[ActionSpec, ...]) -> bool:
    for step in steps:
        if step.dedupe is not None or step.line_numbers is not None:
            return True
        if step.truncate is not None and step.truncate.items is None:
            return True
    return False


def _needs_gutter(steps: tuple[ActionSpec, ...]) -> bool:
    text_steps = [step for step in steps if _has_text_actions((step,))]
    return bool(text_steps) and all(step.line_numbers is not None for step in text_steps)


def _compile_tool_globs(patterns: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(pattern)})" for pattern in patterns))


class CompressionTarget(_Strict):
    """One JSONPath target of the compression stage and the actions applied where it matches."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")] = Field(
        description="Names the target in decision records and omission markers."
    )
    path: str = Field(
        description="JSONPath (jsonpath-ng extended syntax) into the canonical request that selects "
        "tool_result blocks, text blocks or their text."
    )
    tool: str | list[str] | None = Field(
        None,
        description="Name or glob of the tool whose result this is (matched case-sensitively, resolved "
        "through tool_use_id); a list matches any of its entries. Unset: every tool result and text block.",
    )
    records: str | None = Field(
        None,
        description="JSONPath, relative to a JSON tool result, of the record lists that project, truncate "
        "items, dedupe and render act on. Unset: the result itself when it is a list, else every list "
        "directly under its top-level keys.",
    )
    min_tokens: int = Field(0, ge=0, description="Blocks with fewer tokens than this are left alone.")
    actions: list[Action] = Field(min_length=1, description="Applied in order; encoders come last.")

    _path: Any = PrivateAttr(None)
    _records: Any = PrivateAttr(None)
    _tool_pattern: re.Pattern[str] | None = PrivateAttr(None)
    _steps: tuple[ActionSpec, ...] = PrivateAttr(())
    _encoders: tuple[ActionSpec, ...] = PrivateAttr(())
    _fingerprint: str = PrivateAttr("")
    _plan: TargetPlan | None = PrivateAttr(None)

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        return _check_jsonpath(value)

    @field_validator("records")
    @classmethod
    def _check_records(cls, value: str | None) -> str | None:
        return None if value is None else _check_jsonpath(value)

    @field_validator("tool")
    @classmethod
    def _check_tool(cls, value: str | list[str] | None) -> str | list[str] | None:
        patterns = [value] if isinstance(value, str) else value or []
        if isinstance(value, list) and not value:
            raise ValueError("must name at least one tool or glob; leave `tool` out to match every tool")
        for pattern in patterns:
            if not pattern.strip():
                raise ValueError("tool names and globs must not be empty")
        return value

    @field_validator("actions")
    @classmethod
    def _check_order(cls, actions: list[ActionSpec]) -> list[ActionSpec]:
        names = [action.name for action in actions]
        first_encoder = next((name for name in names if name in ENCODERS), None)
        if first_encoder is not None:
            after = names[names.index(first_encoder) + 1 :]
            misplaced = [name for name in after if name not in ENCODERS]
            if misplaced:
                raise ValueError(
                    f"{misplaced[0]} comes after {first_encoder}; toon, minify and render write the final "
                    "text, so list them last"
                )
        encoders = [name for name in names if name in ENCODERS]
        if len(set(encoders)) != len(encoders):
            raise ValueError(f"each encoder may be listed once, got {encoders}")
        return actions

    @model_validator(mode="after")
    def _compile(self) -> "CompressionTarget":
        self._path = compile_jsonpath(self.path)
        self._records = None if self.records is None else compile_jsonpath(self.records)
        if self.tool is not None:
            self._tool_pattern = _compile_tool_globs([self.tool] if isinstance(self.tool, str) else self.tool)
        self._steps = tuple(action for action in self.actions if action.name not in ENCODERS)
        self._encoders = tuple(action for action in self.actions if action.name in ENCODERS)
        self._fingerprint = self.model_dump_json()
        self._plan = TargetPlan(
            name=self.name,
            path=self.path,
            compiled_path=self._path,
            fast_steps=compile_steps(self._path),
            tool_pattern=self._tool_pattern,
            min_tokens=self.min_tokens,
            has_text_actions=_has_text_actions(self._steps),
            needs_gutter=_needs_gutter(self._steps),
            fingerprint=self._fingerprint,
        )
        return self

    @property
    def plan(self) -> TargetPlan:
        assert self._plan is not None
        return self._plan

    @property
    def compiled_path(self) -> Any:
        return self._path

    @property
    def compiled_records(self) -> Any:
        return self._records

    @property
    def steps(self) -> tuple[ActionSpec, ...]:
        """The actions before the encoders (project, drop, truncate, dedupe, line_numbers), in policy order."""
        return self._steps

    @property
    def encoders(self) -> tuple[ActionSpec, ...]:
        """The encoders (toon, minify, render); empty when the policy lists none."""
        return self._encoders

    @property
    def fingerprint(self) -> str:
        """The target as canonical JSON; equal targets share cached results across policy reloads."""
        return self._fingerprint

    def matches_tool(self, tool_name: str | None) -> bool:
        return self.plan.matches_tool(tool_name)
