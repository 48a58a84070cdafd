"""SSE and NDJSON encoders and incremental parsers, and the protocol error bodies."""

from __future__ import annotations

import orjson
import pytest

from engine.protocol.errors import ProtocolError, anthropic_error_body, openai_error_body
from engine.protocol.sse import NDJSONParser, SSEParser, encode_data, encode_event


def feed_in_pieces(parser, data: bytes, size: int) -> list:
    events = []
    for start in range(0, len(data), size):
        events.extend(parser.feed(data[start : start + size]))
    events.extend(parser.finish())
    return events


def test_encode_event_has_event_line_and_compact_json():
    event = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hé"}}

    encoded = encode_event(event)

    assert encoded.startswith(b"event: content_block_delta\ndata: {")
    assert encoded.endswith(b"\n\n")
    assert b", " not in encoded
    assert orjson.loads(encoded.split(b"data: ", 1)[1]) == event


def test_encode_data_json_and_done():
    assert encode_data({"a": 1}) == b'data: {"a":1}\n\n'
    assert encode_data("[DONE]") == b"data: [DONE]\n\n"


def test_sse_parser_round_trips_encoded_events():
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "content": []}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "日本語 ✓"}},
        {"type": "message_stop"},
    ]
    stream = b"".join(encode_event(event) for event in events)

    for size in (1, 2, 3, 7, len(stream)):
        parsed = feed_in_pieces(SSEParser(), stream, size)
        assert [name for name, _ in parsed] == [event["type"] for event in events], size
        assert [orjson.loads(data) for _, data in parsed] == events, size


def test_sse_parser_crlf_split_between_cr_and_lf():
    stream = b"event: ping\r\ndata: {}\r\n\r\ndata: 2\r\n\r\n"

    for size in (1, 2, 5):
        assert feed_in_pieces(SSEParser(), stream, size) == [("ping", "{}"), (None, "2")], size


def test_sse_parser_cr_only_line_endings():
    assert feed_in_pieces(SSEParser(), b"data: a\rdata: b\r\r", 1) == [(None, "a\nb")]


def test_sse_parser_multiline_data_and_comments():
    stream = b": keep-alive\n\nevent: x\ndata: line one\ndata:line two\ndata\nid: 7\nretry: 10\n\n"

    assert feed_in_pieces(SSEParser(), stream, 4) == [("x", "line one\nline two\n")]


def test_sse_parser_event_without_data_is_dropped():
    assert feed_in_pieces(SSEParser(), b"event: lonely\n\ndata: x\n\n", 3) == [(None, "x")]


def test_sse_parser_splits_inside_utf8_sequence():
    text = "é€😀"
    stream = ("data: " + text + "\n\n").encode()
    parser = SSEParser()

    first = parser.feed(stream[:7])  # cuts the two-byte é in half
    rest = parser.feed(stream[7:])

    assert first == []
    assert rest == [(None, text)]


def test_sse_parser_finish_returns_unterminated_event():
    parser = SSEParser()

    assert parser.feed(b"data: [DONE]") == []
    assert parser.finish() == [(None, "[DONE]")]


def test_sse_parser_strips_leading_bom_only_once():
    stream = "\ufeffdata: a\n\ndata: \ufeffb\n\n".encode()

    assert feed_in_pieces(SSEParser(), stream, 2) == [(None, "a"), (None, "\ufeffb")]


def test_sse_parser_data_with_colons_and_no_space():
    assert SSEParser().feed(b'data:{"url":"http://x"}\n\n') == [(None, '{"url":"http://x"}')]


def test_ndjson_parser_split_lines():
    stream = b'{"a":1}\n\n{"b":"\xc3\xa9"}\r\n{"c":[1,2]}'

    for size in (1, 3, len(stream)):
        assert feed_in_pieces(NDJSONParser(), stream, size) == [{"a": 1}, {"b": "é"}, {"c": [1, 2]}]


def test_ndjson_parser_invalid_line_raises_502():
    parser = NDJSONParser()

    with pytest.raises(ProtocolError) as caught:
        parser.feed(b'{"a":1}\nnot json\n')

    assert caught.value.status == 502
    assert "not JSON" in caught.value.message


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ],
)
def test_anthropic_error_type_by_status(status, expected):
    body = anthropic_error_body(status, "bad")

    assert body == {"type": "error", "error": {"type": expected, "message": "bad"}}


@pytest.mark.parametrize(
    ("status", "expected_type", "expected_code"),
    [
        (400, "invalid_request_error", None),
        (401, "authentication_error", "invalid_api_key"),
        (404, "not_found_error", "model_not_found"),
        (429, "rate_limit_error", "rate_limit_exceeded"),
        (500, "server_error", None),
        (504, "timeout_error", None),
        (418, "invalid_request_error", None),
    ],
)
def test_openai_error_type_by_status(status, expected_type, expected_code):
    error = openai_error_body(status, "bad", param="messages")["error"]

    assert error["type"] == expected_type
    assert error["code"] == expected_code
    assert error["param"] == "messages"
    assert error["message"] == "bad"


def test_openai_error_body_explicit_values_win():
    error = openai_error_body(400, "too long", type="invalid_request_error", code="context_length_exceeded")

    assert error["error"]["code"] == "context_length_exceeded"


def test_protocol_error_carries_key_path():
    error = ProtocolError("must be a string", param="messages.3.content.0.tool_use_id")

    assert error.status == 400
    assert error.error_type == "invalid_request_error"
    assert str(error) == "messages.3.content.0.tool_use_id: must be a string"
    assert error.anthropic_body()["error"]["message"] == str(error)
    assert error.openai_body()["error"]["param"] == "messages.3.content.0.tool_use_id"
    assert error.openai_body()["error"]["message"] == "must be a string"


def test_sse_parser_long_line_in_many_chunks():
    payload = orjson.dumps({"text": "a" * 200_000})
    stream = b"event: big\ndata: " + payload + b"\n\n"

    events = feed_in_pieces(SSEParser(), stream, 1000)

    assert events == [("big", payload.decode())]


def test_sse_parser_cr_line_end_then_partial_line():
    parser = SSEParser()

    first = parser.feed(b"data: a\r")
    empty = parser.feed(b"")
    second = parser.feed(b"\ndata: b")
    third = parser.feed(b"\r\r")

    assert first == []
    assert empty == []
    assert second == []
    assert third == [(None, "a\nb")]


def test_ndjson_parser_long_line_in_many_chunks():
    line = orjson.dumps({"message": {"content": "é" * 50_000}}) + b"\n"

    assert feed_in_pieces(NDJSONParser(), line, 333) == [{"message": {"content": "é" * 50_000}}]
