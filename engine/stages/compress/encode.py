"""JSON parsing, the lossless encoders (TOON, compact JSON) and their verification.

"Equal" in this module means equal as values of the JSON data model, which is what a model reading
the text can tell apart:

- null, booleans, numbers, strings, arrays and objects are six different kinds, so `true` never
  equals `1` (Python's `True == 1` is not used);
- numbers are equal when their mathematical values are equal, so `1`, `1.0` and `1e0` are equal and
  so are `0` and `-0.0` (JSON has one number type; TOON writes canonical numbers, e.g. `1.0` as `1`).
  Integers are compared exactly, at any size;
- strings are equal code point by code point;
- arrays are equal element by element, in order;
- objects are equal when they have the same keys in the same order and equal values. Key order is
  part of equality because the model reads the keys in order and TOON keeps that order.
"""

from __future__ import annotations

import json
import math
from typing import Any

import toon_format

# Tool results nested deeper than this are left alone, because the encoders and the comparison recurse.
MAX_DEPTH = 200


class NotJson(ValueError):
    """Raised when text is not a JSON document that can be re-encoded without loss."""


def _reject_constant(name: str) -> Any:
    raise NotJson(f"{name} is not a JSON value")


def _parse_finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotJson(f"number {text} is out of the range of a double")
    return value


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        # json.loads would keep the last value of a repeated key, so re-encoding would drop the others.
        raise NotJson("an object repeats a key")
    return value


def looks_like_json(text: str) -> bool:
    """Return whether text starts like a JSON object or array (a cheap test before parsing)."""
    stripped = text.lstrip()
    return stripped[:1] in ("{", "[")


def parse_json(text: str) -> Any:
    """Parse a JSON object or array.

    Raises NotJson for invalid JSON, NaN or Infinity, repeated keys, and nesting deeper than MAX_DEPTH.
    Integers keep their exact value at any size (orjson would turn integers above 64 bits into floats).
    """
    try:
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_parse_finite_float,
            object_pairs_hook=_object_without_duplicates,
        )
    except NotJson:
        raise
    except (ValueError, RecursionError) as error:
        raise NotJson(f"invalid JSON: {error}") from None
    if not isinstance(value, (dict, list)):
        raise NotJson("not a JSON object or array")
    if _depth_exceeds(value, MAX_DEPTH):
        raise NotJson(f"nested deeper than {MAX_DEPTH} levels")
    return value


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values() if isinstance(child, (dict, list)))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node if isinstance(child, (dict, list)))
    return False


def json_equal(left: Any, right: Any) -> bool:
    """Compare two JSON values by the rules in the module docstring."""
    if left is None or right is None:
        return left is None and right is None
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, (int, float)) or isinstance(right, (int, float)):
        if not (isinstance(left, (int, float)) and isinstance(right, (int, float))):
            return False
        if isinstance(left, float) and not math.isfinite(left):
            return False
        if isinstance(right, float) and not math.isfinite(right):
            return False
        return left == right
    if isinstance(left, str) or isinstance(right, str):
        return isinstance(left, str) and isinstance(right, str) and left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(json_equal(a, b) for a, b in zip(left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        if list(left) != list(right):
            return False
        return all(json_equal(left[key], right[key]) for key in left)
    return False


def encode_minified(value: Any) -> str:
    # ensure_ascii=False keeps non-ASCII text as characters, which costs fewer tokens than \u escapes.
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if not is_utf8_encodable(text):
        # A lone surrogate (from a "\ud800" escape) cannot be sent as UTF-8, so it stays escaped.
        text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text


def is_utf8_encodable(text: str) -> bool:
    """Return whether text has no lone surrogates, so the request body can be sent as UTF-8."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def decode_minified(text: str) -> Any:
    return json.loads(text)


def encode_toon(value: Any, delimiter: str) -> str:
    return toon_format.encode(value, delimiter=delimiter)


def decode_toon(text: str) -> Any:
    return toon_format.decode(text)


class EncodingFailed(Exception):
    """Raised when an encoder cannot encode a value or its output does not decode to the same value."""


def encode_verified(value: Any, encoder: str, delimiter: str = ",") -> str:
    """Encode value with `toon` or `minify`, decode the text again and check that it is equal.

    Raises EncodingFailed with the reason when encoding, decoding or the comparison fails.
    """
    try:
        if encoder == "toon":
            text = encode_toon(value, delimiter)
            decoded = decode_toon(text)
        else:
            text = encode_minified(value)
            decoded = decode_minified(text)
    except (TypeError, ValueError, RecursionError, toon_format.ToonDecodeError) as error:
        raise EncodingFailed(f"{encoder} failed: {error}") from None
    if not json_equal(decoded, value):
        raise EncodingFailed(f"{encoder} output does not decode to the original value")
    return text
