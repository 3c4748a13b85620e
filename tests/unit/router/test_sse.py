"""The SSE decoder: events, comments, multi-line data, forgiving upstream quirks."""

from __future__ import annotations

from services.router.providers.sse import DONE, SSEDecoder, SSEEvent, split_payloads


def _events(*lines: str, read_size: int = 0) -> list[SSEEvent]:
    """Decode `lines` sent as one stream, in reads of `read_size` bytes (0: one read)."""
    raw = "\n".join(lines).encode()
    size = read_size or len(raw) or 1
    decoder = SSEDecoder()
    events = [e for i in range(0, len(raw), size) for e in decoder.feed(raw[i:i + size])]
    return events + decoder.end()


def test_events_are_split_by_blank_lines() -> None:
    events = _events('data: {"a":1}', "", 'data: {"a":2}', "", "data: [DONE]", "")
    assert [e.data for e in events] == [b'{"a":1}', b'{"a":2}', DONE]
    assert {e.event for e in events} == {b"message"}


def test_comments_and_unknown_fields_are_ignored() -> None:
    events = _events(": keep-alive", "id: 7", "retry: 10", 'data: {"x":true}', "", ": ping", "")
    assert events == [SSEEvent(b"message", b'{"x":true}')]


def test_multi_line_data_is_joined_and_no_space_after_colon_is_fine() -> None:
    events = _events("data:{", 'data: "k": 1', "data: }", "")
    assert events == [SSEEvent(b"message", b'{\n"k": 1\n}')]


def test_named_event_and_last_event_without_blank_line() -> None:
    events = _events("event: error", 'data: {"error":{}}', "", 'data: {"last":1}')
    assert events == [SSEEvent(b"error", b'{"error":{}}'), SSEEvent(b"message", b'{"last":1}')]


def test_blank_lines_without_data_dispatch_nothing() -> None:
    assert _events("", "", ": c", "") == []


def test_any_read_framing_and_any_line_end_give_the_same_events() -> None:
    lines = ("event: error", 'data: {"e":1}', "", ": ping", 'data: {"a":2}', "", "data: [DONE]", "")
    expected = _events(*lines)
    assert len(expected) == 3
    for size in (1, 2, 3, 5, 64):
        assert _events(*lines, read_size=size) == expected
    for end in ("\r\n", "\r"):
        raw = "\n".join(lines).replace("\n", end).encode()
        for size in (1, 2, len(raw)):
            decoder = SSEDecoder()
            got = [e for i in range(0, len(raw), size) for e in decoder.feed(raw[i:i + size])]
            assert got + decoder.end() == expected


def test_split_payloads_keeps_one_json_document_whole() -> None:
    assert split_payloads(b'{\n"k": 1\n}') == [b'{\n"k": 1\n}']
    assert split_payloads(b'{"k":1}') == [b'{"k":1}']
    assert split_payloads(DONE) == [DONE]


def test_split_payloads_splits_chunks_sent_without_blank_lines() -> None:
    assert split_payloads(b'{"a":1}\n{"a":2}\n[DONE]') == [b'{"a":1}', b'{"a":2}', DONE]
