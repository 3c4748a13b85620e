"""The Gemini provider against the fake Gemini API: URLs, key, bodies, streams, errors,
embeddings."""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from services.common.gateway_config import ChannelEntry
from services.router.config import Settings
from services.router.errors import (
    ProviderError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from services.router.providers import build_provider
from services.router.providers.base import StreamPiece, Usage
from services.router.providers.gemini import GeminiProvider
from services.router.relay_request import Operation
from services.router.server import upstream_session
from tests.fakes.gemini_fake import (
    FAKE_KEY,
    GeminiFake,
    call_part,
    gemini_fake,
    response,
    text_response,
    usage_metadata,
)
from tests.unit.router.helpers import attempt, chat_request, relay_request, upstream


@pytest.fixture
async def fake() -> AsyncIterator[GeminiFake]:
    async with gemini_fake() as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with upstream_session(Settings()) as shared:
        yield shared


def _provider(fake: GeminiFake, session: aiohttp.ClientSession,
              key: str = FAKE_KEY) -> GeminiProvider:
    channel = ChannelEntry(name="g", type="gemini", models=("demo",), base_url=fake.base_url,
                           api_key_env="GEMINI_API_KEY")
    provider = build_provider(channel, session, {"GEMINI_API_KEY": key})
    assert isinstance(provider, GeminiProvider)
    return provider


async def _stream(provider: GeminiProvider, include_usage: bool = True) -> list[StreamPiece]:
    chat = chat_request(stream=True, include_usage=include_usage)
    return [p async for p in provider.stream(upstream(chat, "gemini-up", 2.0))]


async def test_complete_posts_generate_content_with_the_key_header(
    fake: GeminiFake, session: aiohttp.ClientSession,
) -> None:
    chat = chat_request("Hi", request_id="req_g", temperature=0.1)
    answer = await _provider(fake, session).complete(upstream(chat, "gemini-up"))
    parsed = ChatCompletion.model_validate_json(answer.body)
    assert parsed.choices[0].message.content == "Hello from Gemini."
    assert answer.usage == Usage(7, 3)
    sent = fake.received[0]
    assert (sent.version, sent.model, sent.method) == ("v1beta", "gemini-up", "generateContent")
    assert sent.headers["x-goog-api-key"] == FAKE_KEY and "authorization" not in sent.headers
    assert "key" not in sent.query and sent.headers["x-request-id"] == "req_g"
    assert sent.body == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
                         "generationConfig": {"temperature": 0.1}}


async def test_stream_uses_alt_sse_and_translates(
    fake: GeminiFake, session: aiohttp.ClientSession,
) -> None:
    pieces = await _stream(_provider(fake, session))
    assert (fake.received[0].method, fake.received[0].query) == (
        "streamGenerateContent", {"alt": "sse"})
    chunks = [ChatCompletionChunk.model_validate_json(p.chunk) for p in pieces if p.chunk]
    assert "".join(p.text for p in pieces) == "Hello from Gemini."
    assert chunks[0].choices[0].delta.role == "assistant"
    assert pieces[-1].is_last and pieces[-1].usage == Usage(7, 3)


async def test_stream_of_parallel_tool_calls(
    fake: GeminiFake, session: aiohttp.ClientSession,
) -> None:
    fake.events = [response([call_part("a", {"x": 1}, "c2lnbmF0dXJl")], None),
                   response([call_part("b", {"y": 2})], usage=usage_metadata())]
    pieces = await _stream(_provider(fake, session), include_usage=False)
    calls = [call for p in pieces if p.chunk
             for choice in ChatCompletionChunk.model_validate_json(p.chunk).choices
             for call in choice.delta.tool_calls or ()]
    assert [(c.index, c.function.name if c.function else "") for c in calls] == [
        (0, "a"), (1, "b")]
    assert pieces[-2].finish_reason == "tool_calls" and pieces[-1].chunk is None


async def test_a_stream_dropped_midway_is_unavailable(
    fake: GeminiFake, session: aiohttp.ClientSession,
) -> None:
    fake.events = [text_response("a", None), text_response("b", None), text_response("c")]
    fake.drop_after = 2
    with pytest.raises(UpstreamUnavailable):
        await _stream(_provider(fake, session))
    assert fake.dropped.is_set()


@pytest.mark.parametrize(("status", "kind", "retryable"), [
    (400, UpstreamRejected, False), (404, UpstreamRejected, False),
    (403, UpstreamUnavailable, True), (429, UpstreamRateLimited, True),
    (500, UpstreamUnavailable, True), (503, UpstreamUnavailable, True),
])
async def test_http_errors(fake: GeminiFake, session: aiohttp.ClientSession, status: int,
                           kind: type[ProviderError], retryable: bool) -> None:
    provider = _provider(fake, session)
    fake.fail(status, f"failed at {fake.base_url}", times=2)
    with pytest.raises(kind) as caught:
        await provider.complete(upstream(chat_request(), "gemini-up"))
    assert caught.value.retryable is retryable and fake.base_url not in caught.value.message
    with pytest.raises(kind):
        await _stream(provider)


async def test_a_wrong_key_is_retryable_and_not_the_clients_fault(
    fake: GeminiFake, session: aiohttp.ClientSession,
) -> None:
    with pytest.raises(UpstreamUnavailable) as caught:
        await _provider(fake, session, key="wrong").complete(upstream(chat_request()))
    assert caught.value.retryable and "API key" not in caught.value.message


async def test_latency_beyond_the_timeout(fake: GeminiFake,
                                          session: aiohttp.ClientSession) -> None:
    fake.latency_s = 0.5
    with pytest.raises(UpstreamTimeout):
        await _provider(fake, session).complete(upstream(chat_request(), "g", 0.1))


async def test_embeddings_single_input_uses_embed_content(
    fake: GeminiFake, session: aiohttp.ClientSession,
) -> None:
    request = relay_request(Operation.EMBEDDINGS, {"input": "hello", "dimensions": 3},
                            model="emb")
    answer = await _provider(fake, session).relay(attempt(request, "text-embedding-004"))
    sent = fake.received[0]
    assert (sent.model, sent.method) == ("text-embedding-004", "embedContent")
    assert sent.body == {"model": "models/text-embedding-004",
                         "content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 3}
    parsed = CreateEmbeddingResponse.model_validate_json(answer.body)
    assert parsed.data[0].embedding == [0.05, 0.06, 0.07] and parsed.model == "emb"
    assert not answer.reported and answer.usage == Usage(request.estimated_input_tokens(), 0)
    assert parsed.usage.prompt_tokens == answer.usage.prompt_tokens > 0


async def test_embeddings_batch_and_base64(fake: GeminiFake,
                                           session: aiohttp.ClientSession) -> None:
    request = relay_request(Operation.EMBEDDINGS, {"input": ["a", "bb"],
                                                   "encoding_format": "base64"})
    answer = await _provider(fake, session).relay(attempt(request))
    assert fake.received[0].method == "batchEmbedContents"
    assert [r["content"] for r in fake.received[0].body["requests"]] == [
        {"parts": [{"text": "a"}]}, {"parts": [{"text": "bb"}]}]
    # As the openai SDK reads base64 answers: strings, decoded as little-endian float32.
    data = orjson.loads(answer.body)["data"]
    decoded = [struct.unpack("<4f", base64.b64decode(d["embedding"])) for d in data]
    assert [round(v, 4) for v in decoded[1]] == [0.02, 0.03, 0.04, 0.05]


async def test_embeddings_of_token_arrays_are_rejected(
    fake: GeminiFake, session: aiohttp.ClientSession,
) -> None:
    request = relay_request(Operation.EMBEDDINGS, {"input": [1, 2, 3]})
    with pytest.raises(UpstreamRejected):
        await _provider(fake, session).relay(attempt(request))
    assert not fake.received


async def test_relays_only_what_gemini_offers(
    fake: GeminiFake, session: aiohttp.ClientSession
) -> None:
    provider = _provider(fake, session)
    assert {op for op in Operation if provider.relays(op)} == {
        Operation.EMBEDDINGS, Operation.IMAGE_GENERATIONS, Operation.AUDIO_SPEECH,
        Operation.AUDIO_TRANSCRIPTIONS, Operation.AUDIO_TRANSLATIONS}
    with pytest.raises(UpstreamUnavailable):
        await provider.relay(attempt(relay_request(Operation.COMPLETIONS, {"prompt": "x"})))
