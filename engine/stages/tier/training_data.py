"""Labelled rows for `leangate train-tier`: decision logs joined with labels, or a labelled prompt file.

Decision-log fields read (one JSON object a line, as the gateway writes them):

- `request_id`: the join key with the label file.
- `tier.features`: the 15 feature values the router computed (`semantic_difficulty` may be absent).
- `tier.tier`: the tier the request was sent to.
- `team`, `session`, `time`: used to find retries of the same prompt. Cross-validation keeps the
  requests of one session in one fold, because they resemble each other.
- `last_user_text`: present when the policy sets `decision_log.prompt_text: true`; lets training
  recompute the centroids of `semantic_difficulty` and detect retries.
- `outcome.label`: `easy` or `hard`, written by a feedback hook.
- `outcome.escalated`: true when the request's answer on a cheaper tier failed and it was sent again
  on a stronger tier; the request is labelled hard.
- `outcome.retry_of`: the request id this request retries; the retried request is labelled hard
  when it had not been sent to the strongest tier.

Labels from the label file win over labels from outcomes.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from engine.stages.tier.policy import FEATURE_NAMES

LABELS = ("easy", "hard")


class TrainingDataError(Exception):
    """Raised when an input file of `leangate train-tier` is missing or malformed; names the file and line."""


@dataclass
class Row:
    """One labelled request: feature values (semantic_difficulty possibly unknown) and its text if known."""

    key: str
    label: str
    features: dict[str, float]
    text: str | None = None
    body: dict[str, Any] | None = None
    source: str = ""
    group: str | None = None  # rows of one group stay in one cross-validation fold


@dataclass
class LogRecord:
    request_id: str
    features: dict[str, float]
    tier: str | None
    text: str | None
    team: str | None
    session: str | None
    time: float
    outcome: dict[str, Any] = field(default_factory=dict)


def read_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line of a JSON Lines file."""
    try:
        handle = open(path, encoding="utf-8")
    except OSError as error:
        raise TrainingDataError(f"{path}: cannot open: {error.strerror}") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise TrainingDataError(f"{path}:{number}: invalid JSON: {error.msg}") from None
            if not isinstance(value, dict):
                raise TrainingDataError(f"{path}:{number}: expected a JSON object, got {type(value).__name__}")
            yield number, value


def read_decision_logs(paths: list[Path]) -> list[LogRecord]:
    """Read the decision records that carry tier features; records without them (cache hits) are skipped."""
    records = []
    for path in paths:
        for number, value in read_json_lines(path):
            tier = value.get("tier")
            features = tier.get("features") if isinstance(tier, dict) else None
            request_id = value.get("request_id")
            if not isinstance(features, dict) or not request_id:
                continue
            records.append(
                LogRecord(
                    request_id=str(request_id),
                    features=_checked_features(features, f"{path}:{number}"),
                    tier=tier.get("tier"),
                    text=value.get("last_user_text") if isinstance(value.get("last_user_text"), str) else None,
                    team=value.get("team"),
                    session=value.get("session"),
                    time=float(value.get("time") or 0.0),
                    outcome=value.get("outcome") if isinstance(value.get("outcome"), dict) else {},
                )
            )
    return records


def read_labels(path: Path) -> dict[str, str]:
    """Read request_id -> label from JSON Lines (`{"request_id", "label"}`) or CSV with those columns."""
    labels: dict[str, str] = {}
    if path.suffix.lower() == ".csv":
        try:
            with open(path, newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                if not reader.fieldnames or not {"request_id", "label"} <= set(reader.fieldnames):
                    raise TrainingDataError(f"{path}: a label CSV needs the columns request_id and label")
                for number, entry in enumerate(reader, start=2):
                    labels[entry["request_id"]] = _checked_label(entry["label"], f"{path}:{number}")
        except OSError as error:
            raise TrainingDataError(f"{path}: cannot open: {error.strerror}") from None
        return labels
    for number, value in read_json_lines(path):
        if "request_id" not in value:
            raise TrainingDataError(f"{path}:{number}: missing request_id")
        labels[str(value["request_id"])] = _checked_label(value.get("label"), f"{path}:{number}")
    return labels


def outcome_labels(records: list[LogRecord], cheapest_tiers: set[str], implicit_easy: bool) -> dict[str, str]:
    """Derive labels from outcomes recorded in the logs (see the module docstring for the fields).

    Retries are also detected without `outcome.retry_of`: when the same session sends the same last
    user text again, the earlier requests that did not go to the strongest tier are labelled hard.
    With `implicit_easy`, a request sent to a cheap tier with no failure signal is labelled easy.
    """
    by_id = {record.request_id: record for record in records}
    labels: dict[str, str] = {}
    hard: set[str] = set()

    for record in records:
        explicit = record.outcome.get("label")
        if explicit in LABELS:
            labels[record.request_id] = explicit
        if record.outcome.get("escalated"):
            hard.add(record.request_id)
        retried = record.outcome.get("retry_of")
        if isinstance(retried, str) and retried in by_id and by_id[retried].tier in cheapest_tiers:
            hard.add(retried)

    attempts: dict[tuple[Any, Any, str], list[LogRecord]] = defaultdict(list)
    for record in records:
        if record.session and record.text:
            attempts[(record.team, record.session, record.text)].append(record)
    for group in attempts.values():
        group.sort(key=lambda item: item.time)
        for earlier in group[:-1]:
            if earlier.tier in cheapest_tiers:
                hard.add(earlier.request_id)

    for request_id in hard:
        labels.setdefault(request_id, "hard")
    if implicit_easy:
        for record in records:
            if record.tier in cheapest_tiers and record.request_id not in labels:
                labels[record.request_id] = "easy"
    return labels


def rows_from_logs(records: list[LogRecord], labels: dict[str, str]) -> list[Row]:
    rows = []
    for record in records:
        label = labels.get(record.request_id)
        if label is None:
            continue
        rows.append(
            Row(
                key=record.request_id,
                label=label,
                features=record.features,
                text=record.text,
                source="log",
                group=f"session:{record.session}" if record.session else None,
            )
        )
    return rows


def read_prompts(path: Path) -> list[dict[str, Any]]:
    """Read a labelled prompt file: JSON Lines or YAML, each entry `{text, label, envelope?, id?, group?}`.

    YAML may be a list of entries or a mapping with a `prompts` list.
    """
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            document = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise TrainingDataError(f"{path}: cannot open: {error.strerror}") from None
        except YAMLError as error:
            raise TrainingDataError(f"{path}: invalid YAML: {error}") from None
        entries = document.get("prompts") if isinstance(document, dict) else document
        if not isinstance(entries, list):
            raise TrainingDataError(f"{path}: expected a list of prompts or a mapping with a `prompts` list")
        numbered = list(enumerate(entries, start=1))
        where = "entry"
    else:
        numbered = list(read_json_lines(path))
        where = "line"

    prompts = []
    for number, entry in numbered:
        location = f"{path}: {where} {number}" if where == "entry" else f"{path}:{number}"
        if not isinstance(entry, dict):
            raise TrainingDataError(f"{location}: expected a mapping with `text` and `label`")
        text = entry.get("text")
        if not isinstance(text, str) or not text.strip():
            raise TrainingDataError(f"{location}: `text` must be a non-empty string")
        prompts.append(
            {
                "id": str(entry.get("id") or f"{path.name}:{number}"),
                "text": text,
                "label": _checked_label(entry.get("label"), location),
                "envelope": str(entry.get("envelope") or "bare"),
                "group": str(entry["group"]) if entry.get("group") is not None else None,
            }
        )
    return prompts


def request_for_prompt(text: str, envelope: dict[str, Any] | None) -> dict[str, Any]:
    """Build the canonical request an agent would send for one prompt: the envelope's system and tools, then the text."""
    body: dict[str, Any] = {"model": "training", "max_tokens": 4096}
    if envelope:
        body.update({key: value for key, value in envelope.items() if key != "messages"})
    body["messages"] = [{"role": "user", "content": [{"type": "text", "text": text}]}]
    return body


def load_envelopes(folder: Path, names: set[str]) -> dict[str, dict[str, Any]]:
    """Load envelopes/<name>.json for each name except `bare`."""
    envelopes: dict[str, dict[str, Any]] = {}
    for name in sorted(names - {"bare"}):
        path = folder / f"{name}.json"
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except OSError:
            raise TrainingDataError(f"{path}: envelope {name!r} not found; add the file or use envelope `bare`") from None
        except json.JSONDecodeError as error:
            raise TrainingDataError(f"{path}: invalid JSON: {error.msg}") from None
        if not isinstance(value, dict):
            raise TrainingDataError(f"{path}: an envelope must be a JSON object (a request body without messages)")
        envelopes[name] = value
    return envelopes


def _checked_label(value: Any, location: str) -> str:
    if value not in LABELS:
        raise TrainingDataError(f"{location}: label must be `easy` or `hard`, got {value!r}")
    return value


def _checked_features(values: dict[str, Any], location: str) -> dict[str, float]:
    features = {}
    for name in FEATURE_NAMES:
        value = values.get(name)
        if value is None and name == "semantic_difficulty":
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TrainingDataError(f"{location}: tier.features.{name} must be a number, got {value!r}")
        features[name] = float(value)
    return features
