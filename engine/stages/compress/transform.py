"""Compress the text of one block by the actions of one target, and describe the decision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.stages.compress import actions, line_numbers
from engine.stages.compress.encode import (
    EncodingFailed,
    NotJson,
    encode_verified,
    is_utf8_encodable,
    parse_json,
)
from engine.stages.compress.policy import LOSSLESS_TEXT_ACTIONS, ActionSpec, CompressionTarget, MinifyOptions
from engine.tokens import count_text

_IMPLIED_MINIFY = ActionSpec(minify=MinifyOptions())


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result for one block: the new text (None keeps the original) and the decision entry."""

    text: str | None
    decision: dict[str, Any]


def _decision(
    target: CompressionTarget,
    action: str,
    tokens_before: int,
    tokens_after: int,
    lossless: bool,
    verified: bool | None,
    applied: bool,
    rejected: list[dict[str, str]],
) -> dict[str, Any]:
    decision: dict[str, Any] = {
        "target": target.name,
        "action": action,
        "tokens_before": tokens_before,
        "tokens_after": tokens_after,
        "lossless": lossless,
        "verified": verified,
        "applied": applied,
    }
    if rejected:
        decision["rejected"] = rejected
    return decision


def compress_text(text: str, target: CompressionTarget, tokens_before: int, is_json_candidate: bool) -> Outcome | None:
    """Apply the target's actions to the text of one block.

    Returns None when no action applies (text that is not JSON and no text action, or nothing to do).
    `tokens_before` is the token count of `text`, which the caller has already checked against
    `min_tokens`.
    """
    value = None
    if is_json_candidate:
        try:
            value = parse_json(text)
        except NotJson:
            value = None
    if value is None:
        return _compress_plain_text(text, target, tokens_before)
    return _compress_json(value, target, tokens_before)


def _compress_plain_text(text: str, target: CompressionTarget, tokens_before: int) -> Outcome | None:
    result = text
    used = []
    rejected: list[dict[str, str]] = []
    verified: bool | None = None
    for step in target.steps:
        if step.name == "truncate" and step.truncate is not None and step.truncate.items is None:
            changed = actions.truncate_text(result, step.truncate, target)
        elif step.name == "dedupe":
            changed = actions.dedupe_lines(result, target)
        elif step.name == "line_numbers":
            changed, reason = _strip_line_numbers(result)
            if reason is not None:
                rejected.append({"action": step.name, "reason": reason})
            elif changed != result:
                verified = True
        else:
            continue
        if changed != result:
            used.append(step.name)
            result = changed
    if not used:
        if rejected:
            return Outcome(None, _decision(target, "line_numbers", tokens_before, tokens_before, True, False, False, rejected))
        return None

    action = "+".join(used)
    lossless = all(name in LOSSLESS_TEXT_ACTIONS for name in used)
    tokens_after = count_text(result)
    applied = tokens_after < tokens_before
    if not applied:
        rejected.append({"action": action, "reason": "not fewer tokens"})
    decision = _decision(
        target,
        action,
        tokens_before,
        tokens_after if applied else tokens_before,
        lossless=lossless,
        # Only a text changed by lossless actions alone can be compared with the original.
        verified=verified if lossless else None,
        applied=applied,
        rejected=rejected,
    )
    return Outcome(result if applied else None, decision)


def _strip_line_numbers(text: str) -> tuple[str, str | None]:
    """Run the line_numbers action and check that padding the numbers again gives back `text`.

    Returns the new text (or `text` unchanged) and a rejection reason when the check failed.
    """
    stripped = line_numbers.strip_gutters(text)
    if stripped is None:
        return text, None
    result, numbered = stripped
    if line_numbers.restore_gutters(result, numbered) != text:
        return text, "padding the line numbers again does not give back the original text"
    return result, None


def _apply_record_steps(value: Any, target: CompressionTarget) -> tuple[list[str], list[str]]:
    """Run project, drop, truncate items and dedupe on the parsed value; return (markers, used)."""
    markers: list[str] = []
    used: list[str] = []
    for step in target.steps:
        lists = actions.find_record_lists(value, target)
        if step.name == "project" and step.project is not None:
            added = actions.project(lists, step.project, target)
        elif step.name == "drop":
            added = actions.drop(value, step.drop_paths, target)
        elif step.name == "truncate" and step.truncate is not None and step.truncate.items is not None:
            added = actions.truncate_records(lists, step.truncate, target)
        elif step.name == "dedupe" and step.dedupe is not None:
            added = actions.dedupe_records(lists, step.dedupe, target)
        else:
            continue
        if added:
            markers.extend(added)
            used.append(step.name)
    return markers, used


def _compress_json(value: Any, target: CompressionTarget, tokens_before: int) -> Outcome | None:
    # NOTE: encoding, decoding and comparing take about 0.4 to 0.7 s for a 1 MB result on a shared
    # 2-core machine (benchmarks/compression.py), on the request path and with no size limit. The
    # result cache makes it a once-per-session cost.
    markers, used = _apply_record_steps(value, target)
    encoders = target.encoders or ((_IMPLIED_MINIFY,) if used else ())
    if not encoders:
        return None

    rejected: list[dict[str, str]] = []
    best: tuple[int, str, str, bool] | None = None  # (tokens, text, encoder, verified)
    for encoder in encoders:
        try:
            if encoder.name == "render":
                assert encoder.render is not None
                lists = actions.find_record_lists(value, target)
                encoded = actions.render(value, lists, encoder.render, target)
                verified = False
            else:
                delimiter = encoder.toon.character if encoder.toon is not None else ","
                encoded = encode_verified(value, encoder.name, delimiter)
                verified = True
        except EncodingFailed as error:
            rejected.append({"action": encoder.name, "reason": str(error)})
            continue
        candidate = "\n".join([encoded, *markers]) if markers else encoded
        if not is_utf8_encodable(candidate):
            rejected.append({"action": encoder.name, "reason": "output contains an unpaired surrogate"})
            continue
        tokens = count_text(candidate)
        # Ties go to the encoder listed first, so the choice does not depend on anything else.
        if best is None or tokens < best[0]:
            best = (tokens, candidate, encoder.name, verified)

    lossy = bool(used)
    if best is None:
        action = "+".join([*used, *(encoder.name for encoder in encoders)])
        return Outcome(
            None,
            _decision(target, action, tokens_before, tokens_before, not lossy, False, False, rejected),
        )

    tokens_after, candidate, encoder_name, verified = best
    action = "+".join([*used, encoder_name])
    lossless = not lossy and encoder_name in ("toon", "minify")
    verified_field: bool | None = verified if encoder_name != "render" else None
    if tokens_after >= tokens_before:
        rejected.append({"action": action, "reason": f"not fewer tokens ({tokens_after} >= {tokens_before})"})
        return Outcome(
            None,
            _decision(target, action, tokens_before, tokens_before, lossless, verified_field, False, rejected),
        )
    return Outcome(
        candidate,
        _decision(target, action, tokens_before, tokens_after, lossless, verified_field, True, rejected),
    )
