"""Lossy actions on parsed tool results (records) and on plain text, each with its omission marker.

Each action leaves a marker naming what was omitted and the policy target that omitted it, so the
model can see that data is missing. The record functions mutate the parsed value in place (the stage
parses a fresh copy for each block) and return the markers to append. The text functions return the
new text with the markers already placed where text was cut out.
"""

from __future__ import annotations

import json
from typing import Any

from jsonpath_ng.jsonpath import Fields, Index

from engine.stages.compress.encode import EncodingFailed, encode_minified
from engine.stages.compress.policy import CompressionTarget, DedupeOptions, RenderOptions, TruncateOptions

# Runs of identical lines shorter than this are kept: a marker line would cost about as much.
MIN_LINE_RUN = 3


def marker(what: str, target: CompressionTarget) -> str:
    return f"[{what} omitted by policy {target.name}]"


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


# Records ---------------------------------------------------------------------------------------


class RecordList:
    """A list of records inside a parsed tool result, and how markers name it."""

    __slots__ = ("items", "label")

    def __init__(self, items: list[Any], label: str):
        self.items = items
        self.label = label

    def describe(self, noun: str = "records") -> str:
        return noun if self.label == "$" else f"{noun} in {self.label}"


def find_record_lists(value: Any, target: CompressionTarget) -> list[RecordList]:
    """Locate the record lists of a parsed tool result (see `CompressionTarget.records`)."""
    if target.compiled_records is not None:
        found = []
        seen: set[int] = set()
        for datum in target.compiled_records.find(value):
            if isinstance(datum.value, list) and id(datum.value) not in seen:
                seen.add(id(datum.value))
                found.append(RecordList(datum.value, str(datum.full_path)))
        return found
    if isinstance(value, list):
        return [RecordList(value, "$")]
    if isinstance(value, dict):
        return [RecordList(child, key) for key, child in value.items() if isinstance(child, list)]
    return []


def project(lists: list[RecordList], fields: list[str], target: CompressionTarget) -> list[str]:
    """Keep only `fields` of every record that is an object. Field order of each record is kept."""
    wanted = set(fields)
    removed_names: dict[str, None] = {}
    changed = 0
    for record_list in lists:
        items = record_list.items
        for position, record in enumerate(items):
            if not isinstance(record, dict):
                continue
            extra = [key for key in record if key not in wanted]
            if not extra:
                continue
            for key in extra:
                removed_names.setdefault(key, None)
            items[position] = {key: field for key, field in record.items() if key in wanted}
            changed += 1
    if not changed:
        return []
    names = ", ".join(removed_names)
    noun = "record" if changed == 1 else "records"
    return [marker(f"fields {names} of {changed} {noun}", target)]


def drop(value: Any, paths: tuple[tuple[str, Any], ...], target: CompressionTarget) -> list[str]:
    """Remove every node that the compiled JSONPath expressions match; the root itself is kept."""
    markers = []
    for expression, compiled in paths:
        removed = 0
        list_positions: dict[int, tuple[list[Any], set[int]]] = {}
        for datum in compiled.find(value):
            if datum.context is None:
                continue
            parent = datum.context.value
            step = datum.path
            if isinstance(parent, dict) and isinstance(step, Fields) and len(step.fields) == 1:
                if step.fields[0] in parent:
                    del parent[step.fields[0]]
                    removed += 1
            elif isinstance(parent, list) and isinstance(step, Index):
                entry = list_positions.setdefault(id(parent), (parent, set()))
                entry[1].update(position for position in step.indices if isinstance(position, int))
        for parent, positions in list_positions.values():
            for position in sorted(positions, reverse=True):
                if -len(parent) <= position < len(parent):
                    del parent[position]
                    removed += 1
        if removed:
            noun = "value" if removed == 1 else "values"
            markers.append(marker(f"{removed} {noun} at {expression}", target))
    return markers


def _kept_positions(length: int, limit: int, keep: str) -> tuple[int, int]:
    """Return (head, tail): how many items to keep from the start and from the end."""
    if keep == "head_tail":
        head = (limit + 1) // 2
        return head, limit - head
    return limit, 0


def truncate_records(lists: list[RecordList], options: TruncateOptions, target: CompressionTarget) -> list[str]:
    markers = []
    limit = options.items
    assert limit is not None
    for record_list in lists:
        items = record_list.items
        length = len(items)
        if length <= limit:
            continue
        head, tail = _kept_positions(length, limit, options.keep)
        items[:] = items[:head] + (items[length - tail :] if tail else [])
        omitted = length - head - tail
        where = _span(head + 1, length - tail)
        markers.append(
            marker(f"{omitted} of {length} {record_list.describe()} (positions {where})", target)
        )
    return markers


def _record_key(record: Any, by: list[str] | None) -> str:
    if by is None or not isinstance(record, dict):
        return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    # A missing field and a null field must not look alike.
    return json.dumps([[field in record, record.get(field)] for field in by], ensure_ascii=False)


def dedupe_records(lists: list[RecordList], options: DedupeOptions, target: CompressionTarget) -> list[str]:
    """Remove records equal to an earlier record of the same list; the first one is kept."""
    markers = []
    for record_list in lists:
        seen: set[str] = set()
        kept = []
        for record in record_list.items:
            key = _record_key(record, options.by)
            if key in seen:
                continue
            seen.add(key)
            kept.append(record)
        omitted = len(record_list.items) - len(kept)
        if not omitted:
            continue
        record_list.items[:] = kept
        noun = record_list.describe("record" if omitted == 1 else "records")
        if options.by:
            what = f"{omitted} {noun} repeating an earlier {', '.join(options.by)}"
        else:
            what = f"{omitted} repeated {noun}"
        markers.append(marker(what, target))
    return markers


# Render ----------------------------------------------------------------------------------------


def _render_field(value: Any) -> str:
    if isinstance(value, str):
        # One record must stay on one line; a quoted JSON string shows where the value's own
        # line breaks were.
        if "\n" in value or "\r" in value:
            return json.dumps(value, ensure_ascii=False)
        return value
    return encode_minified(value)


def _render_rows(record_list: RecordList, options: RenderOptions, lines: list[str]) -> dict[str, None]:
    """Append the lines of one record list and return the names of fields that were left out."""
    used = set(options.fields)
    if options.heading:
        used.add(options.heading)
    left_out: dict[str, None] = {}
    previous_heading: str | None = None
    for position, record in enumerate(record_list.items):
        if not isinstance(record, dict):
            raise EncodingFailed(f"render: record {position} of {record_list.label} is not an object")
        missing = [field for field in (*options.fields, options.heading) if field and field not in record]
        if missing:
            raise EncodingFailed(f"render: record {position} of {record_list.label} has no field {missing[0]!r}")
        for key in record:
            if key not in used:
                left_out.setdefault(key, None)
        if options.heading:
            heading = _render_field(record[options.heading])
            if heading != previous_heading:
                lines.append(heading)
                previous_heading = heading
        row = options.row
        for field in options.fields:
            row = row.replace("{" + field + "}", _render_field(record[field]))
        lines.append(row)
    return left_out


def render(value: Any, lists: list[RecordList], options: RenderOptions, target: CompressionTarget) -> str:
    """Write the record lists as text lines, one per record, with a heading line per group.

    Works when the records are the tool result itself, or lists directly under its top-level keys;
    other top-level keys are written as `key: compact JSON`. Raises EncodingFailed otherwise.
    """
    lines: list[str] = []
    left_out: dict[str, None] = {}
    if isinstance(value, list):
        if len(lists) != 1 or lists[0].items is not value:
            raise EncodingFailed("render: the records are not the tool result itself")
        left_out.update(_render_rows(lists[0], options, lines))
    elif isinstance(value, dict):
        by_identity = {id(record_list.items): record_list for record_list in lists}
        if not lists:
            raise EncodingFailed("render: the tool result has no record list")
        rendered = 0
        for key, child in value.items():
            record_list = by_identity.get(id(child))
            if record_list is None:
                lines.append(f"{key}: {encode_minified(child)}")
                continue
            lines.append(f"{key}:")
            left_out.update(_render_rows(record_list, options, lines))
            rendered += 1
        if rendered != len(lists):
            raise EncodingFailed("render: some record lists are not directly under the top-level keys")
    else:
        raise EncodingFailed("render: the tool result is not an object or array")
    if left_out:
        count = sum(len(record_list.items) for record_list in lists)
        lines.append(marker(f"fields {', '.join(left_out)} of {count} records", target))
    return "\n".join(lines)


# Text ------------------------------------------------------------------------------------------


def truncate_text(text: str, options: TruncateOptions, target: CompressionTarget) -> str:
    """Keep at most `lines` lines or `chars` characters; the marker sits where text was cut out."""
    if options.lines is not None:
        lines = text.split("\n")
        length = len(lines)
        if length <= options.lines:
            return text
        head, tail = _kept_positions(length, options.lines, options.keep)
        omitted = length - head - tail
        note = marker(f"{omitted} of {length} lines (lines {_span(head + 1, length - tail)})", target)
        return "\n".join(lines[:head] + [note] + (lines[length - tail :] if tail else []))

    assert options.chars is not None
    length = len(text)
    if length <= options.chars:
        return text
    head, tail = _kept_positions(length, options.chars, options.keep)
    omitted = length - head - tail
    note = marker(f"{omitted} of {length} characters (characters {_span(head + 1, length - tail)})", target)
    return text[:head] + "\n" + note + ("\n" + text[length - tail :] if tail else "")


def dedupe_lines(text: str, target: CompressionTarget) -> str:
    """Collapse each run of MIN_LINE_RUN or more identical non-blank lines into one line and a marker."""
    lines = text.split("\n")
    output: list[str] = []
    position = 0
    changed = False
    while position < len(lines):
        line = lines[position]
        end = position + 1
        while end < len(lines) and lines[end] == line:
            end += 1
        run = end - position
        if run >= MIN_LINE_RUN and line.strip():
            output.append(line)
            output.append(marker(f"{run - 1} repeats of the line above", target))
            changed = True
        else:
            output.extend(lines[position:end])
        position = end
    return "\n".join(output) if changed else text
