"""Round trips of tricky JSON values through TOON and compact JSON, and the equality they are checked by."""

from __future__ import annotations

import json

import pytest
import toon_format

from engine.stages.compress.encode import (
    EncodingFailed,
    NotJson,
    encode_minified,
    encode_verified,
    json_equal,
    parse_json,
)

TRICKY_VALUES = {
    "comma in string": {"text": "a, b, c"},
    "colon in string": {"text": "key: value"},
    "quotes": {"text": 'say "hi" and \'bye\''},
    "newline and tab": {"text": "line one\nline two\tcolumn"},
    "backslashes": {"text": "C:\\Users\\x\\n"},
    "unicode": {"text": "naïve café ☃ 日本語 🚀"},
    "empty key and string": {"": "", "k": ""},
    "key with spaces and symbols": {"a b": 1, "x-y.z": 2, "[0]": 3, "#": 4},
    "looks like literals": {"a": "true", "b": "null", "c": "12", "d": "-3.5e2", "e": "05"},
    "leading and trailing spaces": {"text": "  padded  "},
    "dash and list-like strings": {"a": "-", "b": "- item", "c": "[1]", "d": "{}"},
    "big integers": {"a": 12345678901234567890123, "b": -(2**70), "c": 2**63},
    "floats": {"a": 0.1, "b": 1e300, "c": -1.5e-10, "d": 5e-324, "e": 123456789.123456},
    "nested arrays": {"grid": [[1, 2], [3, [4, [5]]], []]},
    "mixed array": [1, "1", True, "true", None, "null", 2.5, {"k": "v"}, [1]],
    "empty object and array": {"o": {}, "a": [], "deep": {"o": {}, "a": [[]]}},
    "tabular records": [{"file": "a.py", "line": 1, "match": "x, y"}, {"file": "b.py", "line": 2, "match": "z: w"}],
    "records with differing keys": [{"a": 1}, {"a": 1, "b": 2}, {"b": 3}],
    "records with nested values": [{"a": {"b": 1}, "c": [1, 2]}, {"a": {"b": 2}, "c": []}],
    "booleans and null": {"t": True, "f": False, "n": None},
    "delimiter characters": {"pipe": "a|b", "tab": "a\tb", "pipe key|x": 1},
    "control characters": {"text": "\u0000\u0001\u001f\u2028"},
}


@pytest.mark.parametrize("encoder", ["toon", "minify"])
@pytest.mark.parametrize("name", sorted(TRICKY_VALUES))
def test_round_trip_keeps_value(encoder: str, name: str) -> None:
    original = TRICKY_VALUES[name]
    # Go through JSON text first, as the stage does.
    value = parse_json(json.dumps(original))

    text = encode_verified(value, encoder)

    if encoder == "toon":
        decoded = toon_format.decode(text)
    else:
        decoded = json.loads(text)
    assert json_equal(decoded, original)


@pytest.mark.parametrize("delimiter", [",", "\t", "|"])
def test_toon_round_trip_each_delimiter(delimiter: str) -> None:
    for original in TRICKY_VALUES.values():
        text = encode_verified(original, "toon", delimiter)
        assert json_equal(toon_format.decode(text), original), text


def test_equal_treats_int_and_float_as_numbers() -> None:
    assert json_equal(1, 1.0)
    assert json_equal({"a": 0}, {"a": -0.0})
    assert json_equal(12345678901234567890123, 12345678901234567890123)
    assert not json_equal(2**53 + 1, float(2**53 + 1))
    assert not json_equal(1, 2)


def test_equal_keeps_booleans_apart_from_numbers() -> None:
    assert not json_equal(True, 1)
    assert not json_equal(False, 0)
    assert not json_equal([1], [True])
    assert json_equal(True, True)


def test_equal_requires_same_key_order() -> None:
    assert json_equal({"a": 1, "b": 2}, {"a": 1, "b": 2})
    assert not json_equal({"a": 1, "b": 2}, {"b": 2, "a": 1})


def test_equal_separates_kinds() -> None:
    assert not json_equal("1", 1)
    assert not json_equal(None, "null")
    assert not json_equal([], {})
    assert not json_equal([1, 2], [1, 2, 3])
    assert not json_equal(float("nan"), float("nan"))


def test_parse_keeps_big_integers_exact() -> None:
    value = parse_json('{"id": 123456789012345678901234567890}')
    assert value["id"] == 123456789012345678901234567890
    assert isinstance(value["id"], int)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": NaN}',
        '{"a": Infinity}',
        '[-Infinity]',
        '{"a": 1e400}',
        '{"a": 1, "a": 2}',
        '{"a": 1,}',
        '"just a string"',
        "42",
        "not json at all",
        "[" * 300 + "]" * 300,
    ],
)
def test_parse_rejects_what_cannot_round_trip(text: str) -> None:
    with pytest.raises(NotJson):
        parse_json(text)


def test_minify_keeps_unicode_as_characters() -> None:
    assert encode_minified({"k": "café"}) == '{"k":"café"}'


def test_minify_escapes_lone_surrogates() -> None:
    value = parse_json('{"k": "\\ud800 lone"}')
    text = encode_minified(value)
    assert text == '{"k":"\\ud800 lone"}'
    text.encode("utf-8")


def test_toon_rejects_lone_surrogate_with_reason() -> None:
    value = parse_json('{"k": "\\ud800 lone"}')
    with pytest.raises(EncodingFailed, match="toon failed"):
        encode_verified(value, "toon")


def test_minify_is_deterministic() -> None:
    value = TRICKY_VALUES["tabular records"]
    assert encode_verified(value, "minify") == encode_verified(json.loads(json.dumps(value)), "minify")
