"""edge.sse and edge.stream_formats: framing, reading events, and each stream's trailers."""

from __future__ import annotations

import orjson

from edge.errors import ApiError
from edge.sse import error_event, event_data, frame, frame_all, with_data
from edge.stream_formats import (
    AUDIO_STREAM,
    CHAT_STREAM,
    COMPLETIONS_STREAM,
    RESPONSES_STREAM,
    responses_error,
)

BOOM = ApiError(502, "server_error", "boom", code="upstream_error")


def test_frame_single_line() -> None:
    assert frame(b'{"a":1}') == b'data: {"a":1}\n\n'


def test_frame_splits_every_line_break_kind() -> None:
    assert frame(b"a\nb\r\nc\rd") == b"data: a\ndata: b\ndata: c\ndata: d\n\n"


def test_frame_all_frames_every_chunk_in_one_buffer() -> None:
    assert frame_all([b'{"n":1}', b"a\nb"]) == b'data: {"n":1}\n\ndata: a\ndata: b\n\n'


def test_event_data_joins_data_lines_and_ignores_other_fields() -> None:
    assert event_data(b'event: response.created\ndata: {"a":1}\n\n') == b'{"a":1}'
    assert event_data(b"data:x\ndata: y\n\n") == b"x\ny"
    assert event_data(b": ping\n\n") is None


def test_with_data_keeps_the_event_name() -> None:
    event = b'event: response.completed\ndata: {"a":1}\n\n'
    assert with_data(event, b'{"b":2}') == b'event: response.completed\ndata: {"b":2}\n\n'


def test_chat_and_completions_end_with_an_error_event_then_done() -> None:
    expected = b'data: {"error":{"message":"boom","type":"server_error","param":null,' \
               b'"code":"upstream_error"}}\n\n'
    assert error_event(BOOM) == expected
    for stream_format in (CHAT_STREAM, COMPLETIONS_STREAM):
        assert stream_format.error_trailer is not None
        assert stream_format.error_trailer(BOOM, None) == expected
        assert stream_format.closing == b"data: [DONE]\n\n"


def test_responses_error_is_one_named_event_numbered_after_the_last() -> None:
    last = b'event: response.output_text.delta\ndata: {"type":"x","sequence_number":7}\n\n'
    event = responses_error(BOOM, last)
    name, data = event.split(b"\n", 1)
    assert name == b"event: error"
    assert orjson.loads(data.removeprefix(b"data: ")) == {
        "type": "error", "code": "upstream_error", "message": "boom", "param": None,
        "sequence_number": 8,
    }
    assert orjson.loads(event_data(responses_error(BOOM, None)) or b"")["sequence_number"] == 0
    assert RESPONSES_STREAM.closing == b""  # OpenAI's Responses streams have no [DONE]


def test_relayed_pieces_are_written_verbatim_and_audio_aborts() -> None:
    pieces = [b"event: a\ndata: {}\n\n", b"data: {}\n\n"]
    assert COMPLETIONS_STREAM.encode(pieces) == b"".join(pieces)
    assert AUDIO_STREAM.encode([b"\x00\x01", b"\x02"]) == b"\x00\x01\x02"
    assert AUDIO_STREAM.error_trailer is None and not AUDIO_STREAM.sse
