"""The stream tally's usage when the upstream's final usage never came."""

from __future__ import annotations

import orjson

from services.common.tokens import estimate_tokens
from services.router.providers.anthropic_stream import StreamTranslator
from services.router.providers.base import StreamPiece, Usage
from services.router.request import ChatRequest
from services.router.tally import StreamTally
from tests.fakes.anthropic_fake import Reply, Text, stream_events

PROMPT = "tell me a fairly long story about a lighthouse keeper"


def _chat() -> ChatRequest:
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": PROMPT}]})
    return ChatRequest("req", "m", body, orjson.loads(body), True, False, None, (PROMPT,), PROMPT)


def _cut_anthropic_stream(events_kept: int) -> StreamTally:
    """An Anthropic stream through the translator into a tally, cut after some events."""
    reply = Reply(blocks=(Text("Once upon a time there was"),), input_tokens=30,
                  cache_read=1_000, cache_creation=200)
    translator, tally = StreamTranslator(1700, forward_usage=True), StreamTally(_chat())
    for name, data in list(stream_events(reply, "msg_1", "claude"))[:events_kept]:
        for piece in translator.read(name.encode(), orjson.dumps(data)):
            tally.take(piece)
    return tally


def test_a_cut_anthropic_stream_keeps_the_reported_prompt_and_cache_counts() -> None:
    tally = _cut_anthropic_stream(events_kept=4)  # message_start, block start, two deltas
    usage, reported = tally.usage()
    assert not reported  # the completion is counted, so the whole usage is an estimate
    assert (usage.prompt_tokens, usage.cached_prompt_tokens, usage.cache_write_prompt_tokens) \
        == (1_230, 1_000, 200)
    assert usage.completion_tokens >= 2  # at least one per delivered content chunk


def test_the_upstreams_final_usage_wins_over_the_early_prompt_counts() -> None:
    tally = _cut_anthropic_stream(events_kept=100)
    usage, reported = tally.usage()
    assert reported and usage == Usage(1_230, 7, cached_prompt_tokens=1_000,
                                       cache_write_prompt_tokens=200)


def test_without_early_counts_the_prompt_is_estimated() -> None:
    tally = StreamTally(_chat())
    tally.take(StreamPiece(b"{}", text="Once upon", is_output=True))
    usage, reported = tally.usage()
    assert not reported and usage.prompt_tokens == estimate_tokens(PROMPT)
    assert usage.cached_prompt_tokens == 0 and usage.cache_write_prompt_tokens == 0
