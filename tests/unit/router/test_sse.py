"""The SSE decoder: events, comments, multi-line data, forgiving upstream quirks."""

from __future__ import annotations

from collections.abc import AsyncIterator

from services.router.providers.sse import DONE, SSEEvent, aiter_events, split_payloads


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def _events(*lines: str) -> list[SSEEvent]:
    return [event async for event in aiter_events(_lines(*lines))]


async def test_events_are_split_by_blank_lines() -> None:
    events = await _events('data: {"a":1}', "", 'data: {"a":2}', "", "data: [DONE]", "")
    assert [e.data for e in events] == ['{"a":1}', '{"a":2}', DONE]
    assert {e.event for e in events} == {"message"}


async def test_comments_and_unknown_fields_are_ignored() -> None:
    events = await _events(": keep-alive", "id: 7", "retry: 10", 'data: {"x":true}', "", ": ping", "")
    assert events == [SSEEvent("message", '{"x":true}')]


async def test_multi_line_data_is_joined_and_no_space_after_colon_is_fine() -> None:
    events = await _events("data:{", 'data: "k": 1', "data: }", "")
    assert events == [SSEEvent("message", '{\n"k": 1\n}')]


async def test_named_event_and_last_event_without_blank_line() -> None:
    events = await _events("event: error", 'data: {"error":{}}', "", 'data: {"last":1}')
    assert events == [SSEEvent("error", '{"error":{}}'), SSEEvent("message", '{"last":1}')]


async def test_blank_lines_without_data_dispatch_nothing() -> None:
    assert await _events("", "", ": c", "") == []


def test_split_payloads_keeps_one_json_document_whole() -> None:
    assert split_payloads('{\n"k": 1\n}') == ['{\n"k": 1\n}']
    assert split_payloads('{"k":1}') == ['{"k":1}']
    assert split_payloads(DONE) == [DONE]


def test_split_payloads_splits_chunks_sent_without_blank_lines() -> None:
    assert split_payloads('{"a":1}\n{"a":2}\n[DONE]') == ['{"a":1}', '{"a":2}', DONE]
