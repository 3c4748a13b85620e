"""Relayed event streams: whole events framed for the client, their meaning, the tally
that holds pieces back until the first output and the usage event until the end."""

from __future__ import annotations

import orjson
import pytest

from services.common.tokens import estimate_tokens
from services.router.errors import UpstreamUnavailable
from services.router.outcomes import MIDSTREAM_ERROR, RouteInfo, StreamHead, UsageSource
from services.router.providers.base import RelayPiece, Usage
from services.router.providers.events import completions_piece, frame, responses_piece
from services.router.providers.sse import EventReader
from services.router.relay_request import Operation
from services.router.relay_tally import RelayTally
from tests.unit.router.helpers import relay_request


def test_frame_names_the_event_only_when_the_upstream_did() -> None:
    assert frame(b"message", b'{"a":1}') == b'data: {"a":1}\n\n'
    assert frame(b"response.created", b'{"a":1}') == \
        b'event: response.created\ndata: {"a":1}\n\n'
    assert frame(b"message", b"{\n}") == b"data: {\ndata: }\n\n"


def _text_chunk(text: str, finish: str | None = None) -> bytes:
    return orjson.dumps({"object": "text_completion", "choices": [
        {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]})


USAGE_CHUNK = orjson.dumps({"object": "text_completion", "choices": [], "usage": {
    "prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})


def test_completions_chunks_carry_text_finish_and_usage() -> None:
    piece = completions_piece(b"message", _text_chunk(" hi"), forward_usage=False)
    assert (piece.data, piece.text, piece.is_output) == (
        b"data: " + _text_chunk(" hi") + b"\n\n", " hi", True)
    final = completions_piece(b"message", _text_chunk("", "length"), forward_usage=False)
    assert (final.finish_reason, final.is_output, final.text) == ("length", True, "")
    unasked = completions_piece(b"message", USAGE_CHUNK, forward_usage=False)
    assert unasked.data is None and unasked.usage == Usage(5, 2) and unasked.is_last
    asked = completions_piece(b"message", USAGE_CHUNK, forward_usage=True)
    assert asked.data == b"data: " + USAGE_CHUNK + b"\n\n" and asked.is_last


def _event(kind: str, **fields: object) -> tuple[bytes, bytes]:
    return kind.encode(), orjson.dumps({"type": kind, "sequence_number": 0, **fields})


@pytest.mark.parametrize("kind", ["response.completed", "response.incomplete",
                                  "response.failed"])
def test_responses_terminal_events_carry_the_usage_and_go_last(kind: str) -> None:
    usage = {"input_tokens": 3, "output_tokens": 4, "output_tokens_details":
             {"reasoning_tokens": 1}, "input_tokens_details": {"cached_tokens": 2}}
    piece = responses_piece(*_event(kind, response={"status": "x", "usage": usage}))
    assert piece.is_last and piece.usage == Usage(3, 4, 2, 1)
    assert piece.data is not None and piece.data.startswith(f"event: {kind}\ndata: ".encode())


def test_responses_text_deltas_are_output_and_other_events_are_not() -> None:
    delta = responses_piece(*_event("response.output_text.delta", delta="Hi"))
    assert (delta.text, delta.is_output, delta.is_last) == ("Hi", True, False)
    arguments = responses_piece(*_event("response.function_call_arguments.delta", delta="{"))
    assert arguments.is_output and arguments.text == ""
    created = responses_piece(*_event("response.created", response={}))
    assert not created.is_output and not created.is_last


@pytest.mark.parametrize(
    ("event", "payload"),
    [(b"error", b'{"type":"error","code":"server_error","message":"boom"}'),
     (b"message", b'{"type":"error","message":"boom"}'),
     (b"message", b'{"error":{"message":"boom"}}'),
     (b"message", b"not json"), (b"message", b"[1]")],
)
def test_in_band_errors_and_garbage_are_upstream_failures(event: bytes, payload: bytes) -> None:
    for read in (responses_piece, lambda e, p: completions_piece(e, p, forward_usage=True)):
        with pytest.raises(UpstreamUnavailable) as caught:
            read(event, payload)
        assert "boom" not in caught.value.message


def test_event_reader_ends_at_done_without_forwarding_it() -> None:
    reader = EventReader(lambda e, p: completions_piece(e, p, forward_usage=True),
                         lambda p: bool(p.finish_reason))
    stream = b"".join(b"data: " + c + b"\n\n" for c in (_text_chunk("a"), USAGE_CHUNK))
    pieces = list(reader.feed(stream + b"data: [DONE]\n\n"))
    assert [p.data for p in pieces] == [b"data: " + _text_chunk("a") + b"\n\n",
                                        b"data: " + USAGE_CHUNK + b"\n\n"]
    assert reader.done


def test_event_reader_without_a_finishing_event_is_cut() -> None:
    reader = EventReader(responses_piece, lambda p: p.is_last)
    created = b"event: response.created\ndata: " + _event("response.created")[1] + b"\n\n"
    assert len(list(reader.feed(created))) == 1
    with pytest.raises(UpstreamUnavailable):
        list(reader.feed(b""))


def _tally(operation: Operation = Operation.RESPONSES) -> RelayTally:
    return RelayTally(relay_request(operation, {"input": "hello there", "stream": True},
                                    stream=True))


def test_tally_holds_leading_events_until_the_first_output_with_the_head() -> None:
    tally = _tally()
    assert list(tally.take(RelayPiece(b"created", content_type="text/event-stream"))) == []
    assert not tally.delivered
    assert tally.take(RelayPiece(b"delta", text="Hi", is_output=True)) == [
        StreamHead("text/event-stream"), b"created", b"delta"]
    assert tally.take(RelayPiece(b"done")) == (b"done",)
    assert tally.take(RelayPiece(b"completed", usage=Usage(2, 1), is_last=True)) == ()
    assert tally.flush() == []
    outcome = tally.outcome(RouteInfo("c", "m", 1), None)
    assert outcome.tail == (b"completed",)
    assert (outcome.usage, outcome.usage_source) == (Usage(2, 1), UsageSource.UPSTREAM)


def test_tally_of_a_stream_without_output_flushes_the_head_and_held_events_at_the_end() -> None:
    tally = _tally()
    tally.take(RelayPiece(b"created", content_type="text/event-stream"))
    tally.take(RelayPiece(b"failed", usage=Usage(2, 0), is_last=True))
    assert tally.flush() == [StreamHead("text/event-stream"), b"created"]
    assert tally.outcome(RouteInfo(), None).tail == (b"failed",)


def test_tally_of_a_cut_stream_estimates_the_delivered_text() -> None:
    tally = _tally()
    for text in ("Hello", " wide", " world"):
        tally.take(RelayPiece(text.encode(), text=text, is_output=True))
    outcome = tally.outcome(RouteInfo(), MIDSTREAM_ERROR)
    assert outcome.usage_source is UsageSource.ESTIMATED and outcome.tail == ()
    assert outcome.usage == Usage(estimate_tokens("hello there"),
                                  max(estimate_tokens("Hello wide world"), 3))


def test_tally_of_speech_counts_characters_once_audio_started() -> None:
    request = relay_request(Operation.AUDIO_SPEECH, {"input": "Say it"}, stream=True)
    tally = RelayTally(request)
    assert tally.take(RelayPiece(b"ID3", is_output=True, content_type="audio/mpeg")) == [
        StreamHead("audio/mpeg"), b"ID3"]
    outcome = tally.outcome(RouteInfo(), MIDSTREAM_ERROR)
    assert dict(outcome.usage.units) == {"character": 6}
    assert outcome.usage_source is UsageSource.ESTIMATED
